import numpy as np
import pytest
import torch

from conftest import SMALL_TOK, small_pipeline
from flexvid import shapes
from flexvid.encoder import encoder_mask
from flexvid.pipeline import VideoFlexTok, chunk_bounds
from flexvid.quantizer import FSQuantizer, calibrate, nested_dropout, prefix_ladder, sample_k
from flexvid.tokenizer import TOKENIZER_CONFIGS, FlexTokenizer, TokenizerConfig


def clip(i=0, T=17):
    return shapes.to_tensor(shapes.make_clip(2, i, T).video)


def test_shapes_and_dtypes(pipe):
    grids = pipe.tokenize(torch.stack([clip(0), clip(1)]))
    assert len(grids) == 2 and grids[0].shape == (5, 8) and grids[0].dtype == torch.int64
    assert 0 <= int(grids[0].min()) and int(grids[0].max()) < pipe.codebook_size
    out = pipe.detokenize(grids, k=2, steps=2)
    assert out[0].shape == (3, 17, 64, 64) and out[0].dtype == torch.float32
    assert out[0].abs().max() <= 1.0


def test_time_causal_tokens(pipe):
    """Changing a later frame leaves the tokens of earlier time steps unchanged."""
    x = clip(3)
    y = x.clone()
    y[:, 13:] = torch.rand_like(y[:, 13:]) * 2 - 1  # frames 13..16 = latent step 4
    a, b = pipe.tokenize(x)[0], pipe.tokenize(y)[0]
    assert torch.equal(a[:4], b[:4])
    assert not torch.equal(a[4], b[4])


def test_encoder_mask_structure():
    m = encoder_mask(2, 3, 2, True)  # 2 steps of 3 patches + 2 registers
    assert m.shape == (10, 10)
    assert not m[0, 5:].any()  # step 0 never sees step 1
    assert not m[0, 3] and m[3, 0]  # patches do not read registers; registers read patches
    assert m[4, 3] and not m[3, 4]  # register causality within a step
    assert m[5:, :5][:3, :3].all()  # step 1 patches see step 0 patches


def test_fsq_round_trip():
    q = FSQuantizer(16, [8, 5, 5, 5], 16, max_t=5, n_registers=4)
    codes, idx = q.quantize(torch.randn(3, 5, 4, 16) * 3)
    assert idx.shape == (3, 5, 4) and codes.shape == (3, 5, 4, 4)
    assert torch.equal(q.indices_to_codes(idx), codes)
    all_idx = torch.arange(1000).view(1, 1, 1000)
    assert torch.equal(q.fsq.codes_to_indices(q.indices_to_codes(all_idx).flatten(1, 2)).view(1, 1, 1000).long(), all_idx)
    with pytest.raises(ValueError):
        q.indices_to_codes(torch.tensor([[[1000]]]))


def test_nested_dropout_masks_exactly_from_k():
    x = torch.randn(3, 2, 8, 4)
    mask = torch.full((4,), 7.0)
    k = torch.tensor([1, 4, 8])
    y = nested_dropout(x, k, mask)
    for b, kb in enumerate(k.tolist()):
        assert torch.equal(y[b, :, :kb], x[b, :, :kb])
        assert (y[b, :, kb:] == 7.0).all()
    assert prefix_ladder(32) == [1, 2, 4, 8, 16, 32] and prefix_ladder(12) == [1, 2, 4, 8, 12]
    u = torch.linspace(0, 0.999, 1000)
    assert set(sample_k(u, 32, "pow2").tolist()) == {1, 2, 4, 8, 16, 32}
    assert set(sample_k(u, 32, "uniform").tolist()) == set(range(1, 33))


def test_nested_decay_draws_short_prefixes_more_often():
    u = torch.rand(60000, generator=torch.Generator().manual_seed(0))
    k = sample_k(u, 32, "pow2", decay=0.5)
    freq = torch.stack([(k == v).float().mean() for v in prefix_ladder(32)])
    expected = 0.5 ** torch.arange(6.0)
    assert torch.allclose(freq, expected / expected.sum(), atol=0.01)
    flat = sample_k(u, 32, "pow2", decay=1.0)
    assert torch.allclose(torch.stack([(flat == v).float().mean() for v in prefix_ladder(32)]),
                          torch.full((6,), 1 / 6), atol=0.01)
    assert set(sample_k(u, 8, "uniform", decay=0.8).tolist()) == set(range(1, 9))
    with pytest.raises(ValueError, match="decay"):
        sample_k(u, 32, "pow2", decay=0.0)


