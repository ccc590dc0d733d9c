"""Bad input sent straight to the library and the commands: a clear error, nothing changed, no traceback."""
import json
import os
import re
import sys
import warnings

import numpy as np
import pytest
import torch

from conftest import small_pipeline
from flexvid import cli, video_io
from flexvid.hub import read_json, resolve
from flexvid.pipeline import VideoFlexTok
from flexvid.training import pick_device


@pytest.fixture(scope="module")
def pipe():
    return small_pipeline()


@pytest.fixture(scope="module")
def folder(pipe, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tok") / "tok")
    pipe.save_pretrained(path)
    return path


def _copy(folder, tmp_path, name="bad"):
    import shutil
    out = tmp_path / name
    shutil.copytree(folder, out)
    return out


# ----------------------------------------------------------------------------- model folders
def test_truncated_weights_are_a_clear_error(folder, tmp_path):
    bad = _copy(folder, tmp_path)
    w = bad / "tokenizer.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        VideoFlexTok.from_pretrained(str(bad), device="cpu")
    (bad / "tokenizer.safetensors").write_text("hello")
    with pytest.raises(ValueError, match="tokenizer.safetensors"):
        VideoFlexTok.from_pretrained(str(bad), device="cpu")
    # pickled weights in the place of safetensors: said why they are not read (a pickle runs code as it loads)
    (bad / "tokenizer.safetensors").unlink()
    (bad / "tokenizer.pt").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match=r"missing weights file .*tokenizer.safetensors \(the folder holds "
                                         r"tokenizer.pt: flexvid loads safetensors only"):
        VideoFlexTok.from_pretrained(str(bad), device="cpu")


@pytest.mark.parametrize("edit, message", [
    (lambda c: [1, 2], "JSON object"),
    (lambda c: {k: v for k, v in c.items() if k != "vae"}, "vae"),
    (lambda c: {**c, "vae": {**c["vae"], "z_channels": "x"}}, "z_channels"),
    (lambda c: {**c, "tokenizer": {**c["tokenizer"], "levels": ["a", "b"]}}, "levels"),
    (lambda c: {**c, "tokenizer": {**c["tokenizer"], "register_causal": 1}}, "register_causal"),
    (lambda c: {**c, "tokenizer": [1]}, "JSON object"),
    # without its latent statistics every token would differ: refused, not loaded as another model
    (lambda c: {**c, "vae": {k: v for k, v in c["vae"].items() if k not in ("latent_mean", "latent_std")}},
     "no latent_mean / latent_std"),
    (lambda c: {**c, "tokenizer": {**c["tokenizer"], "enc_layers": 100_000}}, r"enc_layers must be an integer in "
                                                                              r"\[1, 1024\]"),  # at once, not built
    (lambda c: {**c, "vae": {**c["vae"], "dims": [16] * 40}}, "dims must be 1 to 16 integers"),
])
def test_bad_config_is_a_clear_error(folder, tmp_path, edit, message):
    bad = _copy(folder, tmp_path)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(edit(cfg)))
    with pytest.raises(ValueError, match=message):
        VideoFlexTok.from_pretrained(str(bad), device="cpu")


def test_config_keys_that_change_nothing_are_said(pipe, folder, tmp_path):
    """size and chunk_frames follow from the model's sections: edited by hand they are refused, not ignored;
    a top-level key nobody reads (a misspelt fps) is warned about, naming the caller's line."""
    for key, value, implied in (("size", 128, pipe.size), ("chunk_frames", 33, pipe.chunk_frames),
                                ("size", float(pipe.size), pipe.size), ("chunk_frames", "17", pipe.chunk_frames)):
        bad = _copy(folder, tmp_path, f"bad_{key}_{value!r}")
        cfg = json.loads((bad / "config.json").read_text())
        assert cfg[key] == implied
        (bad / "config.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(ValueError, match=f"says {key} {re.escape(repr(value))}, but its vae and tokenizer sections "
                                             f"make it {implied}"):
            VideoFlexTok.from_pretrained(str(bad), device="cpu")
    bad = _copy(folder, tmp_path, "typo")
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "fsp": 24}))
    with pytest.warns(UserWarning, match=r"keys \['fsp'\] are not read") as caught:
        loaded = VideoFlexTok.from_pretrained(str(bad), device="cpu")
    assert caught[0].filename == __file__ and loaded.fps == pipe.fps
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file save_pretrained wrote loads without a word
        VideoFlexTok.from_pretrained(folder, device="cpu")
    from flexvid.generate import VideoGenerator
    from flexvid.generator import Generator, GeneratorConfig
    gen = VideoGenerator(Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=pipe.n_tokens, max_t=5,
                                                   codebook_size=pipe.codebook_size, cond="class")),
                         tokenizer=pipe, device="cpu")
    gen.tokenizer_fingerprint, gen.measured_with = "f" * 16, {"e" * 16: "measured"}
    gen.save_pretrained(str(tmp_path / "g"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VideoGenerator.from_pretrained(str(tmp_path / "g"), tokenizer=pipe, device="cpu")
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    (tmp_path / "g" / "config.json").write_text(json.dumps({**cfg, "text_modle": "x/y"}))
    with pytest.warns(UserWarning, match=r"keys \['text_modle'\] are not read") as caught:
        VideoGenerator.from_pretrained(str(tmp_path / "g"), tokenizer=pipe, device="cpu")
    assert caught[0].filename == __file__
    # a tokenizer loaded lazily, by the generator's first use of it, names the line that used it
    (tmp_path / "g" / "config.json").write_text(json.dumps(cfg))
    gen = VideoGenerator.from_pretrained(str(tmp_path / "g"), tokenizer=str(bad), device="cpu")
    with pytest.warns(UserWarning) as caught:
        gen.tokenizer
    line = sys._getframe().f_lineno - 1
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)] * 2
    assert "keys ['fsp'] are not read" in str(caught[0].message)
    assert "trained on the tokens of another tokenizer" in str(caught[1].message)


