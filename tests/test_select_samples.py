"""Reranked samples for fine-tuning (flexvid.select_samples, train-generator --selected)."""
import pytest
import torch

from flexvid import shapes
from flexvid.generate import VideoGenerator
from flexvid.select_samples import load_selected, save_selected, select, training_conditions
from flexvid.train_generator import caption_objects, fingerprint

from test_generator import small_generator, small_tokenizer


class BrightnessScorer:
    """A stand-in reranker: a video scores its mean brightness (deterministic, differs per candidate)."""

    def __init__(self):
        self.calls = []

    def score(self, videos, conditions, cond):
        self.calls.append((len(videos), list(conditions), cond))
        return torch.stack([v.float().mean() for v in videos])


def test_training_conditions_come_from_the_training_split():
    labels, lab = training_conditions("class", 5, start=10)
    assert labels == lab == [shapes.make_clip(0, 10 + i, 17).label for i in range(5)]
    prompts, lab = training_conditions("text", 40, start=10, reword=0.5)
    captions = [shapes.make_clip(0, 10 + i, 17).caption for i in range(40)]
    assert lab == [shapes.make_clip(0, 10 + i, 17).label for i in range(40)]
    same = sum(p == c for p, c in zip(prompts, captions))
    assert 5 < same < 35  # about half reworded
    for p, c in zip(prompts, captions):  # a rewording keeps every object's colour, in order
        colours = [o["color"] for o in caption_objects(c)]
        assert [w for w in p.replace(",", " ").split() if w in shapes.COLORS] == colours
    assert training_conditions("text", 40, start=10, reword=0.0)[0] == captions
    with pytest.raises(ValueError, match="cond"):
        training_conditions("audio", 2)
    with pytest.raises(ValueError, match="n must be"):
        training_conditions("class", 0)


def test_select_keeps_the_candidate_the_reranker_scores_best(tmp_path):
    gen = VideoGenerator(small_generator("class"), tokenizer=small_tokenizer())
    scorer = BrightnessScorer()
    conds = [3, 17, 42]
    res = select(gen, conds, candidates=3, k=2, frames=5, seed=7, batch=6, reranker=scorer)
    assert res["tokens"].shape == (3, 2, 8) and res["scores"].shape == (3, 3)
    # two calls: 2 conditions x 3 candidates, then 1 x 3; the reranker saw each candidate with its condition
    assert [c[0] for c in scorer.calls] == [6, 3]
    assert scorer.calls[0][1] == [3, 3, 3, 17, 17, 17] and scorer.calls[1][2] == "class"
    # the same candidates again, by hand: the kept grid is the argmax of the scores
    first = torch.stack(gen.sample_tokens([3, 3, 3, 17, 17, 17], 2, 5, seed=7))
    last = torch.stack(gen.sample_tokens([42, 42, 42], 2, 5, seed=8))
    cands = torch.cat([first, last]).view(3, 3, 2, 8)
    for i in range(3):
        j = int(res["scores"][i].argmax())
        assert res["pick"][i] == j
        assert torch.equal(res["tokens"][i], cands[i, j])
    assert res["scores"].std(1).min() > 0  # the candidates do differ
    scorer.calls.clear()  # one candidate: plain samples, neither decoded nor scored
    plain = select(gen, conds, candidates=1, k=2, frames=5, seed=7, batch=6, reranker=scorer)
    assert not scorer.calls
    assert torch.equal(plain["tokens"], torch.stack(gen.sample_tokens(conds, 2, 5, seed=7)))
    with pytest.raises(ValueError, match="candidates"):
        select(gen, conds, candidates=0, reranker=scorer)