def test_decoding_depends_on_kept_tokens_only(pipe):
    g = pipe.tokenize(clip(5))[0]
    g2 = g.clone()
    g2[:, 4:] = (g2[:, 4:] + 1) % pipe.codebook_size  # change tokens beyond k = 4
    a = pipe.detokenize([g], k=4, steps=2, seed=1)[0]
    b = pipe.detokenize([g2], k=4, steps=2, seed=1)[0]
    c = pipe.detokenize([g2], k=8, steps=2, seed=1)[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_save_load_round_trip(tmp_path, pipe):
    pipe.save_pretrained(str(tmp_path / "m"))
    again = VideoFlexTok.from_pretrained(str(tmp_path / "m"), device="cpu")
    x = clip(4)
    assert torch.equal(pipe.tokenize(x)[0], again.tokenize(x)[0])
    assert torch.equal(pipe.detokenize(pipe.tokenize(x), steps=2)[0], again.detokenize(again.tokenize(x), steps=2)[0])
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "tokenizer.safetensors", "vae.safetensors"]


def test_wrapping_leaves_a_model_in_training_trainable_and_loading_leaves_the_callers_rng(tmp_path):
    """VideoFlexTok(vae, tokenizer) used to freeze the modules it was given (requires_grad_(False)), so a
    model wrapped mid-training to look at its reconstructions stopped training; and loading drew the
    caller's global RNG (random initial weights, then overwritten)."""
    frozen = small_pipeline()
    pipe = VideoFlexTok(frozen.vae, frozen.tokenizer.train().requires_grad_(True), device="cpu")
    pipe.reconstruct(clip(1, 9), ks=[1, 8], steps=1)
    assert pipe.tokenizer.training and all(p.requires_grad for p in pipe.tokenizer.parameters())
    z = pipe.vae.encode(clip(1, 9)[None]).detach()
    v, _ = pipe.tokenizer(z, torch.randn_like(z), torch.rand(1, z.shape[2]), torch.full((1,), 8),
                          torch.zeros(1, dtype=torch.bool))
    v.pow(2).mean().backward()  # "element 0 of tensors does not require grad" before
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pipe.tokenizer.parameters())
    pipe.save_pretrained(str(tmp_path / "m"))
    torch.manual_seed(0)
    want = torch.rand(4)
    torch.manual_seed(0)
    loaded = VideoFlexTok.from_pretrained(str(tmp_path / "m"), device="cpu")
    assert torch.equal(torch.rand(4), want)
    assert not loaded.tokenizer.training and not any(p.requires_grad for p in loaded.tokenizer.parameters())
    assert not any(p.requires_grad for p in loaded.vae.parameters())


def test_load_refuses_bad_folders(tmp_path):
    with pytest.raises(ValueError):
        VideoFlexTok.from_pretrained(str(tmp_path / "missing"))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a flexvid tokenizer"):
        VideoFlexTok.from_pretrained(str(tmp_path / "x"))


def test_long_video_chunks(pipe):
    assert chunk_bounds(81, 17) == [(0, 16), (16, 32), (32, 48), (48, 64), (64, 80)]
    assert chunk_bounds(21, 17) == [(0, 16), (16, 20)]
    assert chunk_bounds(5, 2) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(ValueError, match="at least 2 frames"):  # a one-frame chunk would never move on
        chunk_bounds(5, 1)
    x = clip(6, 81)
    g = pipe.tokenize(x)[0]
    assert g.shape == (21, 8)
    # chunked tokens match per-chunk tokenization, without the repeated first step
    assert torch.equal(g[:5], pipe.tokenize(x[:, :17])[0])
    assert torch.equal(g[5:9], pipe.tokenize(x[:, 16:33])[0][1:])
    out = pipe.detokenize([g], k=8, steps=2)[0]
    assert out.shape == (3, 81, 64, 64)
    assert pipe.tokenize(clip(6, 29))[0].shape == (8, 8)