def test_a_generator_moved_without_its_tokenizer_says_where_it_looked(pipe, folder, tmp_path):
    """A generator's config names its tokenizer's folder from its own: copied elsewhere without it, the
    tokenizer loaded by default is another one, and the message says why (not only a fingerprint)."""
    import shutil

    from flexvid.generate import VideoGenerator
    from flexvid.generator import Generator, GeneratorConfig
    from flexvid.train_generator import fingerprint
    tok = tmp_path / "run" / "tok"
    shutil.copytree(folder, tok)
    gen = VideoGenerator(Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=pipe.n_tokens, max_t=5,
                                                   codebook_size=pipe.codebook_size, cond="class")),
                         tokenizer=pipe, device="cpu")
    gen.tokenizer_fingerprint, gen.trained_with = fingerprint(pipe), str(tok)
    gen.save_pretrained(str(tmp_path / "run" / "gen"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # where it was saved, its own tokenizer loads without a word
        here = VideoGenerator.from_pretrained(str(tmp_path / "run" / "gen"), device="cpu")
        assert here.tokenizer.n_tokens == pipe.n_tokens and here.tokenizer_not_found is None
    shutil.copytree(tmp_path / "run" / "gen", tmp_path / "elsewhere" / "gen")
    moved = VideoGenerator.from_pretrained(str(tmp_path / "elsewhere" / "gen"), device="cpu")
    named = json.loads((tmp_path / "run" / "gen" / "config.json").read_text())["tokenizer"]
    with pytest.raises(ValueError, match=f"names its own as {re.escape(repr(named))} .* copied or moved"):
        moved.tokenizer  # the embedded tokenizer (another K) cannot decode its grids
    moved._tokenizer = small_pipeline(seed=1)  # same K and codebook, other weights: a warning that says the same
    with pytest.warns(UserWarning, match="another tokenizer .* copied or moved"):
        moved.tokenizer
    given = VideoGenerator.from_pretrained(str(tmp_path / "elsewhere" / "gen"), tokenizer=pipe, device="cpu")
    assert given.tokenizer is pipe and given.tokenizer_not_found is None


def test_config_that_is_not_json(tmp_path):
    (tmp_path / "config.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(ValueError, match="not a readable JSON file"):
        read_json(str(tmp_path / "config.json"))


def test_missing_local_folders_are_not_sent_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "assets").mkdir()
    for name in ("assets/tokenizr", "./tok", "~/surely-not-here-flexvid", str(tmp_path / "x")):
        with pytest.raises(ValueError, match="no such folder"):
            resolve(name)
    with pytest.raises(ValueError, match="folder or a Hugging Face repo id"):
        resolve(3)
    (tmp_path / "assets" / "tok").mkdir()
    assert resolve("assets/tok") == "assets/tok"


def test_device_names_are_checked():
    assert pick_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "cuda:x"):
        with pytest.raises(ValueError, match="device"):
            pick_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            pick_device("cuda")


# ----------------------------------------------------------------------------- the API
def test_pixel_values_are_refused(pipe):
    x = torch.rand(3, 5, 64, 64) * 255
    with pytest.raises(ValueError, match=r"\[-1, 1\].*to_model"):
        pipe.tokenize(x)
    ok = torch.rand(3, 5, 64, 64) * 2.2 - 1.1  # a decoder's small overshoot is still taken
    assert pipe.tokenize(ok)[0].shape == (2, pipe.n_tokens)


def test_frames_in_zero_one_warn_and_uint8_frames_are_pointed_to_to_model(pipe):
    x = torch.rand(3, 5, 64, 64)  # the [0, 1] of torchvision's ToTensor: wrong tokens, said by a warning
    with pytest.warns(UserWarning, match=r"no value below 0.*x \* 2 - 1") as seen:
        pipe.tokenize(x)
    assert seen[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(UserWarning, match="no value below 0") as seen:
        pipe.reconstruct(x, ks=[1], steps=1)
    assert len(seen) == 1 and seen[0].filename == __file__  # once, though reconstruct tokenizes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.tokenize(x * 2 - 1)  # a clip with dark pixels says nothing, nor an all-zero (mid-grey) one
        pipe.tokenize(torch.zeros_like(x))
        # nor a bright clip that video_io.to_model made of uint8 frames (a pink square on white)
        pipe.tokenize(video_io.to_model(np.random.default_rng(0).integers(128, 256, (5, 64, 64, 3), np.uint8)))
    with pytest.warns(UserWarning, match="no value below 0"):  # uint8 frames / 255, the mistake, still warn
        pipe.tokenize(torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 5, 64, 64)) / 255).float())
    bright = video_io.to_model(np.random.default_rng(1).integers(128, 256, (17, 64, 64, 3), np.uint8))
    bright[:, 12] = bright[:, 12].add(1e-3).clamp(max=1)  # one late frame off the uint8 levels (checked in parts)
    with pytest.warns(UserWarning, match="no value below 0"):
        pipe.tokenize(bright)
    with pytest.raises(ValueError, match="got torch.uint8: convert uint8 frames with video_io.to_model"):
        pipe.tokenize((x * 255).to(torch.uint8))


def test_reconstruct_takes_ks_as_an_integer_array_and_grids_as_nested_lists_are_said(pipe):
    x = torch.rand(3, 5, 64, 64) * 2 - 1
    want = pipe.reconstruct(x, ks=[2, 1], steps=1, seed=1)
    for ks in (np.array([2, 1]), torch.tensor([2, 1]), torch.tensor([2, 1, 2], dtype=torch.int32)):
        got = pipe.reconstruct(x, ks=ks, steps=1, seed=1)
        assert list(got) == [2, 1] and all(torch.equal(got[k], want[k]) for k in want)
    for ks, message in ((torch.tensor([1.0, 2.0]), "must be integers"), (np.ones((2, 2), int), "shape"),
                        (np.arange(10**6), "names 1000000 values"), (np.array([0]), r"in \[1, 8\]"),
                        (torch.tensor([1]).to("meta"), "meta")):
        with pytest.raises(ValueError, match=message):
            pipe.reconstruct(x, ks=ks, steps=1)
    g = pipe.tokenize(x)[0]
    for nested in (g.tolist(), g[0].tolist()):  # read as a list of grids, said as such
        with pytest.raises(ValueError, match=r"nested Python lists.*torch.tensor\(tokens\)"):
            pipe.detokenize(nested, steps=1)
    assert torch.equal(pipe.detokenize([g.tolist()], k=2, steps=1, seed=3)[0],
                       pipe.detokenize(g, k=2, steps=1, seed=3)[0])


