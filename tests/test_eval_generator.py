"""The generator evaluation: paraphrases, faithfulness over k, long videos, the report, main() end to end."""
import json
import os
import re
import shutil
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from flexvid import eval_generator as ev
from flexvid import shapes
from flexvid.generate import VideoGenerator, save_generator
from flexvid.generator import Generator, GeneratorConfig
from flexvid.pipeline import VideoFlexTok
from flexvid.tokenizer import FlexTokenizer, TokenizerConfig
from flexvid.vae import VAEConfig, VideoVAE

K, C = 4, 1000


class HashEncoder:
    """Stands in for the sentence encoder: a fixed random unit vector per prompt, no model to load."""

    def __init__(self, model="fake", **kw):
        self.model_name, self.dim = model, 384

    def __call__(self, prompts):
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        g = [torch.Generator().manual_seed(zlib.crc32(p.encode())) for p in prompts]
        return torch.nn.functional.normalize(torch.stack([torch.randn(384, generator=x) for x in g]), dim=-1)


@pytest.fixture(autouse=True)
def fake_text_encoder(monkeypatch):
    monkeypatch.setattr("flexvid.generate.TextEncoder", HashEncoder)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are so small that a second intra-op thread only adds waiting (several times slower
    on a busy machine); restored afterwards for the other test files."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_generator(cond: str) -> Generator:
    torch.manual_seed(1)
    cfg = GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=K, max_t=21, codebook_size=C, cond=cond)
    model = Generator(cfg, verbose=False).eval()
    torch.nn.init.normal_(model.output.weight, std=0.5)  # the zero-init output would make every logit equal
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A random tokenizer (K = 4, 1000 codes) and a class and a text generator for it, saved as folders."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    vae = VideoVAE(VAEConfig(z_channels=8, dims=(8, 16, 16), n_res=1))
    vae.set_latent_stats([0.0] * 8, [0.2] * 8)
    tok = FlexTokenizer(TokenizerConfig(z_channels=8, latent_size=shapes.SIZE // vae.cfg.spatial_factor, patch=2,
                                        max_t=5, n_registers=K, levels=(8, 5, 5, 5), enc_dim=32, enc_layers=1,
                                        enc_heads=2, dec_dim=32, dec_layers=1, dec_heads=2, sample_steps=1))
    out = {"tokenizer": str(root / "tokenizer"), "text": str(root / "text"), "class": str(root / "class")}
    VideoFlexTok(vae, tok, device="cpu").save_pretrained(out["tokenizer"])
    for cond in ("text", "class"):
        save_generator(small_generator(cond), out[cond], text_model="fake", tokenizer=out["tokenizer"])
    return out


def load(folders, cond):
    return VideoGenerator.from_pretrained(folders[cond], tokenizer=folders["tokenizer"], device="cpu")


# ----------------------------------------------------------------------------- paraphrases
def test_paraphrases_differ_from_captions_but_parse_back():
    rng = np.random.default_rng(0)
    seen = set()
    for clip in shapes.fixed_split("test", 40, 1):
        obj = clip.objects[0]
        for _ in range(3):
            prompt = ev.paraphrase_prompt(obj, rng)
            seen.add(prompt)
            assert prompt != obj.caption()
            assert not any(f"moving {m}" in prompt for m in shapes.MOTIONS) and "standing" not in prompt
            assert ev.parse_prompt(prompt) == {"color": obj.color, "size": obj.size, "shape": obj.shape,
                                               "motion": obj.motion}, prompt
        # the parser reads the training captions too
        assert ev.parse_prompt(obj.caption())["motion"] == obj.motion
    assert len(seen) > 60  # templates and synonyms vary
    assert ev.parse_prompt("a little magenta triangle sitting still") == \
        {"color": "magenta", "size": "small", "shape": "triangle", "motion": "still"}


def test_score_label_reads_the_class_attributes():
    clip = shapes.make_clip(shapes.SPLIT_SEEDS["test"], 3, 17)
    right = ev.score_label(clip.video, clip.label)
    assert right["all"] and right["detected"] and "size" not in right
    color, shape, motion = shapes.class_attributes(clip.label)
    other = shapes.class_index(color, shape, "still" if motion != "still" else "left")
    wrong = ev.score_label(clip.video, other)
    assert wrong["color"] and wrong["shape"] and not wrong["motion"] and not wrong["all"]