def test_ladder_batched_equals_separate(pipe):
    x = clip(7)
    g = pipe.tokenize(x)[0]
    ladder = pipe.reconstruct(x, ks=[1, 4, 8], steps=2, seed=3, tokens=g)
    for k, v in ladder.items():
        alone = pipe.detokenize([g], k=k, steps=2, seed=3)[0]
        assert torch.allclose(v, alone, atol=1e-4)


def test_seeded_sampling(pipe):
    g = pipe.tokenize(clip(8))
    a, b = pipe.detokenize(g, k=2, steps=2, seed=5), pipe.detokenize(g, k=2, steps=2, seed=5)
    c = pipe.detokenize(g, k=2, steps=2, seed=6)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_noise_scale(pipe):
    g = pipe.tokenize(torch.rand(3, 21, 64, 64) * 2 - 1)  # 21 frames: two chunks
    assert pipe.tokenizer.cfg.noise_scale == 1.0
    base = pipe.detokenize(g, k=2, steps=2, seed=5)[0]
    assert torch.equal(pipe.detokenize(g, k=2, steps=2, seed=5, noise_scale=1.0)[0], base)
    half = pipe.detokenize(g, k=2, steps=2, seed=5, noise_scale=0.5)[0]
    assert not torch.equal(half, base)
    # no starting noise: the decode no longer depends on the seed, through the chunks too
    z5, z6 = (pipe.detokenize(g, k=2, steps=2, seed=s, noise_scale=0.0)[0] for s in (5, 6))
    assert torch.equal(z5, z6) and not torch.equal(z5, half)
    ladder = pipe.reconstruct(None, ks=[2], steps=2, seed=5, tokens=g[0], noise_scale=0.5)
    assert torch.allclose(ladder[2], half, atol=1e-5)


def test_sample_latents_are_what_detokenize_decodes(pipe):
    g = pipe.tokenize([shapes.to_tensor(shapes.make_clip(0, i, 17).video) for i in range(2)])
    z = pipe.sample_latents(g, k=4, steps=2, seed=[5, 6])
    v = pipe.detokenize(g, k=4, steps=2, seed=[5, 6])
    for i in range(2):
        assert torch.allclose(pipe.vae.decode(z[i:i + 1])[0], v[i], atol=1e-4)
    assert not torch.allclose(z[0], pipe.sample_latents(g[:1], k=4, steps=2, seed=7)[0])
    with pytest.raises(ValueError, match="one chunk|at most"):
        pipe.sample_latents(pipe.tokenize(torch.rand(3, 21, 64, 64) * 2 - 1))
    with pytest.raises(ValueError, match="k must"):
        pipe.sample_latents(g, k=0)


def test_guidance_modes_run(pipe):
    g = pipe.tokenize(clip(9))
    base = pipe.detokenize(g, k=2, steps=2, guidance=1.0)[0]
    for mode in ("cfg", "apg"):
        v = pipe.detokenize(g, k=2, steps=2, guidance=3.0, guidance_mode=mode)[0]
        assert torch.isfinite(v).all() and not torch.equal(v, base)


def test_apg_is_the_papers_formula_per_time_step_and_keeps_time_causality():
    """APG (arXiv 2410.02416, Alg. 1) per sample, here per time step: each step's result is the paper's
    formula on that step alone, so changing a later step changes nothing before it, and a clean prefix step
    (s = 0) stays where it is."""
    from flexvid.flow import apg_combine
    torch.manual_seed(0)
    B, C, t, h, w = 2, 4, 5, 3, 3
    x, vc, vu = (torch.randn(B, C, t, h, w) for _ in range(3))
    s = torch.rand(B, t) * 0.9 + 0.05
    s[:, 0] = 0.0  # a clean prefix step
    for eta, thr in ((0.0, 0.0), (0.5, 2.0)):
        out = apg_combine(x, s, vc, vu, 4.0, eta=eta, norm_threshold=thr)
        for j in range(1, t):  # the paper's formula on step j alone
            one = [a[:, :, j:j + 1] for a in (x, vc, vu)]
            x0c, x0u = (one[0] - s[:, None, j:j + 1, None, None] * v for v in one[1:])
            d = x0c - x0u
            if thr:
                d = d * torch.clamp(thr / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1, 1), max=1.0)
            u = x0c / x0c.flatten(1).norm(dim=1).view(-1, 1, 1, 1, 1)
            par = (d * u).flatten(1).sum(1).view(-1, 1, 1, 1, 1) * u
            x0 = x0c + 3.0 * (d - par + eta * par)
            ref = (one[0] - x0) / s[:, None, j:j + 1, None, None]
            assert torch.allclose(out[:, :, j:j + 1], ref, atol=1e-4)
        assert torch.allclose(out[:, :, 0], torch.zeros_like(out[:, :, 0]), atol=1e-5)  # s = 0: the prefix stays
        later = [a.clone() for a in (x, vc, vu)]
        for a in later:
            a[:, :, 3:] += torch.randn_like(a[:, :, 3:])
        again = apg_combine(*later[:1], s, *later[1:], 4.0, eta=eta, norm_threshold=thr)
        assert torch.equal(again[:, :, :3], out[:, :, :3]) and not torch.allclose(again[:, :, 3:], out[:, :, 3:])