def test_reconstruct_arguments(pipe):
    x = torch.rand(3, 5, 64, 64) * 2 - 1
    with pytest.raises(ValueError, match="one video"):
        pipe.reconstruct(torch.stack([x, x]), ks=[1], steps=1)
    with pytest.raises(ValueError, match="ks"):
        pipe.reconstruct(x, ks="4", steps=1)
    one = pipe.reconstruct(x, ks=2, steps=1, seed=1)
    assert list(one) == [2]
    twice = pipe.reconstruct(x, ks=[2, 1, 2], steps=1, seed=1)
    assert list(twice) == [2, 1] and torch.allclose(twice[2], one[2], atol=1e-4)  # batched: same noise


def test_reconstruct_checks_the_decode_before_it_tokenizes(pipe, monkeypatch):
    """A bad decode setting, or a ladder too long for one call, is refused before the clip is tokenized (a
    long clip took seconds to tokenize, then the refusal)."""
    def tokenized(*a, **kw):
        raise AssertionError("tokenized before the decode settings were checked")
    monkeypatch.setattr(pipe, "_tokenize", tokenized)
    x = torch.rand(3, 17, 64, 64) * 2 - 1
    for kw, said in (({"steps": 0}, "steps"), ({"guidance": float("nan")}, "guidance"),
                     ({"guidance_mode": "x"}, "guidance_mode"), ({"noise_scale": 3}, "noise_scale"),
                     ({"seed": "a"}, "seed"), ({"seed": [1, 2]}, "seed")):
        with pytest.raises(ValueError, match=said):
            pipe.reconstruct(x, ks=[1, 2], **kw)
    monkeypatch.setattr(VideoFlexTok, "max_frames", property(lambda self: 40))
    with pytest.raises(ValueError, match="3 k values of a 17-frame clip decode to 51 frames, more than the 40 one "
                                         "call gives .*pass fewer ks per call"):
        pipe.reconstruct(x, ks=[1, 2, 4], steps=1)
    grid = torch.zeros(5, pipe.n_tokens, dtype=torch.long)  # tokens alone: their frames
    with pytest.raises(ValueError, match="3 k values of a 17-frame clip"):
        pipe.reconstruct(None, ks=[1, 2, 4], steps=1, tokens=grid)


# ----------------------------------------------------------------------------- video files
def _clip(path, frames=30, fps=30.0, size=(96, 128)):
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (frames, *size, 3), dtype=np.uint8)
    video_io.write_video(str(path), video, fps=fps)
    return str(path)


def test_shrinking_while_reading_gives_the_same_clip(tmp_path):
    path = _clip(tmp_path / "c.mp4")
    full, fps = video_io.read_video(path)
    small, fps2 = video_io.read_video(path, shrink_to=64)
    assert fps == fps2 and small.shape == (30, 64, 85, 3)
    a = video_io.prepare_video(full, fps, target_fps=8, size=64)
    b = video_io.prepare_video(small, fps, target_fps=8, size=64)
    assert np.array_equal(a, b)


def test_time_upsampling_is_capped_before_it_is_built():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    out = video_io.prepare_video(frames, 1e-6, target_fps=8, size=8, max_frames=17)  # would be 2e7 frames
    assert out.shape[0] == 17
    with pytest.raises(ValueError, match="would give"):
        video_io.resample_fps(frames, 1e-6, 8)