def test_selected_file_round_trip_and_bad_files(tmp_path):
    res = {"tokens": torch.randint(0, 1000, (4, 5, 8)), "scores": torch.randn(4, 2)}
    path = str(tmp_path / "sel.safetensors")
    save_selected(path, res, ["a red circle", "b", "c", "d"], [1, 2, 3, 4], "text", {"tokenizer_fingerprint": "ab"})
    got = load_selected(path)
    assert torch.equal(got["tokens"], res["tokens"]) and torch.equal(got["scores"], res["scores"])
    assert got["cond"] == "text" and got["prompts"][0] == "a red circle" and got["labels"].tolist() == [1, 2, 3, 4]
    assert got["meta"]["tokenizer_fingerprint"] == "ab"
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a safetensors"):
        load_selected(str(tmp_path / "junk.safetensors"))
    with pytest.raises(ValueError, match="no selected-samples file"):
        load_selected(str(tmp_path / "missing.safetensors"))
    # a file of the format whose parts disagree, or with one missing: refused with a message, not an IndexError
    save_selected(path, res, ["a", "b", "c"], [1, 2, 3, 4], "text", {})
    with pytest.raises(ValueError, match="do not describe the same"):
        load_selected(path)
    save_selected(path, res, ["a"] * 4, [1, 2, 3], "text", {})
    with pytest.raises(ValueError, match="do not describe the same"):
        load_selected(path)
    from safetensors.torch import save_file
    save_file({"tokens": res["tokens"].to(torch.int16)}, path, metadata={"format": "flexvid-selected-samples",
                                                                        "cond": "class"})
    with pytest.raises(ValueError, match="missing"):
        load_selected(path)


def test_train_generator_draws_batches_from_the_selected_samples(tmp_path, monkeypatch):
    """With --p-selected 1 every training batch holds selected grids with their labels; another
    tokenizer's or another condition's samples are refused before training."""
    import flexvid.train_generator as tg

    tok = small_tokenizer()
    tok.save_pretrained(str(tmp_path / "tok"))
    grids = torch.randint(0, 1000, (6, 5, 8))
    path = str(tmp_path / "sel.safetensors")
    save_selected(path, {"tokens": grids, "scores": torch.zeros(6, 2)}, [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5],
                  "class", {"tokenizer_fingerprint": fingerprint(tok)})
    seen = []
    real = tg.generator_loss

    def spy(model, batch, rand, cfg, max_tokens):
        seen.append((batch[0].clone(), batch[1].clone()))
        return real(model, batch, rand, cfg, max_tokens)

    monkeypatch.setattr(tg, "generator_loss", spy)
    base = ["--cond", "class", "--tokenizer", str(tmp_path / "tok"), "--clips", "4", "--long-clips", "0",
            "--val-clips", "2", "--probe-clips", "0", "--batch-size", "3", "--threads", "1", "--eval-every", "0",
            "--ckpt-every", "10", "--warmup", "0", "--no-bf16", "--steps", "3"]
    tg.main([*base, "--out-dir", str(tmp_path / "a"), "--selected", path, "--p-selected", "1"])
    assert len(seen) == 3
    for tokens, labels in seen:
        for g, lab in zip(tokens, labels):
            assert torch.equal(g, grids[lab])  # a selected grid, with its own condition
    seen.clear()
    tg.main([*base, "--out-dir", str(tmp_path / "b"), "--selected", path, "--p-selected", "0"])
    assert len(seen) == 3
    cache = tg.token_cache(str(tmp_path / "b" / "tokens.safetensors"), tok, {"train": ("train", 0, 4, 17)})
    assert all(any(torch.equal(g, c) for c in cache["train"]["tokens"]) for tokens, _ in seen for g in tokens)

    save_selected(path, {"tokens": grids, "scores": torch.zeros(6, 2)}, list(range(6)), list(range(6)),
                  "class", {"tokenizer_fingerprint": "another"})
    with pytest.raises(ValueError, match="another tokenizer"):
        tg.main([*base, "--out-dir", str(tmp_path / "c"), "--selected", path])
    assert not (tmp_path / "c" / "tokens.safetensors").exists()  # refused before the token cache is built
    save_selected(path, {"tokens": grids, "scores": torch.zeros(6, 2)}, list(range(6)), list(range(6)),
                  "class", {"tokenizer_fingerprint": fingerprint(tok), "k": 2})
    with pytest.raises(ValueError, match="k = 2"):
        tg.main([*base, "--out-dir", str(tmp_path / "c"), "--selected", path])
    save_selected(path, {"tokens": grids, "scores": torch.zeros(6, 2)}, ["a"] * 6, list(range(6)), "text",
                  {"tokenizer_fingerprint": fingerprint(tok)})
    with pytest.raises(ValueError, match="'text' generator"):
        tg.main([*base, "--out-dir", str(tmp_path / "d"), "--selected", path])
    with pytest.raises(ValueError, match="p-selected"):
        tg.main([*base, "--out-dir", str(tmp_path / "e"), "--selected", path, "--p-selected", "1.5"])