def test_apg_decoding_is_time_causal(pipe):
    """Changing the tokens of later time steps leaves the earlier decoded frames unchanged, with APG as
    with CFG (the decoder is block-causal in time)."""
    g = pipe.tokenize(clip(9))[0]
    other = g.clone()
    other[3:] = pipe.tokenize(clip(10))[0][3:]
    for mode in ("cfg", "apg"):
        a = pipe.detokenize([g], k=4, steps=2, guidance=3.0, guidance_mode=mode, seed=0)[0]
        b = pipe.detokenize([other], k=4, steps=2, guidance=3.0, guidance_mode=mode, seed=0)[0]
        changed = [f for f in range(a.shape[1]) if not torch.allclose(a[:, f], b[:, f], atol=1e-5)]
        assert changed and min(changed) >= 9, (mode, changed)  # time step 3 decodes frames 9-12


@pytest.mark.parametrize("bad", [
    dict(k=0), dict(k=99), dict(k=2.5), dict(steps=0), dict(steps=10_000), dict(guidance=-1.0),
    dict(guidance=float("nan")), dict(guidance_mode="magic"), dict(seed="x"),
    dict(seed=2**70), dict(seed=[1.5]), dict(noise_scale=-0.1), dict(noise_scale=3.0),
    dict(noise_scale=float("nan")), dict(noise_scale="low"), dict(noise_scale=True),
])
def test_bad_parameters_are_clear_errors(pipe, bad):
    g = pipe.tokenize(clip(0))
    with pytest.raises(ValueError, match=next(iter(bad))):  # the message names the parameter
        pipe.detokenize(g, **bad)


@pytest.mark.parametrize("bad", [
    torch.zeros(3, 16, 64, 64), torch.zeros(3, 17, 32, 32), torch.zeros(17, 64, 64), "a string",
    [], torch.full((3, 17, 64, 64), float("nan")), np.zeros((17, 64, 64, 3), np.uint8),
])
def test_bad_videos_are_clear_errors(pipe, bad):
    with pytest.raises(ValueError):
        pipe.tokenize(bad)


def test_bad_tokens_are_clear_errors(pipe):
    for bad in [torch.zeros(5, 3, dtype=torch.long), torch.full((5, 8), -1), torch.full((5, 8), 10 ** 6),
                torch.zeros(5, 8), torch.zeros(0, 8, dtype=torch.long)]:
        with pytest.raises(ValueError):
            pipe.detokenize([bad], steps=1)


def test_calibration_makes_clips_distinct():
    torch.manual_seed(0)
    tok = FlexTokenizer(TokenizerConfig(**SMALL_TOK))
    z = torch.randn(1, 8, 5, 16, 16) + 0.02 * torch.randn(64, 8, 5, 16, 16)  # clips nearly identical
    before = tok.encode(z[32:])[1][:, 0, 0].unique().numel()
    calibrate(tok.quantizer, tok.encoder(z[:32]))
    after = tok.encode(z[32:])[1][:, 0, 0].unique().numel()
    assert before <= 3 and after >= 8