# ----------------------------------------------------------------------------- evaluations
def test_faithfulness_has_every_k(folders):
    gen = load(folders, "class")
    clips = shapes.fixed_split("test", 2, 5)
    res = ev.faithfulness(gen, clips, ks=[4, 1], frames=5, batch=1, decode_steps=1)
    assert res["ks"] == [1, 4] and res["cond"] == "class" and res["attrs"] == ["color", "shape", "motion"]
    for a in ("color", "shape", "motion", "all", "detected"):
        assert len(res["rates"][a]) == 2 and all(0 <= r <= 1 for r in res["rates"][a])
    assert res["ground_truth"]["color"] == 1.0


def test_long_video_per_chunk(folders):
    gen = load(folders, "text")
    res = ev.long_video(gen, shapes.fixed_split("test", 1, 33), frames=33, decode_steps=1)
    assert res["chunks"] == [[0, 16], [16, 32]] and res["time_steps"] == 9 and res["k"] == K
    for key in ("color", "shape", "color_shape"):
        assert len(res[key]) == 2 and all(0 <= r <= 1 for r in res[key])
        assert 0 <= res["through_all"][key] <= min(res[key])


class Oracle:
    """A "generator" that renders what it is asked for: the test clip of a caption or a label, or the
    object a paraphrase names, alone. Every rate must then be 1."""

    def __init__(self, cond: str, n: int):
        self.cfg = SimpleNamespace(cond=cond, K=K, max_t=21)
        clips = shapes.fixed_split("test", n, 1)
        self.index = {(c.caption if cond == "text" else c.label): i for i, c in reversed(list(enumerate(clips)))}

    def render(self, prompt: str, frames: int) -> np.ndarray:
        attrs = ev.parse_prompt(prompt)
        vx, vy = shapes.VELOCITY[attrs["motion"]]
        obj = shapes.ShapeObject(**attrs, start=(32 - 8 * vx, 32 - 8 * vy))  # 24 px of travel centred
        return shapes.render([obj], np.full((shapes.SIZE, shapes.SIZE, 3), 20, np.uint8), frames)

    def generate(self, conds, k, frames, seed=0, **kw):
        assert 1 <= k <= K
        return [shapes.to_tensor(shapes.make_clip(shapes.SPLIT_SEEDS["test"], self.index[c], frames).video
                                 if c in self.index else self.render(c, frames)) for c in conds]


@pytest.mark.parametrize("cond", ["text", "class"])
def test_perfect_videos_score_one(cond):
    oracle = Oracle(cond, 6)
    clips = shapes.fixed_split("test", 6, 17)
    res = ev.faithfulness(oracle, clips, ks=[1, K], batch=4)  # two calls: the order must survive batching
    assert res["rates"]["all"] == [1.0, 1.0] and res["rates"]["color"] == [1.0, 1.0]
    if cond == "text":
        assert res["one_object"]["n"] + res["two_objects"]["n"] == 6 and res["two_objects"]["rates"]["all"][0] == 1.0
        pp = ev.paraphrase(oracle, clips, batch=4)
        assert pp["rates"]["all"] == 1.0 and pp["baseline"]["all"] == 1.0
    lv = ev.long_video(oracle, shapes.fixed_split("test", 2, 49), frames=49)
    assert lv["chunks"] == [[0, 16], [16, 32], [32, 48]]
    assert lv["color"] == [1.0] * 3 and lv["through_all"]["color"] == 1.0


class KnowsTheTruth(torch.nn.Module):
    """Stands in for a generator's network: it predicts a clip's tokens exactly under the clip's true
    condition (or under any condition, when blind) and is uniform otherwise."""

    def __init__(self, gen, clips, blind=False):
        super().__init__()
        self.cfg, self.blind = gen.model.cfg, blind
        conds = [c.caption if gen.cfg.cond == "text" else c.label for c in clips]
        grids = gen.tokenizer.tokenize(torch.stack([shapes.to_tensor(c.video) for c in clips]))
        self.truth = [(g.long(), gen.condition([c])[0]) for g, c in zip(grids, conds)]

    def forward(self, x, cond):
        B, t, k = x.shape
        logits = torch.zeros(B, t * k, C)
        for b in range(B):
            for grid, c in self.truth:
                if torch.equal(grid[:, :k], x[b]) and (self.blind or torch.equal(c, cond[b])):
                    logits[b, torch.arange(t * k), x[b].flatten()] = 20.0
        return logits


