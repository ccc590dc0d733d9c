"""The shapes-world REPA teacher: its labels, its features on the decoder's grid, its training."""
import numpy as np
import pytest
import torch

from conftest import SMALL_TOK, small_pipeline
from flexvid import shapes
from flexvid.teacher import (HEADS, ShapesFeatures, ShapesTeacher, TeacherConfig, batch_stream, cell_labels,
                             load_teacher, render_labels, save_teacher, teacher_loss)
from flexvid.tokenizer import FlexTokenizer, TokenizerConfig


def test_labels_cover_exactly_the_drawn_pixels():
    """Every pixel of an object's colour is labelled with that colour, shape and size, nothing else is."""
    for i in range(40):
        c = shapes.make_clip(2, i, 17)
        lab = render_labels(c.objects, 17)
        assert lab.shape == (4, 17, 64, 64)
        for o in c.objects:
            drawn = (c.video == np.array(shapes.COLORS[o.color])).all(-1)
            mine = lab[0] == shapes.COLOR_NAMES.index(o.color) + 1
            assert np.array_equal(drawn, mine)
            assert (lab[1][mine] == shapes.SHAPES.index(o.shape) + 1).all()
            assert (lab[2][mine] == shapes.SIZE_NAMES.index(o.size) + 1).all()
        assert ((lab[0] == 0) == (lab[3] == 0)).all()


def test_motion_label_follows_the_object_and_its_bounce():
    still = shapes.ShapeObject("red", "circle", "large", "still", (30.0, 30.0))
    assert set(np.unique(render_labels([still], 9)[3])) == {0, shapes.MOTIONS.index("still") + 1}
    # starts 3 px from the left wall moving left: left for the first frames, right after the bounce
    left = shapes.ShapeObject("red", "square", "small", "left", (8.0, 30.0))
    lab = render_labels([left], 9)[3]
    first, last = np.unique(lab[0]), np.unique(lab[8])
    assert shapes.MOTIONS.index("left") + 1 in first and shapes.MOTIONS.index("right") + 1 in last


def test_features_lie_on_the_decoder_grid_per_latent_step():
    teacher = ShapesTeacher(TeacherConfig(dims=(8, 8, 12)))
    feats = ShapesFeatures(teacher, grid=4, temporal=4)
    for T, t in ((17, 5), (81, 21), (1, 1)):
        x = torch.stack([shapes.to_tensor(shapes.make_clip(2, 0, T).video)] * 2)
        assert feats(x).shape == (2, t, 16, 12)
    # step 0 is frame 0 alone: with its window, frames 0-2; nothing from frame 5 on reaches it
    x = shapes.to_tensor(shapes.make_clip(2, 1, 17).video)[None]
    y = x.clone()
    y[:, :, 5:] = -1
    a, b = feats(x), feats(y)
    assert torch.equal(a[:, 0], b[:, 0]) and not torch.equal(a[:, 2], b[:, 2])


def test_teacher_learns_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = ShapesTeacher(TeacherConfig(dims=(16, 16, 24)))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    stream = batch_stream("train", 4, 5)
    batch = next(stream)
    assert batch[1].shape == (4, 4, 5, 16, 16) and batch[1].dtype == torch.int64
    assert int(batch[1][:, 0].max()) <= len(shapes.COLOR_NAMES)
    first = None
    for _ in range(30):  # fit one batch: the loss must fall
        loss, metrics = teacher_loss(model, batch, None)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first and set(metrics) == set(HEADS)
    save_teacher(model, str(tmp_path))
    back = load_teacher(str(tmp_path))
    x = batch[0][:1]
    assert torch.equal(back.features(x), model.eval().features(x))


def test_cell_labels_sample_cell_centres():
    lab = np.zeros((64, 64), np.uint8)
    lab[2, 6] = 3  # the centre of cell (0, 1)
    assert cell_labels(lab)[0, 1] == 3 and cell_labels(lab).sum() == 3