@pytest.mark.parametrize("name", list(TOKENIZER_CONFIGS))
def test_presets_build(name):
    """Every preset builds (the paper sizes on the meta device), and its sizes are consistent."""
    cfg = TOKENIZER_CONFIGS[name]
    with torch.device("meta"):
        model = FlexTokenizer(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n > 0
    if name == "d18-d18":
        assert cfg.enc_layers == cfg.dec_layers == 18 and cfg.dec_dim == 1152
        assert 4e8 < n < 8e8  # the release's 128 px model is about 570M parameters


def test_training_loss_with_repa_and_prefix():
    """One tokenizer training step with REPA against the frozen VAE's features: finite, and gradients
    reach the encoder through FSQ's straight-through estimator."""
    from flexvid.repa import VAEFeatures
    from flexvid.train_tokenizer import tokenizer_loss
    from flexvid.training import StepRandom

    pipe = small_pipeline()
    feats = VAEFeatures(pipe.vae, patch=4)
    tok = FlexTokenizer(TokenizerConfig(**{**SMALL_TOK, "repa_dim": feats.dim, "repa_layer": 1, "p_prefix": 0.5}))
    batch = (torch.stack([clip(i) for i in range(4)]), None, None)
    rand = StepRandom(0, 0, 0, 1, torch.device("cpu"))
    opt = torch.optim.SGD(tok.parameters(), lr=0.1)
    for step in range(2):  # adaLN-zero: the decoder ignores its registers until its first update
        opt.zero_grad()
        loss, metrics = tokenizer_loss(tok, batch, rand, pipe.vae, tok.cfg, feats, repa_weight=0.5)
        loss.backward()
        assert torch.isfinite(loss) and 0 <= metrics["repa"] <= 2 and 0 <= metrics["var"] <= tok.cfg.var_target
        opt.step()
    assert tok.encoder.x_embedder.weight.grad.abs().sum() > 0
    assert tok.repa_head[0].weight.grad.abs().sum() > 0


def test_attribute_loss_trains_the_first_token_to_name_the_clip(tmp_path):
    """--set attr_weight: the training-only head reads the first token of every step; its loss reaches
    the encoder through FSQ, a motion-like attribute is not asked of the first step, missing labels are
    a clear error, the head survives save/load, and the field leaves token caches valid."""
    from flexvid.train_generator import fingerprint
    from flexvid.train_tokenizer import attribute_loss, tokenizer_loss
    from flexvid.training import StepRandom

    # the temporal attribute ignores step 0: logits right from step 1 on, wrong at step 0
    labels = torch.tensor([[1, 2], [0, 1]])
    logits = torch.full((2, 3, 5), -9.0)
    for b in range(2):
        logits[b, :, labels[b, 0]] = 9.0  # attribute 0 (2 classes) right at every step
        logits[b, 1:, 2 + labels[b, 1]] = 9.0  # attribute 1 (3 classes) right from step 1
        logits[b, 0, 2 + (labels[b, 1] + 1) % 3] = 9.0
    loss, accs = attribute_loss(logits, labels, (2, 3), (False, True))
    assert accs == [1.0, 1.0] and loss < 1e-3
    _, accs = attribute_loss(logits, labels, (2, 3), (False, False))
    assert accs[0] == 1.0 and abs(accs[1] - 2 / 3) < 1e-6

    pipe = small_pipeline()
    before = fingerprint(pipe)
    cfg = TokenizerConfig(**{**SMALL_TOK, "attr_weight": 0.5, "attr_classes": (6, 3, 2, 5),
                             "attr_temporal": (False, False, False, True)})
    tok = FlexTokenizer(cfg)
    tok.load_state_dict(pipe.tokenizer.state_dict(), strict=False)
    x = torch.stack([clip(i) for i in range(4)])
    batch = (x, shapes.attribute_labels(2, range(4)), None)
    loss, metrics = tokenizer_loss(tok, batch, StepRandom(0, 0, 0, 1, torch.device("cpu")), pipe.vae, cfg)
    loss.backward()
    assert torch.isfinite(loss) and metrics["attr"] > 0 and all(0 <= metrics[f"attr_acc{i}"] <= 1 for i in range(4))
    assert tok.encoder.x_embedder.weight.grad.abs().sum() > 0 and tok.attr_head[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="attribute labels"):
        tokenizer_loss(tok, (x, torch.zeros(4), None), StepRandom(0, 0, 0, 1, torch.device("cpu")), pipe.vae, cfg)
    with pytest.raises(ValueError, match="attr_classes"):
        TokenizerConfig(attr_weight=0.5)

    # a new head is first fitted alone to what the tokens say: its loss falls, the encoder is untouched
    from flexvid.train_tokenizer import fit_attribute_head
    z = torch.cat([pipe.vae.encode(torch.stack([clip(i) for i in range(j, j + 8)])) for j in range(0, 32, 8)])
    y = shapes.attribute_labels(2, range(32))
    enc = [p.detach().clone() for p in tok.encoder.parameters()]
    with torch.no_grad():
        before_fit = attribute_loss(tok.attr_head(tok.encode(z[:24])[0][:, :, 0]), y[:24], cfg.attr_classes,
                                    cfg.attr_temporal)[0]
    accs = fit_attribute_head(tok, z, y, steps=50, batch=24)
    with torch.no_grad():
        after_fit = attribute_loss(tok.attr_head(tok.encode(z[:24])[0][:, :, 0]), y[:24], cfg.attr_classes,
                                   cfg.attr_temporal)[0]
    assert after_fit < before_fit and len(accs) == 4 and all(0 <= a <= 1 for a in accs)
    assert all(torch.equal(a, b) for a, b in zip(enc, tok.encoder.parameters()))

    with_head = VideoFlexTok(pipe.vae, tok.eval(), device="cpu")
    assert fingerprint(with_head) == before  # same encoder weights: same tokens, whatever the training fields
    with_head.save_pretrained(str(tmp_path / "m"))
    back = VideoFlexTok.from_pretrained(str(tmp_path / "m"), device="cpu")
    assert back.tokenizer.attr_head is not None and back.tokenizer.cfg.attr_classes == (6, 3, 2, 5)
    assert torch.equal(back.tokenizer.attr_head[0].weight, tok.attr_head[0].weight)
    assert small_pipeline().tokenizer.attr_head is None


def test_attribute_batches_label_their_own_clips():
    """The attribute labels of fresh and cached training batches belong to the clips in them, on every
    rank and from any starting step."""
    from flexvid.train_tokenizer import attribute_batches, cached_batches

    seed = shapes.SPLIT_SEEDS["train"]
    for start, rank, world in ((0, 0, 1), (3, 1, 2)):
        videos, labels, _ = next(attribute_batches(17)(start, 2, rank, world))
        first = start * 2 * world + rank * 2
        assert torch.equal(videos[1], shapes.to_tensor(shapes.make_clip(seed, first + 1, 17).video))
        assert torch.equal(labels, shapes.attribute_labels(seed, [first, first + 1]))
    z = torch.arange(10.0)[:, None]  # stand-in latents: clip i is the value i
    attrs = shapes.attribute_labels(seed, range(10))
    for zb, lb, _ in [next(cached_batches(z, 4, attrs=attrs)(s, 4, 0, 1)) for s in range(4)]:
        assert torch.equal(lb, attrs[zb[:, 0].long()])


def test_detail_weights_favour_a_small_object_on_a_smooth_background():
    """flow.detail_weights: a one-position bump on a smooth ramp gets the largest weight, flat regions
    the smallest, the mean weight per clip stays 1, and strength 0 is the plain loss."""
    from flexvid.flow import detail_weights, flow_loss

    ramp = torch.linspace(-1, 1, 8)
    x0 = (ramp[None, :] + ramp[:, None]).expand(2, 4, 3, 8, 8).clone()  # (B, C, t, h, w): smooth everywhere
    x0[0, :, :, 5, 2] += 3.0  # a small bright object in clip 0, every step
    w = detail_weights(x0, strength=1.0)
    assert w.shape == (2, 1, 3, 8, 8)
    assert torch.allclose(w.mean(dim=(2, 3, 4)), torch.ones(2, 1), atol=1e-5)
    assert w[0, 0, 0].argmax() == 5 * 8 + 2 and w[0, 0, 0, 5, 2] > 5 * w[0, 0, 0, 0, 7]
    assert torch.allclose(detail_weights(x0, strength=0.0), torch.ones(2, 1, 3, 8, 8))
    v, noise = torch.randn_like(x0), torch.randn_like(x0)
    steps = torch.ones(2, 3)
    assert torch.isclose(flow_loss(v, x0, noise, steps, torch.ones(2, 1, 3, 8, 8)), flow_loss(v, x0, noise, steps))
    err = torch.zeros_like(x0)
    err[0, :, :, 5, 2] = 1.0  # an error only on the object counts more with the weights
    assert flow_loss(noise - x0 + err, x0, noise, steps, w) > 5 * flow_loss(noise - x0 + err, x0, noise, steps)


def test_training_loss_with_detail_weight_runs_and_keeps_the_token_fingerprint():
    """--set detail_weight=1 trains (finite loss, gradients to the encoder), and being a training field
    it leaves generator token caches valid (train_generator.fingerprint)."""
    import dataclasses

    from flexvid.train_generator import fingerprint
    from flexvid.train_tokenizer import tokenizer_loss
    from flexvid.training import StepRandom

    pipe = small_pipeline()
    before = fingerprint(pipe)
    tok = pipe.tokenizer.train().requires_grad_(True)
    tok.cfg = dataclasses.replace(tok.cfg, detail_weight=1.0)
    assert fingerprint(pipe) == before
    batch = (torch.stack([clip(i) for i in range(4)]), None, None)
    loss, _ = tokenizer_loss(tok, batch, StepRandom(0, 0, 0, 1, torch.device("cpu")), pipe.vae, tok.cfg)
    loss.backward()
    assert torch.isfinite(loss) and tok.encoder.x_embedder.weight.grad.abs().sum() > 0


def test_pixel_loss_measures_the_implied_clean_clip_in_pixels():
    """--set pixel_weight: the loss is zero for the true velocity, grows with a velocity error, ignores
    clean-prefix steps, reaches the tokenizer (not the frozen VAE) through the VAE decoder, counts only the
    first pixel_clips clips, and is reported beside the flow loss."""
    import dataclasses

    from flexvid.train_tokenizer import pixel_loss, tokenizer_loss
    from flexvid.training import StepRandom

    pipe = small_pipeline()
    vae = pipe.vae
    z0 = vae.encode(torch.stack([clip(i) for i in range(3)]))
    noise = torch.randn_like(z0)
    s = torch.rand(3, z0.shape[2]) * 0.8 + 0.1
    clean = torch.zeros(3, z0.shape[2], dtype=torch.bool)
    v = noise - z0
    assert pixel_loss(vae, z0, noise, s, v, clean, 3) < 1e-8
    wrong = v + 0.3 * torch.randn_like(v)
    assert pixel_loss(vae, z0, noise, s, wrong, clean, 3) > 1e-4
    # an error only at a clean-prefix step costs nothing; only the first n clips count
    at_step0 = v.clone()
    at_step0[:, :, 0] += 1.0
    clean[:, 0] = True
    assert pixel_loss(vae, z0, noise, s, at_step0, clean, 3) < 1e-8
    in_clip2 = v.clone()
    in_clip2[2] += 1.0
    assert pixel_loss(vae, z0, noise, s, in_clip2, clean, 2) < 1e-8 < pixel_loss(vae, z0, noise, s, in_clip2, clean, 3)

    from flexvid.train_generator import fingerprint
    before = fingerprint(pipe)
    tok = pipe.tokenizer.train().requires_grad_(True)
    tok.cfg = dataclasses.replace(tok.cfg, pixel_weight=10.0, pixel_clips=2)
    assert fingerprint(pipe) == before  # a training field: token caches stay valid
    batch = (torch.stack([clip(i) for i in range(4)]), None, None)
    loss, metrics = tokenizer_loss(tok, batch, StepRandom(0, 0, 0, 1, torch.device("cpu")), vae, tok.cfg)
    loss.backward()
    assert metrics["pixel"] > 0 and loss.item() > metrics["flow"] + 10.0 * metrics["pixel"] * 0.999
    assert tok.encoder.x_embedder.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in vae.parameters())


