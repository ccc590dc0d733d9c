"""Best-of-N sampling: the shipped reranker, its prompt reader, and generate(best_of=N)."""
import numpy as np
import pytest
import torch

from flexvid import shapes
from flexvid.eval_generator import best_of, paraphrase_prompt
from flexvid.generate import DEFAULT_MODELS, DEFAULT_TOKENIZER, MAX_BATCH, VideoGenerator
from flexvid.rerank import ATTRS, DEFAULT_RERANKER, NAMES, Reranker, reader_accuracy
from flexvid.teacher import degrade


@pytest.fixture(scope="module")
def reranker():
    return Reranker.from_pretrained(DEFAULT_RERANKER)


@pytest.fixture(scope="module")
def clips():
    return shapes.fixed_split("test", 24, 17)


def _videos(clips):
    return torch.stack([shapes.to_tensor(c.video) for c in clips])


def test_prompt_reader_reads_held_out_captions(reranker):
    val = shapes.fixed_split("val", 128, 1)
    acc = reader_accuracy(reranker, [c.caption for c in val], [c.objects[0] for c in val])
    assert acc["color"] >= 0.9 and acc["shape"] >= 0.9 and acc["size"] >= 0.9, acc
    rng = np.random.default_rng(1)
    para = reader_accuracy(reranker, [paraphrase_prompt(c.objects[0], rng) for c in val], [c.objects[0] for c in val])
    assert para["color"] >= 0.9, para  # colour words are the same; shapes and motions are reworded
    two = [c for c in val if len(c.objects) > 1]  # the main object is the first named, not the other one
    assert len(two) >= 20
    acc2 = reader_accuracy(reranker, [c.caption for c in two], [c.objects[0] for c in two])
    assert min(acc2.values()) >= 0.9, acc2
    assert para["motion"] >= 0.85, para


def test_attention_reader_ignores_padding_and_linear_rerankers_still_load(reranker, tmp_path):
    from flexvid.rerank import AttentionReader, PromptReader
    assert isinstance(reranker.reader, AttentionReader) and reranker.text_encoder.tokens == reranker.reader.tokens
    emb = reranker.text_encoder.encode(["a small red circle moving left", "a large blue square moving up"])
    short = {a: v for a, v in reranker.reader(emb[:, :12]).items()}  # the same prompts, fewer zero rows
    full = reranker.reader(emb)
    assert (emb[:, 12:].abs().sum() == 0)
    assert all(torch.allclose(short[a], full[a], atol=1e-5) for a in ATTRS)
    # a reranker saved with the linear reader (session 14's format) loads as one and reads sentence vectors
    torch.manual_seed(0)
    from flexvid.text import TextEncoder
    lin = Reranker(reranker.teacher, PromptReader(384), TextEncoder("default"))
    lin.save_pretrained(str(tmp_path / "lin"))
    import json
    cfg = json.loads((tmp_path / "lin" / "config.json").read_text())
    assert cfg.pop("reader") == "linear" and cfg.pop("reader_tokens") == 0  # session 14 wrote neither
    (tmp_path / "lin" / "config.json").write_text(json.dumps(cfg))
    back = Reranker.from_pretrained(str(tmp_path / "lin"))
    assert isinstance(back.reader, PromptReader) and back.text_encoder.tokens == 0
    prompts = ["a small red circle moving left"]
    assert all(torch.allclose(back.targets(prompts, "text")[a], lin.targets(prompts, "text")[a], atol=1e-6)
               for a in ATTRS)


@pytest.mark.parametrize("cond", ["text", "class"])
def test_true_condition_scores_highest_on_ground_truth_clips(reranker, clips, cond):
    """Score every clip against every clip's condition: the clip's own condition should win its row
    (ties between clips that share the condition count as right)."""
    conds = [c.caption for c in clips] if cond == "text" else [c.label for c in clips]
    videos = _videos(clips)
    n = len(clips)
    rep_v = videos.repeat_interleave(n, 0)  # clip i against every condition j
    s = reranker.score(rep_v, conds * n, cond).view(n, n)
    same = lambda i, j: (conds[i] == conds[j] if cond == "class" else  # noqa: E731
                         all(getattr(clips[i].objects[0], a) == getattr(clips[j].objects[0], a) for a in ATTRS))
    right = sum(same(i, int(s[i].argmax())) for i in range(n))
    assert right >= 0.8 * n, (right, n)


def test_reranker_prefers_the_clean_clip_to_a_wrong_shape(reranker):
    """The same clip rendered with the main object's shape swapped scores lower for the true caption."""
    wins = 0
    for i in range(12):
        c = shapes.make_clip(2, 1000 + i, 17)
        bg = shapes._sample_clip(2, 1000 + i)[0]
        o = c.objects[0]
        wrong = shapes.ShapeObject(o.color, next(s for s in shapes.SHAPES if s != o.shape), o.size, o.motion, o.start)
        alt = shapes.render([wrong, *c.objects[1:]], bg, 17)
        v = torch.stack([shapes.to_tensor(c.video), shapes.to_tensor(alt)])
        s = reranker.score(v, [c.caption] * 2, "text")
        wins += int(s[0] > s[1])
    assert wins >= 10, wins


def test_degrade_blurs_and_is_deterministic():
    v = _videos(shapes.fixed_split("val", 4, 5))
    a, b = degrade(v, torch.Generator().manual_seed(3)), degrade(v, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == v.shape and a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, v)
    grad = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    blurred = degrade(v, torch.Generator().manual_seed(0), max_sigma=1.5, max_noise=0.0)
    assert grad(blurred) <= grad(v)


@pytest.fixture(scope="module")
def text_gen():
    return VideoGenerator.from_pretrained(DEFAULT_MODELS["text"], tokenizer=DEFAULT_TOKENIZER, device="cpu")