@pytest.mark.parametrize("cond", ["text", "class"])
def test_condition_probe_finds_what_the_model_knows(folders, cond):
    gen = load(folders, cond)
    clips = shapes.fixed_split("test", 3, 5)
    real = ev.condition_probe(gen, clips, ks=[K, 1])
    attrs = ["color", "shape", "size", "motion"] if cond == "text" else ["color", "shape", "motion"]
    assert real["ks"] == [1, K] and real["attrs"] == attrs and real["n"] == 3
    assert real["chance"]["color"] == pytest.approx(1 / 6) and real["chance"]["shape"] == pytest.approx(1 / 3)
    assert all(len(real["rates"][a]) == 2 and all(0 <= r <= 1 for r in real["rates"][a]) for a in attrs)
    gen.model = KnowsTheTruth(gen, clips)
    assert all(r == [1.0, 1.0] for r in ev.condition_probe(gen, clips, ks=[1, K])["rates"].values())
    gen.model = KnowsTheTruth(gen, clips, blind=True)  # ties are no hit: a condition-blind model scores 0
    assert all(r == [0.0, 0.0] for r in ev.condition_probe(gen, clips, ks=[1, K])["rates"].values())


def test_swapped_conditions_change_one_attribute():
    clip = next(c for c in shapes.fixed_split("test", 20, 1) if len(c.objects) == 2)
    obj = clip.objects[0]
    other = next(s for s in shapes.SHAPES if s != obj.shape)
    text = ev._swapped(clip, "shape", other, "text")
    assert text == clip.caption.replace(f"{obj.color} {obj.shape}", f"{obj.color} {other}", 1)
    assert text.split(" and ")[1] == clip.objects[1].caption()
    assert shapes.class_attributes(ev._swapped(clip, "shape", other, "class")) == (obj.color, other, obj.motion)
    assert ev._swapped(clip, "color", obj.color, "class") == clip.label


# ----------------------------------------------------------------------------- end to end
def test_main_end_to_end(folders, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "eval")
    monkeypatch.chdir(os.path.dirname(folders["tokenizer"]))  # the folders lie below the working directory
    ev.main(["--text-model", folders["text"], "--class-model", folders["class"],  # each its own tokenizer
             "--n", "2", "--n-long", "1", "--frames", "5", "--decode-steps", "1", "--device", "cpu", "--out", out])
    data = json.load(open(os.path.join(out, "eval.json")))
    for key in ("models", "n", "settings", "faithfulness", "paraphrase", "long_video", "condition_probe",
                "elapsed_s", "device"):
        assert key in data
    assert set(data["condition_probe"]) == {"text", "class"} and data["condition_probe"]["class"]["ks"] == [1, 2, 4]
    assert set(data["faithfulness"]) == {"text", "class"}
    # a report names its models relative to the working directory (or this checkout), never by machine path
    assert data["tokenizer"] == {"text": "tokenizer", "class": "tokenizer"}
    assert data["models"] == {"text": "text", "class": "class"}
    text = data["faithfulness"]["text"]
    assert text["ks"] == [1, 2, 4] and set(text["rates"]) == {"color", "shape", "size", "motion", "all", "detected"}
    assert text["one_object"]["n"] + text["two_objects"]["n"] == 2
    assert "size" not in data["faithfulness"]["class"]["rates"]
    pp = data["paraphrase"]
    assert len(pp["prompts"]) == 2 and pp["prompts"] != pp["captions"] and pp["baseline"] is not None
    lv = data["long_video"]["text"]
    assert lv["frames"] == 81 and lv["time_steps"] == 21 and len(lv["chunks"]) == 5
    assert set(data["long_video"]) == {"text", "class"}
    assert os.path.getsize(os.path.join(out, "eval.html")) > 100_000  # plotly.js is embedded
    settings = data["settings"]
    assert settings["dtype"] == "float32" and settings["n_long"] == 1 and settings["skipped"] == []
    assert settings["command"] == "flexvid eval-generator --text-model text --class-model class --n 2 --n-long 1 " \
        "--frames 5 --decode-steps 1 --device cpu --out eval"  # paths as the report names them, none of this machine
    assert "made by <code>flexvid eval-generator" in open(os.path.join(out, "eval.html")).read()
    printed = capsys.readouterr().out
    assert "paraphrase" in printed and "right through all chunks" in printed and "condition probe (class" in printed