# ----------------------------------------------------------------------------- the commands
def test_commands_report_errors_without_tracebacks(folder, tmp_path, capsys):
    clip = _clip(tmp_path / "c.mp4", frames=9, fps=8.0, size=(64, 64))
    out = tmp_path / "recon"
    cases = [
        (["bogus"], "unknown command"),
        (["reconstruct", clip, "--model", folder, "--upscale", "0", "--out", str(out)], "--upscale"),
        (["reconstruct", clip, "--model", folder, "--steps", "0", "--out", str(out)], "steps"),
        (["reconstruct", clip, "--model", folder, "--device", "tpu", "--out", str(out)], "device"),
        (["reconstruct", str(tmp_path / "none.mp4"), "--model", folder], "file not found"),
        (["eval-tokenizer", "--model", str(tmp_path / "nope"), "--n", "1"], "no such folder"),
        (["train-tokenizer", "--vae", str(tmp_path / "nope"), "--out-dir", str(tmp_path / "t")], "config.json"),
        (["generate", "--class-label", "3", "--out", str(tmp_path)], "--out"),
        (["generate"], "text prompt or --class-label"),
        (["generate", "a red circle \udcff", "--out", str(tmp_path / "g.mp4")], "lone surrogate"),
        (["generate", "--class-label", "3", "--best-of", "0", "--out", str(tmp_path / "g.mp4")], "best_of"),
        (["generate", "--class-label", "3", "--best-of", "2", "--preview-steps", "50", "--out",
          str(tmp_path / "g.mp4")], "preview_steps"),
        (["generate", "--class-label", "3", "--preview-steps", "2", "--out", str(tmp_path / "g.mp4")], "--best-of N"),
        (["select-samples", "--n", "0", "--out", str(tmp_path / "s.safetensors")], "--n must be"),
        (["select-samples", "--threads", "-2", "--out", str(tmp_path / "s.safetensors")], "--threads must be"),
        (["select-samples", "--seed", "-1", "--out", str(tmp_path / "s.safetensors")], "--seed must be an integer"),
        (["train-reranker", "--teacher", str(tmp_path), "--prompts", "0", "--out", str(tmp_path / "r")],
         "--prompts must be >= 1"),
        (["eval-generator", "--decode-steps", "0", "--n", "1", "--out", str(tmp_path / "e")],
         "--decode-steps must be an integer in [1, 1000], got 0"),
        (["generate", "--class-label", "3", "--decode-steps", "0", "--out", str(tmp_path / "g.mp4")],
         "--decode-steps must be an integer in [1, 1000], got 0"),
        (["train-generator", "--out-dir", ""], "--out-dir must be a folder name"),  # not runs/generator-class
        (["train-generator", "--out", " "], "--out-dir must be a folder name"),  # (argparse's prefix of it)
        (["train-vae", "--out-dir", ""], "--out-dir must be a folder name"),  # not a traceback after the build
        (["train-generator", "--out-dir", str(tmp_path / ("a" * 300) / "g")], "File name too long"),
        (["eval-generator", "--out", str(tmp_path / ("b" * 300))], "File name too long"),
        (["train-generator", "--selected", str(tmp_path / "nope.safetensors"), "--out-dir", str(tmp_path / "g")],
         "no selected-samples file"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert not out.exists()  # nothing written by a refused command
    assert cli.main(["eval-tokenizer", "--model", folder, "--noise-scale", "5", "--n", "1"]) == 2  # before any work
    err = capsys.readouterr().err
    assert "noise_scale" in err and err.count("\n") == 1


def test_reconstruct_command_reads_only_what_it_needs(folder, tmp_path):
    clip = _clip(tmp_path / "long.mp4", frames=90, fps=30.0, size=(96, 128))
    out = tmp_path / "recon"
    assert cli.main(["reconstruct", clip, "--model", folder, "--k", "1", "--steps", "1", "--max-frames", "9",
                     "--upscale", "1", "--out", str(out)]) == 0
    data = np.load(out / "tokens.npz")
    assert int(data["frames"]) == 9 and data["tokens"].shape[0] == 3
    assert sorted(os.listdir(out)) == ["k001.mp4", "metrics.csv", "original.mp4", "side_by_side.mp4", "tokens.npz"]


def test_reconstruct_command_decodes_in_the_dtype_it_is_given(folder, tmp_path, monkeypatch):
    from flexvid import pipeline
    made = []
    load = pipeline.VideoFlexTok.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        made.append(load(cls, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(pipeline.VideoFlexTok, "from_pretrained", classmethod(spy))
    clip = _clip(tmp_path / "c.mp4", frames=9, fps=8.0, size=(64, 64))
    for dtype, want in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        assert cli.main(["reconstruct", clip, "--model", folder, "--k", "1", "--steps", "1", "--upscale", "1",
                         "--dtype", dtype, "--out", str(tmp_path / dtype)]) == 0
        assert made[-1].dtype == want and (tmp_path / dtype / "k001.mp4").is_file()


def test_generator_warns_on_another_tokenizers_tokens(pipe, tmp_path):
    from flexvid.generate import VideoGenerator
    from flexvid.generator import Generator, GeneratorConfig
    from flexvid.train_generator import fingerprint
    model = Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=pipe.n_tokens,
                                      codebook_size=pipe.codebook_size, cond="class"))
    gen = VideoGenerator(model, tokenizer=pipe, device="cpu")
    gen.tokenizer_fingerprint = fingerprint(pipe)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gen.tokenizer is pipe
    gen2 = VideoGenerator(model, tokenizer=pipe, device="cpu")
    gen2.tokenizer_fingerprint = "0123456789abcdef"
    with pytest.warns(UserWarning, match="another tokenizer"):
        gen2.tokenizer
    # a tokenizer its grids were measured with (recorded in its config) is taken without a warning, and the
    # record survives a save and load
    gen2.measured_with = {fingerprint(pipe): "measured"}
    gen2._checked = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gen2.tokenizer is pipe
    gen2.save_pretrained(str(tmp_path / "g"))
    again = VideoGenerator.from_pretrained(str(tmp_path / "g"), tokenizer=pipe, device="cpu")
    assert again.measured_with == {fingerprint(pipe): "measured"}
    assert again.tokenizer_fingerprint == "0123456789abcdef"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again.tokenizer
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    cfg["measured_with"] = ["not", "a", "mapping"]
    (tmp_path / "g" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="measured_with"):
        VideoGenerator.from_pretrained(str(tmp_path / "g"), tokenizer=pipe, device="cpu")


def test_numpy_scalars_are_taken_like_python_numbers(pipe):
    g = pipe.tokenize(torch.rand(3, 5, 64, 64) * 2 - 1)
    a = pipe.detokenize(g, k=2, steps=1, guidance=2.0, seed=3)[0]
    b = pipe.detokenize(g, k=np.int64(2), steps=np.int32(1), guidance=np.float32(2.0), seed=np.int64(3),
                        noise_scale=np.float64(1.0))[0]
    assert torch.equal(a, b)
    for bad in (dict(k=np.bool_(True)), dict(steps=True), dict(k=np.float64(2.0))):
        with pytest.raises(ValueError, match=next(iter(bad))):
            pipe.detokenize(g, **bad)


def test_generator_takes_numpy_scalars(pipe):
    from flexvid.generate import VideoGenerator
    from flexvid.generator import Generator, GeneratorConfig
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=pipe.n_tokens, max_t=5,
                                      codebook_size=pipe.codebook_size, cond="class"))
    gen = VideoGenerator(model, tokenizer=pipe, device="cpu")
    a = gen.sample_tokens(3, k=2, frames=5, seed=1)
    b = gen.sample_tokens(np.int64(3), k=np.int64(2), frames=np.int64(5), seed=np.int64(1),
                          temperature=np.float32(1.0), top_k=np.int64(0))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and a[0].shape == (2, pipe.n_tokens)
    assert (a[0][:, 2:] == 0).all()  # budget k = 2: the rest of each step is not generated