def test_frozen_encoder_keeps_every_token(tmp_path):
    """Decoder-side fine-tuning (train-tokenizer --freeze-encoder): the tokens of every clip stay the
    same, so generators trained on them stay valid, while the decoder learns."""
    from flexvid.train_tokenizer import freeze_encoder, main, tokenizer_loss
    from flexvid.training import TrainConfig, fit

    pipe = small_pipeline()
    x = torch.stack([clip(i) for i in range(4)])
    before = pipe.tokenize(x)
    dec = [p.detach().clone() for p in pipe.tokenizer.decoder.parameters()]
    freeze_encoder(pipe.tokenizer.train().requires_grad_(True))
    assert not any(p.requires_grad for p in pipe.tokenizer.encoder.parameters())
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=3, batch_size=4, lr=1e-2, warmup=1, ckpt_every=10,
                      log_every=1, bf16=False, eval_every=0)

    def batches(start, b, rank, world):
        while True:
            yield (x, None, None)

    ema = fit(pipe.tokenizer, lambda m, batch, rand: tokenizer_loss(m, batch, rand, pipe.vae, pipe.tokenizer.cfg),
              batches, cfg)
    after = VideoFlexTok(pipe.vae, ema, device="cpu").tokenize(x)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert any(not torch.equal(a, b) for a, b in zip(dec, ema.decoder.parameters()))
    with pytest.raises(SystemExit, match="--init"):
        main(["--freeze-encoder", "--vae", str(tmp_path / "none"), "--out-dir", str(tmp_path / "x")])