def test_tokenizer_training_step_with_the_teacher(tmp_path):
    """train-tokenizer --repa FOLDER: the teacher's features are the REPA target and the head trains."""
    from flexvid.train_tokenizer import feature_model_for, tokenizer_loss
    from flexvid.training import StepRandom

    save_teacher(ShapesTeacher(TeacherConfig(dims=(8, 8, 12))), str(tmp_path))
    pipe = small_pipeline()
    feats = feature_model_for(str(tmp_path), pipe.vae, dict(SMALL_TOK))
    assert feats.dim == 12 and feats.grid == SMALL_TOK["latent_size"] // SMALL_TOK["patch"]
    with pytest.raises(SystemExit, match="nor a teacher folder"):
        feature_model_for(str(tmp_path / "missing"), pipe.vae, dict(SMALL_TOK))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"format": "flexvid-tokenizer"}')
    with pytest.raises(ValueError, match="not a shapes teacher"):
        load_teacher(str(tmp_path / "other"))
    tok = FlexTokenizer(TokenizerConfig(**{**SMALL_TOK, "repa_dim": feats.dim, "repa_layer": 1}))
    batch = (torch.stack([shapes.to_tensor(shapes.make_clip(2, i, 17).video) for i in range(2)]), None, None)
    loss, metrics = tokenizer_loss(tok, batch, StepRandom(0, 0, 0, 1, torch.device("cpu")), pipe.vae, tok.cfg,
                                   feats, repa_weight=1.0)
    loss.backward()
    assert torch.isfinite(loss) and 0 <= metrics["repa"] <= 2
    assert tok.repa_head[-1].weight.grad.abs().sum() > 0


def test_cached_features_serve_repa_on_cached_latents(tmp_path):
    """--latent-cache with --repa: the teacher's targets are computed once per clip, kept beside the
    latents, reused while the teacher is the same, and give the loss the videos would give."""
    from flexvid.train_tokenizer import cached_batches, feature_cache, tokenizer_loss
    from flexvid.training import StepRandom

    pipe = small_pipeline()
    torch.manual_seed(1)
    feats = ShapesFeatures(ShapesTeacher(TeacherConfig(dims=(8, 8, 12))), grid=4)
    path = str(tmp_path / "repa.safetensors")
    f = feature_cache(feats, "teacher:a", path, 3, 17)
    assert f.shape == (3, 5, 16, 12)
    x = torch.stack([shapes.to_tensor(shapes.make_clip(0, i, 17).video) for i in range(3)])
    assert torch.allclose(f, feats(x), atol=2e-2 * feats(x).abs().max().item())  # stored in fp16
    torch.manual_seed(2)
    other = ShapesFeatures(ShapesTeacher(TeacherConfig(dims=(8, 8, 12))), grid=4)
    assert torch.equal(feature_cache(other, "teacher:a", path, 2, 17), f[:2])  # same name, fewer clips: reused
    assert not torch.allclose(feature_cache(other, "teacher:b", path, 2, 17), f[:2])  # another model: anew

    z = pipe.vae.encode(x).float()
    batch = next(cached_batches(z, 3, f)(0, 3, 0, 1))
    assert len(batch) == 4
    for i in range(3):  # each clip's latents travel with its own targets
        j = int((z == batch[0][i]).flatten(1).all(1).nonzero()[0, 0])
        assert torch.equal(batch[3][i], f[j])
    tok = FlexTokenizer(TokenizerConfig(**{**SMALL_TOK, "repa_dim": 12, "repa_layer": 1}))
    rand = lambda: StepRandom(0, 0, 0, 1, torch.device("cpu"))
    cached = (z, None, None, f)
    _, m1 = tokenizer_loss(tok, cached, rand(), pipe.vae, tok.cfg, feats, repa_weight=1.0)
    _, m2 = tokenizer_loss(tok, (x, None, None), rand(), pipe.vae, tok.cfg, feats, repa_weight=1.0)
    assert abs(m1["repa"] - m2["repa"]) < 1e-2 and abs(m1["flow"] - m2["flow"]) < 1e-3
    with pytest.raises(ValueError, match="cached features"):
        tokenizer_loss(tok, (z, None, None), rand(), pipe.vae, tok.cfg, feats, repa_weight=1.0)


def test_train_teacher_command_ends_with_its_export(tmp_path, capsys):
    """flexvid train-teacher ends as the other training commands do: its accuracy said, then where the export is."""
    from flexvid import cli
    assert cli.main(["train-teacher", "--out-dir", str(tmp_path / "t"), "--steps", "2", "--batch-size", "2",
                     "--threads", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("accuracy on 64 validation clips: {'color_acc': ")
    assert out[-1] == f"done: export in {tmp_path / 't' / 'export'}; checkpoint and log.jsonl in {tmp_path / 't'}"
    assert load_teacher(str(tmp_path / "t" / "export")).cfg == ShapesTeacher().cfg