def test_best_of_returns_the_candidate_the_reranker_scores_best(text_gen):
    prompts = [c.caption for c in shapes.fixed_split("test", 2, 5)]
    kw = dict(k=4, frames=5, seed=7)
    picked = text_gen.generate(prompts, best_of=3, **kw)
    scores = text_gen.last_scores
    assert len(picked) == 2 and scores.shape == (2, 3)
    # the same 6 candidates, sampled and decoded as one plain batch of repeated prompts
    cands = text_gen.generate([p for p in prompts for _ in range(3)], **kw)
    again = text_gen.reranker.score(cands, [p for p in prompts for _ in range(3)], "text").view(2, 3)
    assert torch.allclose(scores, again, atol=1e-4)
    for i in range(2):
        assert torch.equal(picked[i], cands[3 * i + int(scores[i].argmax())])
    assert torch.equal(text_gen.generate(prompts[0], best_of=1, **kw)[0], text_gen.generate(prompts[0], **kw)[0])


def test_best_of_preview_ranks_cheap_decodes_and_returns_the_full_decode(text_gen):
    """preview_steps: the candidates are ranked from decodes of that many steps, and the kept one comes
    back as its full decode (the same noise), not as its preview."""
    prompts = [c.caption for c in shapes.fixed_split("test", 2, 5)]
    kw = dict(k=4, frames=5, seed=7)
    picked = text_gen.generate(prompts, best_of=3, preview_steps=2, **kw)
    scores = text_gen.last_scores
    rep = [p for p in prompts for _ in range(3)]
    grids = text_gen.sample_tokens(rep, k=4, frames=5, seed=7)
    tok = text_gen.tokenizer
    g = text_gen.decode_guidance()
    previews = tok.detokenize(grids, k=4, steps=2, guidance=g, seed=[7 + i for i in range(6)])
    assert torch.allclose(scores, text_gen.reranker.score(previews, rep, "text").view(2, 3), atol=1e-4)
    for i in range(2):
        j = 3 * i + int(scores[i].argmax())
        full = tok.detokenize([grids[j]], k=4, guidance=g, seed=7 + j)[0]
        assert torch.allclose(picked[i], full, atol=1e-5)
        assert not torch.allclose(picked[i], previews[j], atol=1e-3)
    # best_of 1 has nothing to rank: a valid preview_steps changes nothing (a bad one is still refused)
    assert torch.equal(text_gen.generate(prompts[0], preview_steps=2, **kw)[0], text_gen.generate(prompts[0], **kw)[0])
    for bad in (0, 10, 11, 2.5, True, "2"):
        with pytest.raises(ValueError, match="preview_steps"):
            text_gen.generate(prompts[0], best_of=2, preview_steps=bad, **kw)
    with pytest.raises(ValueError, match="a decode of at least 2 steps .*, the decode has 1"):  # not "in [1, 0]"
        text_gen.generate(prompts[0], best_of=2, preview_steps=1, **{**kw, "decode_steps": 1})


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "4", MAX_BATCH + 1])
def test_best_of_rejects_bad_values(text_gen, bad):
    with pytest.raises(ValueError, match="best_of"):
        text_gen.generate("a small red circle moving left", best_of=bad, frames=5)


def test_best_of_too_many_samples_is_refused_before_sampling(text_gen):
    with pytest.raises(ValueError, match="samples per call"):
        text_gen.generate(["a small red circle moving left"] * 20, best_of=4, frames=5)


def test_missing_reranker_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no reranker"):
        Reranker.from_pretrained(str(tmp_path))
    # a config that disagrees with its weights, and weights that are not safetensors: ValueErrors that say so
    import json
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree("assets/reranker", bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "reader_tokens": cfg["reader_tokens"] + 3}))
    with pytest.raises(ValueError, match="does not hold a loadable reranker"):
        Reranker.from_pretrained(str(bad))
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="does not hold a loadable reranker"):
        Reranker.from_pretrained(str(bad))


def test_fitting_a_prompt_reader_leaves_the_global_rng_alone():
    from flexvid.rerank import fit_prompt_reader

    class Enc:  # a stand-in for the text encoder: fixed random sentence vectors
        tokens = 0

        def encode(self, prompts):
            return torch.randn(len(prompts), 8, generator=torch.Generator().manual_seed(1))

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = fit_prompt_reader(Enc(), n=16, steps=2)
    assert torch.equal(torch.rand(3), expected)
    b = fit_prompt_reader(Enc(), n=16, steps=2)  # and the reader is the same whatever the RNG held
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_eval_best_of_reports_first_reranked_and_oracle(text_gen):
    clips = shapes.fixed_split("test", 3, 5)
    res = best_of(text_gen, clips, n=2, k=2, frames=5)
    assert res["n"] == 3 and res["candidates"] == 2
    for part in ("first", "reranked"):
        assert set(res[part]) == {*NAMES, "all"} and all(0 <= v <= 1 for v in res[part].values())
    assert res["oracle_all"] >= max(res["first"]["all"], res["reranked"]["all"])


def test_loading_models_leaves_the_callers_rng_as_it_was():
    """Loading builds each model with random initial weights, then overwrites them: that used to draw the
    caller's global RNG, so a first generate(best_of=N) (which loads the reranker) changed the numbers a
    seeded script drew after it, and later calls did not."""
    def draws(load):
        torch.manual_seed(0)
        load()
        return torch.rand(4)

    torch.manual_seed(0)
    want = torch.rand(4)
    for load in (lambda: Reranker.from_pretrained(DEFAULT_RERANKER),
                 lambda: VideoGenerator.from_pretrained(DEFAULT_MODELS["class"], device="cpu").tokenizer):
        assert torch.equal(draws(load), want)