def test_generate_checks_every_seed_and_decoder_setting_before_sampling(pipe):
    from flexvid.generate import VideoGenerator
    from flexvid.generator import Generator, GeneratorConfig
    model = Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=pipe.n_tokens, max_t=5,
                                      codebook_size=pipe.codebook_size, cond="class"))
    gen = VideoGenerator(model, tokenizer=pipe, device="cpu")
    calls = []
    gen.sample_tokens = lambda *a, **kw: calls.append(1)  # must not be reached
    with pytest.raises(ValueError, match=r"seed \+ 1"):
        gen.generate([1, 2], frames=5, seed=2**64 - 1)
    with pytest.raises(ValueError, match="steps"):
        gen.generate([1], frames=5, decode_steps=0)
    assert not calls


def test_token_grids_as_numpy_and_bad_dtypes(pipe):
    g = pipe.tokenize(torch.rand(3, 5, 64, 64) * 2 - 1)[0]
    a = pipe.detokenize(g, k=2, steps=1, seed=3)[0]
    for same in (g.numpy(), g.numpy().astype(np.int32), g.numpy().astype(np.uint16)[None], g.numpy().astype(np.uint64)):
        assert torch.equal(pipe.detokenize(same, k=2, steps=1, seed=3)[0], a)  # e.g. reconstruct's tokens.npz
    huge = g.numpy().astype(np.uint64)
    huge[0, 0] = 2**63 + 5  # wraps below 0 as an int64: still refused as out of range
    for bad, message in ((huge, r"integers in \[0, "), (g.bool(), "dtype"), (g.float(), "dtype"),
                         (g.to(torch.complex64), "dtype"), (["abc"], "integer array"), ("abc", "token grid")):
        with pytest.raises(ValueError, match=message):
            pipe.detokenize(bad, steps=1)


def test_float_and_bool_tensors_are_not_cut_to_integers(pipe):
    g = pipe.tokenize(torch.rand(3, 5, 64, 64) * 2 - 1)
    a = pipe.detokenize(g, k=2, steps=1, seed=1)[0]
    assert torch.equal(pipe.detokenize(g, k=torch.tensor(2), steps=1, seed=torch.tensor(1))[0], a)
    for bad in (dict(k=torch.tensor(2.9)), dict(k=torch.tensor(True)), dict(k=torch.tensor([2.5])),
                dict(k=torch.tensor(float("nan"))), dict(seed=torch.tensor(1.7)), dict(seed=np.array([1.5]))):
        with pytest.raises(ValueError, match=next(iter(bad))):
            pipe.detokenize(g, steps=1, **bad)
    with pytest.raises(ValueError, match="ks must be integers"):
        pipe.reconstruct(torch.rand(3, 5, 64, 64) * 2 - 1, ks=[[1]], steps=1)


def test_pipeline_settings_are_checked(pipe):
    for kw, message in ((dict(max_batch=0), "max_batch"), (dict(max_batch=-1), "max_batch"),
                        (dict(max_batch=2.0), "max_batch"), (dict(fps=float("nan")), "fps"), (dict(fps=0), "fps")):
        with pytest.raises(ValueError, match=message):
            VideoFlexTok(pipe.vae, pipe.tokenizer, device="cpu", **kw)


def test_generate_seeds_are_python_integers(pipe):
    from flexvid.generate import VideoGenerator
    from flexvid.generator import Generator, GeneratorConfig
    model = Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=pipe.n_tokens, max_t=5,
                                      codebook_size=pipe.codebook_size, cond="class"))
    gen = VideoGenerator(model, tokenizer=pipe, device="cpu")
    seeds = []
    gen.sample_tokens = lambda *a, **kw: [torch.zeros(2, pipe.n_tokens, dtype=torch.long)] * 2
    gen.tokenizer.detokenize = lambda grids, seed, **kw: seeds.append(seed) or [torch.zeros(3, 5, 64, 64)] * 2
    try:
        gen.generate([1, 2], frames=5, seed=np.int64(2**63 - 1), decode_steps=1)
        gen.generate([1, 2], frames=5, seed=torch.tensor(3), decode_steps=1)  # a 0-d integer tensor, as detokenize
    finally:
        del gen.tokenizer.detokenize
    assert seeds == [[2**63 - 1, 2**63], [3, 4]]  # no NumPy overflow to -2**63