def test_each_generator_decodes_with_its_own_tokenizer(folders, tmp_path):
    """Without --tokenizer, eval-generator gives each generator the tokenizer its config names, loading a
    folder once when both name it; --tokenizer gives both the one named."""
    other = tmp_path / "other_tok"
    shutil.copytree(folders["tokenizer"], other)
    cls = tmp_path / "class"
    save_generator(small_generator("class"), str(cls), text_model="fake", tokenizer=str(other))
    gens = {"text": VideoGenerator.from_pretrained(folders["text"], device="cpu"),
            "class": VideoGenerator.from_pretrained(str(cls), device="cpu")}
    where = ev.share_tokenizers(gens, "cpu")
    assert os.path.samefile(where["text"], folders["tokenizer"]) and os.path.samefile(where["class"], other)
    assert gens["text"].tokenizer is not gens["class"].tokenizer
    both = {c: VideoGenerator.from_pretrained(folders[c], device="cpu") for c in ("text", "class")}
    ev.share_tokenizers(both, "cpu")
    assert both["text"].tokenizer is both["class"].tokenizer  # one folder, loaded once
    assert ev.share_tokenizers(both, "cpu") == {}  # nothing left to load


def test_main_errors(folders, tmp_path):
    base = ["--tokenizer", folders["tokenizer"], "--device", "cpu", "--out", str(tmp_path)]
    with pytest.raises(ValueError, match="no generator to evaluate"):  # flexvid.cli prints it as one line
        ev.main(["--text-model", "none", "--class-model", "none", *base])
    with pytest.raises(ValueError, match=rf"--ks must lie in \[1, {K}\]"):
        ev.main(["--text-model", "none", "--class-model", folders["class"], "--ks", str(K + 1), *base])
    for option, value, said in (("--best-of", "-3", "--best-of must be 0 (skip) or from 2 to 64, got -3"),
                                ("--best-of", "100", "got 100"), ("--frames", "1", "--frames must be at least 5")):
        with pytest.raises(ValueError, match=re.escape(said)):  # before the faithfulness ladder, not after it
            ev.main(["--text-model", "none", "--class-model", folders["class"], option, value, *base])
    (tmp_path / "taken" / "eval.html").mkdir(parents=True)
    with pytest.raises(ValueError, match="eval.html' is a folder"):
        ev.main(["--text-model", "none", "--class-model", folders["class"], *base[:-1], str(tmp_path / "taken")])


def test_each_prompt_gets_the_same_video_whatever_the_batch(folders):
    """eval-generator's numbers do not depend on --batch: prompt i samples and decodes from seed + i as it
    would alone (an int seed shared one random stream across a batch)."""
    gen = VideoGenerator.from_pretrained(folders["text"], device="cpu")
    prompts = ["a large red circle moving left", "a small blue square moving up", "a large green triangle standing still"]
    one = ev.generate_videos(gen, prompts, 2, 5, seed=7, batch=1, decode_steps=1)
    three = ev.generate_videos(gen, prompts, 2, 5, seed=7, batch=3, decode_steps=1)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(one, three))


def test_an_empty_split_has_no_rate(folders):
    """A text evaluation whose prompts all name one object gives the two-object split n 0 and no rates
    (it read 0.00), and the table leaves it out."""
    gen = VideoGenerator.from_pretrained(folders["text"], device="cpu")
    clips = [c for c in shapes.fixed_split("test", 12, 5) if len(c.objects) == 1][:2]
    res = ev.faithfulness(gen, clips, [1], 5, decode_steps=1)
    assert res["two_objects"] == {"n": 0, "rates": None} and res["one_object"]["n"] == 2
    text = ev.table({"faithfulness": {"text": res}, "models": {"text": "t"}})
    assert "two-obj" not in text and "one-obj" in text
