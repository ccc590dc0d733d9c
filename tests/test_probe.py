import numpy as np
import pytest
import torch

from flexvid import probe
from flexvid.shapes import COLORS, SPLIT_SEEDS, ShapeObject, draw_object, fixed_split, make_clip, to_tensor

N_CLIPS = 150


@pytest.fixture(scope="module")
def val_clips():
    return fixed_split("val", N_CLIPS)


def _hand_clip(shape="square", color="red", r=9, motion=(1.5, 0.0), start=(16.0, 30.0), T=17):
    bg = np.empty((64, 64, 3), np.uint8)
    bg[...] = (20, 30, 25)
    video = np.empty((T, 64, 64, 3), np.uint8)
    for f in range(T):
        img = bg.copy()
        draw_object(img, shape, COLORS[color], start[0] + motion[0] * f, start[1] + motion[1] * f, r)
        video[f] = img
    return video


def test_hand_made_clip_exact():
    dets = probe.detect(_hand_clip())
    assert len(dets) == 1
    d = dets[0]
    assert (d.color, d.shape, d.size, d.motion) == ("red", "square", "large", "right")
    assert d.area == pytest.approx(19 * 19)
    assert d.track.shape == (17, 2)
    assert np.allclose(d.track[0], (16, 30)) and np.allclose(d.track[-1], (40, 30))


@pytest.mark.parametrize("shape,color,r,motion,want", [
    ("circle", "cyan", 5, (0.0, -1.5), ("cyan", "circle", "small", "up")),
    ("triangle", "blue", 9, (0.0, 1.5), ("blue", "triangle", "large", "down")),
    ("triangle", "yellow", 5, (-1.5, 0.0), ("yellow", "triangle", "small", "left")),
    ("square", "magenta", 5, (0.0, 0.0), ("magenta", "square", "small", "still")),
])
def test_hand_made_variants(shape, color, r, motion, want):
    start = (32.0 - 12 * np.sign(motion[0]), 32.0 - 12 * np.sign(motion[1]))
    d = probe.detect(_hand_clip(shape, color, r, motion, start))[0]
    assert (d.color, d.shape, d.size, d.motion) == want


def test_accuracy_clean(val_clips):
    res = probe.score_videos([c.video for c in val_clips], val_clips)
    assert res["n"] == N_CLIPS
    for k in ("color", "shape", "size", "motion", "all"):
        assert res[k] >= 0.98, res


def test_accuracy_blurred_noisy(val_clips):
    rng = np.random.default_rng(0)
    videos = [probe.add_noise(probe.blur(c.video, 1.0), 10.0, rng) for c in val_clips]
    res = probe.score_videos(videos, val_clips)
    for k in ("color", "shape", "size", "motion", "all"):
        assert res[k] >= 0.98, res


def test_accuracy_blur_noise_jpeg(val_clips):
    rng = np.random.default_rng(1)
    clips = val_clips[:60]
    res = probe.score_videos([probe.DEGRADATIONS["blur+noise+jpeg"](c.video, rng) for c in clips], clips)
    assert res["all"] >= 0.98, res


def test_noise_and_blank_rejected(val_clips):
    rng = np.random.default_rng(2)
    clips = val_clips[:20]
    for make in (lambda: probe.noise_video(17, rng), lambda: probe.blank_video(17),
                 lambda: probe.smooth_noise_video(17, rng)):
        res = probe.score_videos([make() for _ in clips], clips)
        assert res["all"] <= 0.1, res
    assert probe.detect(probe.noise_video(17, rng)) == []
    assert probe.detect(probe.blank_video(17)) == []
    assert probe.detect(np.zeros((17, 64, 64, 3), np.uint8)) == []


def test_mismatched_clips_rejected(val_clips):
    # the video of one clip scored against another clip's objects: near chance, never mostly correct
    clips = val_clips[:40]
    others = [make_clip(SPLIT_SEEDS["val"], 1000 + i) for i in range(len(clips))]
    res = probe.score_videos([c.video for c in others], clips)
    assert res["all"] <= 0.1, res


def test_two_objects_sorted_by_area_and_main_matched():
    video = _hand_clip("square", "red", 9, (1.5, 0.0), (16.0, 16.0))
    small = _hand_clip("circle", "green", 5, (0.0, 1.5), (48.0, 20.0))
    mask = np.any(small != small[0, 0, 0], axis=-1)
    video[mask] = small[mask]
    dets = probe.detect(video, n_objects=2)
    assert [d.color for d in dets] == ["red", "green"]
    assert dets[0].area > dets[1].area
    green = ShapeObject("green", "circle", "small", "down", (48.0, 20.0))
    red = ShapeObject("red", "square", "large", "right", (16.0, 16.0))
    assert probe.score_clip(video, [green, red])["all"]
    assert probe.score_clip(video, [red, green])["all"]
    # with one object only the largest detection counts: green is not found
    r = probe.score_clip(video, [green])
    assert not r["color"] and not r["all"]
    assert probe.matches(dets[1], green)["all"] and not probe.matches(dets[0], green)["all"]


def test_tensor_input_and_long_clip():
    clip = make_clip(SPLIT_SEEDS["val"], 3, 33)
    r_np = probe.score_clip(clip.video, clip)
    r_t = probe.score_clip(to_tensor(clip.video), clip)  # (3, T, H, W) in [-1, 1]
    assert r_np == r_t and r_np["all"]
    assert probe.as_video(to_tensor(clip.video)).dtype == np.uint8
    assert np.array_equal(probe.as_video(torch.from_numpy(clip.video)), clip.video)


def test_validate_small():
    res = probe.validate(n=4, degradations=["clean"])
    assert res["clean"]["all"] == 1.0 and res["clean"]["n"] == 4
    for c in probe.CONTROLS:
        assert res[c]["all"] == 0.0