def test_outputs_are_checked_before_the_work(folder, tmp_path, capsys):
    clip = _clip(tmp_path / "c.mp4", frames=9, fps=8.0, size=(64, 64))
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["reconstruct", clip, "--model", folder, "--steps", "1", "--out", str(afile)], "is an existing file"),
        (["reconstruct", clip, "--model", folder, "--steps", "1", "--out", ""], "output path is empty"),
        (["generate", "--class-label", "3", "--out", ""], "output path is empty"),
        (["generate", "--class-label", "3", "--out", str(afile / "x.mp4")], "is a file, not a folder"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    for argv in (["eval-tokenizer", "--model", folder, "--n", "1", "--out", str(afile)],
                 ["eval-generator", "--tokenizer", folder, "--n", "1", "--out", str(afile)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "--out: the output folder" in err and "is an existing file" in err and "Traceback" not in err
    assert afile.read_text() == "x" and not (tmp_path / "r").exists()


def test_write_video_refuses_what_h264_cannot_hold_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "v.mp4"
    video_io.write_video(path, np.zeros((2, 8, 8, 3), np.uint8))
    before = path.read_bytes()
    with pytest.raises(ValueError, match="too large for H.264"):
        video_io.write_video(path, np.zeros((1, 2, video_io.MAX_SIDE + 2, 3), np.uint8))
    with pytest.raises(ValueError, match="too large for H.264"):
        video_io.write_video(path, np.zeros((1, 8, 8, 3), np.uint8), upscale=video_io.MAX_SIDE // 4)
    with pytest.raises(ValueError, match="is a folder"):
        video_io.write_video(tmp_path, np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        video_io.from_model(torch.full((3, 2, 8, 8), float("nan")))
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["v.mp4"]  # no temporary file left


def test_reconstruct_command_tiles_a_wide_ladder_in_rows(folder, tmp_path, capsys, monkeypatch):
    clip = _clip(tmp_path / "c.mp4", frames=5, fps=8.0, size=(64, 64))
    monkeypatch.setattr(video_io, "MAX_SIDE", 1024)  # as if H.264 took 1024 px a side: 3 videos of 64 px at 4x
    assert cli.main(["reconstruct", clip, "--model", folder, "--k", "1", "2", "3", "4", "5", "--steps", "1",
                     "--upscale", "4", "--max-frames", "1", "--out", str(tmp_path / "recon")]) == 0
    frames, _ = video_io.read_video(tmp_path / "recon" / "side_by_side.mp4")
    assert frames.shape[1:3] == (2 * 4 * 64 + 2, 3 * 4 * 64 + 2 * 2)  # original + 5 k: 2 rows of 3, 2 px apart
    assert cli.main(["reconstruct", clip, "--model", folder, "--steps", "1", "--upscale", "16", "--out",
                     str(tmp_path / "big")]) == 2  # 9 videos of 1024 px (16x) cannot be tiled under it: refused first
    assert "H.264" in capsys.readouterr().err and not (tmp_path / "big").exists()


def test_small_mistakes_get_a_message_that_names_them(pipe):
    from flexvid.generate import VideoGenerator, parse_label
    from flexvid.generator import Generator, GeneratorConfig
    from flexvid.text import check_prompt
    for scalar in (np.array(5), torch.tensor(5), torch.tensor([1, 2])):  # no grid at all: not "iteration over 0-d"
        with pytest.raises(ValueError, match=r"expected a \(t, \d+\) token grid"):
            pipe.detokenize(scalar)
    for label in ("--5", "²", "٣", "3" * 10000, "1e3"):  # digits to Python, not labels; a huge one is cut short
        with pytest.raises(ValueError, match="class label") as e:
            parse_label(label)
        assert len(str(e.value)) < 400
    assert parse_label(" 7 ") == 7 and parse_label("-0") == 0
    for prompt in ("\x00\x01", "\u200b\u200b", " \t\n"):
        with pytest.raises(ValueError, match="the prompt is empty"):
            check_prompt(prompt)
    for empty, message in ((torch.empty(0, 3, 5, 64, 64), r"an empty batch of shape \(0, 3, 5, 64, 64\)"),
                           ([], "got an empty list")):
        with pytest.raises(ValueError, match=message):
            pipe.tokenize(empty)
    for empty, message in ((np.zeros((0, 2, pipe.n_tokens), np.int64), r"an empty batch of shape \(0, 2, "),
                           (torch.zeros(0, 2, pipe.n_tokens, dtype=torch.long), r"an empty batch of shape \(0, 2, "),
                           ((), "got an empty tuple")):
        with pytest.raises(ValueError, match=message):
            pipe.detokenize(empty)
    grid = np.zeros((2, pipe.n_tokens), np.int64)
    grid.setflags(write=False)  # as np.load(..., mmap_mode="r") gives: no torch warning about it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pipe.detokenize(grid, k=1, steps=1)[0].shape == (3, 5, 64, 64)
    for prompt in ("a red circle \udcff", "\ud83d moving left"):  # command-line bytes not UTF-8; half an emoji
        with pytest.raises(ValueError, match="not valid Unicode text: character (14|1) is a lone surrogate"):
            check_prompt(prompt)
    model = Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=pipe.n_tokens, max_t=5,
                                      codebook_size=pipe.codebook_size, cond="class"), verbose=False)
    gen = VideoGenerator(model, tokenizer=pipe, device="cpu")
    with pytest.raises(ValueError, match="compile must be True or False, got 'yes'"):
        gen.sample_tokens([1], k=1, frames=5, compile="yes")


def test_reconstruct_checks_a_video_given_with_its_tokens(pipe, monkeypatch):
    x = torch.rand(3, 9, 64, 64) * 2 - 1
    grid = pipe.tokenize(x)[0]
    assert sorted(pipe.reconstruct(None, ks=[1], steps=1, tokens=grid)) == [1]  # the tokens alone are enough
    for video, message in (("garbage", "expected a video tensor"), (torch.rand(3, 17, 64, 64) * 2 - 1, "not its tokens")):
        with pytest.raises(ValueError, match=message):
            pipe.reconstruct(video, ks=[1], steps=1, tokens=grid)
    with pytest.raises(ValueError, match="tokens of one video"):
        pipe.reconstruct(None, ks=[1], steps=1, tokens=[grid, grid])
    frames = np.zeros((9, 64, 64, 3), np.uint8)  # what video_io.read_video gives: how to turn it into a video
    for video in (frames, [frames]):
        with pytest.raises(ValueError, match=r"got ndarray; frames from video_io.read_video .* video_io.to_model"):
            pipe.reconstruct(video, ks=[1], steps=1)
        with pytest.raises(ValueError, match=r"video_io.to_model\(video_io.prepare_video"):
            pipe.tokenize(video)


def test_a_device_this_machine_lacks_is_refused_before_loading(folder, monkeypatch):
    from flexvid import generate, pipeline
    monkeypatch.setattr(pipeline, "resolve", lambda *a: pytest.fail("a folder was read"))
    monkeypatch.setattr(generate, "resolve", lambda *a: pytest.fail("a folder was read"))
    for load in (VideoFlexTok.from_pretrained, generate.VideoGenerator.from_pretrained):
        with pytest.raises(ValueError, match="device"):
            load(folder, device="tpu")
        if not torch.cuda.is_available():
            with pytest.raises(ValueError, match="not available on this machine"):
                load(folder, device="cuda")
        with pytest.raises(ValueError, match="dtype"):
            load(folder, device="cpu", dtype="fp8")


def test_absurd_arguments_straight_to_the_api_are_refused_before_any_work(pipe, tmp_path, monkeypatch):
    """What a script can send that the page never does: each refused with a message naming it, before the
    work (a huge grid is not decoded, a long clip's values are not even read)."""
    import time
    t0 = time.time()
    with pytest.raises(ValueError, match=r"decode to \d+ frames, more than the \d+ one call takes"):
        pipe.detokenize(torch.zeros(10**6, pipe.n_tokens, dtype=torch.long), k=1, steps=1)
    big = torch.zeros(3, 1, pipe.size, pipe.size).expand(3, 4 * 10**6 + 1, pipe.size, pipe.size)  # no memory
    with pytest.raises(ValueError, match="more than the"):
        pipe.tokenize(big)
    assert time.time() - t0 < 5
    clip = torch.zeros(3, 17, pipe.size, pipe.size)
    calls = []
    monkeypatch.setattr(pipe, "tokenize", lambda *a, **k: calls.append(1))
    for ks, message in ((range(1, 10**7), "ks names 9999999 values"), ([pipe.n_tokens + 1], "ks must be integers in"),
                        ([0], "ks must be integers in"), ([[1]] * 40, "ks must be integers, got")):
        with pytest.raises(ValueError, match=message):
            pipe.reconstruct(clip, ks=ks, steps=1)
    with pytest.raises(ValueError, match="callback must be a function"):
        pipe.reconstruct(clip, ks=[1], steps=1, callback=5)
    assert not calls  # all of it before the clip was tokenized
    monkeypatch.undo()
    grid = pipe.tokenize(clip)[0]
    with pytest.raises(ValueError, match="callback must be a function"):
        pipe.detokenize(grid, k=1, steps=1, callback=5)
    with pytest.raises(ValueError, match="meta device"):
        pipe.detokenize(grid.to("meta"), k=1, steps=1)
    with pytest.raises(ValueError, match="torch tensor"):
        pipe.tokenize([clip.numpy()])
    # saving: a folder, said as such
    (tmp_path / "afile").write_text("x")
    for folder, message in (("", "non-empty path"), (None, "non-empty path"), (str(tmp_path / "afile"), "afile")):
        with pytest.raises(ValueError, match=message):
            pipe.save_pretrained(folder)
    with pytest.raises(ValueError, match="half must be True or False"):
        pipe.save_pretrained(str(tmp_path / "s"), half="no")
    assert not (tmp_path / "s").exists() and (tmp_path / "afile").read_text() == "x"
    from flexvid.generate import VideoGenerator
    from flexvid.generator import Generator, GeneratorConfig
    gen = VideoGenerator(Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=pipe.n_tokens, max_t=5,
                                                   codebook_size=pipe.codebook_size, cond="class"), verbose=False),
                         tokenizer=pipe, device="cpu")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # "" is no folder, not the working one
    for folder, message in (("", "non-empty path"), (None, "non-empty path"), (str(tmp_path / "afile"), "afile"),
                            (str(tmp_path / "afile" / "sub"), "is a file, not a folder")):
        with pytest.raises(ValueError, match=message):
            gen.save_pretrained(folder)
    assert not os.listdir(tmp_path / "cwd") and (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("edit, message", [
    ({"n_heads": 0}, r"n_heads must be an integer in \[1, 1024\]"),
    ({"n_heads": -3}, "n_heads must be"),
    ({"max_t": 10**9}, r"max_t must be an integer in \[1, 65536\]"),
    ({"rope_base": 0}, "rope_base must be a number"),
    ({"temperature": -1}, "temperature must be a number"),
    ({"top_k": 10**9}, "top_k must be an integer"),
    ({"dim": 4096, "n_heads": 32, "n_layers": 8}, "does not match the model"),  # from the file's header, not built
])
def test_a_generator_config_is_checked_before_its_model_is_built(pipe, tmp_path, edit, message):
    import time

    from flexvid.generate import VideoGenerator
    from flexvid.generator import Generator, GeneratorConfig
    gen = VideoGenerator(Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=pipe.n_tokens, max_t=5,
                                                   codebook_size=pipe.codebook_size, cond="class")),
                         tokenizer=pipe, device="cpu")
    gen.save_pretrained(str(tmp_path / "g"))
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    cfg["generator"].update(edit)
    (tmp_path / "g" / "config.json").write_text(json.dumps(cfg))
    t0 = time.time()
    with pytest.raises(ValueError, match=message):
        VideoGenerator.from_pretrained(str(tmp_path / "g"), tokenizer=pipe, device="cpu")
    assert time.time() - t0 < 5
    with pytest.raises(ValueError, match="callback must be a function"):
        gen.sample_tokens(0, k=1, frames=5, callback=5)
    with pytest.raises(ValueError, match=r"callback\(stage, done, total\)"):
        gen.generate(0, k=1, frames=5, callback="x")