def test_config_overrides_are_typed_and_checked():
    from flexvid.hub import config_dict
    from flexvid.train_tokenizer import parse_overrides
    base = config_dict(TokenizerConfig())
    out = parse_overrides(["time_mean=2.5", "n_registers=16", "register_causal=false", "levels=8,5,5"], base)
    assert out == {"time_mean": 2.5, "n_registers": 16, "register_causal": False, "levels": [8, 5, 5]}
    assert TokenizerConfig(**{**base, **out}).codebook_size == 200
    for bad in (["no_such_field=1"], ["time_mean"], ["n_registers=many"], ["register_causal=maybe"]):
        with pytest.raises(SystemExit):
            parse_overrides(bad, base)


def test_release_host_memory_is_harmless(pipe):
    from flexvid.pipeline import release_host_memory
    video = torch.rand(3, 33, 64, 64) * 2 - 1
    release_host_memory(torch.device("cpu"))
    release_host_memory(torch.device("meta"))  # not a CPU: nothing to do
    a = pipe.detokenize(pipe.tokenize(video), steps=2, seed=3)[0]
    b = pipe.detokenize(pipe.tokenize(video), steps=2, seed=3)[0]
    assert torch.equal(a, b) and a.shape == (3, 33, 64, 64)


def test_reports_name_models_without_machine_paths(tmp_path, monkeypatch):
    import os
    from flexvid.hub import display_name
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert display_name(os.path.join(root, "assets", "tokenizer")) == "assets/tokenizer"
    assert display_name("owner/some-model") == "owner/some-model"  # a repo id, not a folder here
    (tmp_path / "runs" / "tok").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert display_name(str(tmp_path / "runs" / "tok")) == "runs/tok"
    assert display_name("runs/tok") == "runs/tok"
    assert display_name(".") == os.path.basename(str(tmp_path))  # the working directory itself
    monkeypatch.chdir(tmp_path / "runs" / "tok")
    # above the working directory and outside the checkout: the folder's own name, no machine path
    assert display_name(str(tmp_path / "runs")) == "runs"
    assert display_name(".") == "tok"
    (tmp_path / "gen_a" / "export").mkdir(parents=True)  # a run's export names its run, not only "export"
    assert display_name(str(tmp_path / "gen_a" / "export")) == "gen_a/export"


def test_every_parameter_gets_a_gradient_when_a_head_is_unused():
    """DistributedDataParallel stops on a parameter that takes no gradient. A model with an attribute and a
    REPA head, trained without either (attr_weight 0, no --repa): the loss gives every parameter a gradient,
    zero for the unused heads, and keeps them all in the optimizer (so older checkpoints still resume)."""
    from flexvid.train_tokenizer import tokenizer_loss
    from flexvid.training import StepRandom

    pipe = small_pipeline()
    cfg = TokenizerConfig(**{**SMALL_TOK, "attr_weight": 0.0, "attr_classes": (6, 3, 2, 5),
                             "attr_temporal": (False, False, False, True), "repa_dim": 8})
    tok = FlexTokenizer(cfg)
    x = torch.stack([clip(i) for i in range(4)])
    loss, _ = tokenizer_loss(tok, (x, None, None), StepRandom(0, 0, 0, 1, torch.device("cpu")), pipe.vae, cfg)
    loss.backward()
    without = [n for n, p in tok.named_parameters() if p.grad is None]
    assert not without, without
    assert all(float(p.grad.abs().sum()) == 0 for p in tok.attr_head.parameters())
    assert tok.encoder.x_embedder.weight.grad.abs().sum() > 0