def test_runtime_names_and_callbacks(tmp_path):
    from flexvid.runtime import Runtime, Settings, UserError
    rt = Runtime(Settings(), pipeline=small_pipeline(), out_dir=str(tmp_path / "out"))
    path = tmp_path / "c.mp4"
    from flexvid import shapes
    video_io.write_video(path, shapes.make_clip(0, 1, 9).video, fps=8)
    for name in (123, ["a"], b"x", 1.5):
        with pytest.raises(UserError, match="name must be a string"):
            rt.add_clip(str(path), name=name)
    clip = rt.add_clip(str(path), name="x" * 5000)  # shown and put in file names: cut, not an OSError later
    assert clip.name == "x" * 117 + "..."  # 120 bytes
    assert rt.view(clip.id, k=1, steps=1).compare  # the outputs, named after it, are written
    with pytest.raises(UserError, match="progress must be a function"):
        rt.view(clip.id, k=1, steps=1, progress=5)
    with pytest.raises(UserError, match="expected a clip id"):
        rt.view(clip, k=1, steps=1)


def test_a_float64_default_dtype_changes_nothing(folder, tmp_path):
    """torch.set_default_dtype(torch.float64), as some notebooks start: the models still load as float32, and
    tokens, decodes and generated grids are those of a float32 default, the same seed the same noise."""
    from flexvid.generate import VideoGenerator
    from flexvid.generator import Generator, GeneratorConfig
    tok = VideoFlexTok.from_pretrained(folder, device="cpu")
    x = torch.rand(3, 9, 64, 64) * 2 - 1
    grid = tok.tokenize(x)[0]
    video = tok.detokenize(grid, k=2, steps=2, seed=3)[0]
    ladder = tok.reconstruct(x, ks=[1, 2], steps=1)
    gen = VideoGenerator(Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=tok.n_tokens, max_t=5,
                                                   codebook_size=tok.codebook_size, cond="class"), verbose=False),
                         tokenizer=tok, device="cpu")
    gen.save_pretrained(str(tmp_path / "g"))
    grids = gen.sample_tokens([1, 2], k=2, frames=9, seed=4)
    torch.set_default_dtype(torch.float64)
    try:
        again = VideoFlexTok.from_pretrained(folder, device="cpu")
        assert next(again.tokenizer.parameters()).dtype == torch.float32
        assert torch.equal(again.tokenize(x)[0], grid) and torch.equal(tok.tokenize(x)[0], grid)
        assert torch.equal(tok.detokenize(grid, k=2, steps=2, seed=3)[0], video)
        assert all(torch.equal(a, b) for a, b in zip(tok.reconstruct(x, ks=[1, 2], steps=1).values(), ladder.values()))
        gen2 = VideoGenerator.from_pretrained(str(tmp_path / "g"), tokenizer=tok, device="cpu")
        assert all(torch.equal(a, b) for a, b in zip(gen2.sample_tokens([1, 2], k=2, frames=9, seed=4), grids))
        assert torch.get_default_dtype() == torch.float64  # the caller's setting is kept
    finally:
        torch.set_default_dtype(torch.float32)


def test_a_callers_autocast_changes_nothing(folder, tmp_path):
    """A notebook's torch.autocast("cpu", dtype=torch.bfloat16) around the calls changed a float32 model's
    tokens (13 of 288) and decodes: the models run in the dtype they were loaded in, and the caller's autocast
    is on again after the call."""
    from flexvid.generate import VideoGenerator
    from flexvid.generator import Generator, GeneratorConfig
    tok = VideoFlexTok.from_pretrained(folder, device="cpu")
    x = torch.rand(3, 17, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    grid = tok.tokenize(x)[0]
    video = tok.detokenize(grid, k=3, steps=2, seed=3)[0]
    gen = VideoGenerator(Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=tok.n_tokens, max_t=5,
                                                   codebook_size=tok.codebook_size, cond="class"), verbose=False),
                         tokenizer=tok, device="cpu")
    grids = gen.sample_tokens([1, 2], k=2, frames=9, seed=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(tok.tokenize(x)[0], grid)
        assert torch.equal(tok.detokenize(grid, k=3, steps=2, seed=3)[0], video)
        assert all(torch.equal(a, b) for a, b in zip(gen.sample_tokens([1, 2], k=2, frames=9, seed=4), grids))
        assert torch.is_autocast_enabled("cpu") and (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_float32_default_holds_for_calls_overlapping_in_threads():
    """Two decorated calls in threads (the app serves requests so): the first one out does not put float64
    back under the other; the last one out does."""
    import threading
    import time

    from flexvid.hub import float32_default
    seen = {}

    @float32_default
    def entry(name, hold):
        time.sleep(0.05)
        seen[name] = [torch.get_default_dtype()]
        time.sleep(hold)  # a returns meanwhile
        seen[name].append(torch.randn(2).dtype)

    torch.set_default_dtype(torch.float64)
    try:
        a, b = (threading.Thread(target=entry, args=(n, h)) for n, h in (("a", 0.0), ("b", 0.3)))
        a.start()
        time.sleep(0.01)
        b.start()
        a.join()
        b.join()
        assert seen == {"a": [torch.float32] * 2, "b": [torch.float32] * 2}
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)


def test_num_steps_and_num_frames_take_only_what_tokenize_does(pipe):
    """num_frames(0) was -3 and num_steps(16) was 4, while tokenize refuses 16 frames (prepare_video pads
    them to 17: 5 steps)."""
    assert [pipe.num_steps(T) for T in (1, 5, 17, np.int64(21))] == [1, 2, 5, 6]
    assert [pipe.num_frames(t) for t in (1, 2, 5)] == [1, 5, 17]
    with pytest.raises(ValueError, match=r"got 16: padded to 17 frames \(its last frame repeated\) it makes 5 steps"):
        pipe.num_steps(16)
    for T in (0, -2, 2.5, True, "17"):
        with pytest.raises(ValueError, match=r"T must be a number of frames 1 \+ 4n"):
            pipe.num_steps(T)
    for t in (0, -2, 2.5):
        with pytest.raises(ValueError, match="t must be a number of time steps >= 1"):
            pipe.num_frames(t)


def test_class_labels_as_a_numpy_array_read_as_a_list(pipe):
    """np.array([3, 41]) was refused where torch.tensor([3, 41]) was taken; a 2-d array is one label per
    sample too many."""
    from flexvid.generate import VideoGenerator
    from flexvid.generator import Generator, GeneratorConfig
    gen = VideoGenerator(Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=pipe.n_tokens,
                                                   codebook_size=pipe.codebook_size, cond="class"), verbose=False),
                         tokenizer=pipe, device="cpu")
    want = gen.condition([3, 41])
    for given in (np.array([3, 41]), torch.tensor([3, 41]), np.array([3, 41], dtype=np.uint8)):
        assert torch.equal(gen.condition(given), want)
    assert torch.equal(gen.condition(np.int64(3)), gen.condition(3)) and torch.equal(gen.condition(np.array(3)), want[:1])
    for bad in (np.array([[3, 41]]), torch.tensor([[3], [41]])):
        with pytest.raises(ValueError, match=r"one prompt / label per sample, a 1-d array, got shape \(\d, \d\)"):
            gen.condition(bad)
    with pytest.raises(ValueError, match="non-empty list"):
        gen.condition(np.array([], dtype=int))
