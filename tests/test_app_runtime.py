"""Tests for flexvid.runtime (the app's runtime) and the Space card: caching, input checks, bit
arithmetic, downloads, generation, settings. A small random tokenizer and small random generators stand in
for the embedded ones."""
from __future__ import annotations

import math
import re
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
import yaml

from conftest import small_pipeline
from flexvid import shapes, video_io
from flexvid.runtime import (Limits, ModelMissing, Runtime, Sampler, Settings, UserError, bits_and_bitrate,
                             error_heatmap, load_settings, psnr, resolve_model, token_image)
from test_app_client import small_generators

REPO = Path(__file__).resolve().parent.parent


class Counting:
    """Wraps a pipeline's detokenize: counts calls and the ks decoded, and the most calls at once."""

    def __init__(self, pipe):
        self.pipe, self.inner = pipe, pipe.detokenize
        self.calls, self.ks, self.active, self.max_active = 0, [], 0, 0
        self.lock = threading.Lock()
        pipe.detokenize = self

    def __call__(self, tokens, k=None, **kw):
        with self.lock:
            self.calls += 1
            self.ks.append(list(k) if isinstance(k, (list, tuple)) else k)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(0.05)  # widen the window in which concurrent calls would overlap
            return self.inner(tokens, k=k, **kw)
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture(scope="module")
def pipe():
    return small_pipeline(n_registers=8)  # K = 8: ladder 1, 2, 4, 8


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "shapes.mp4"
    return video_io.write_video(path, shapes.make_clip(2, 0, 17).video, fps=8)


@pytest.fixture(scope="module")
def shared(pipe, tmp_path_factory):
    """One runtime for the many bad-input cases (its clip is tokenized and decoded once)."""
    counter = Counting(pipe)
    runtime = Runtime(Settings(), pipeline=pipe, out_dir=str(tmp_path_factory.mktemp("out")))
    runtime.counter = counter
    yield runtime
    pipe.detokenize = counter.inner


@pytest.fixture()
def rt(pipe, tmp_path):
    counter = Counting(pipe)
    runtime = Runtime(Settings(), pipeline=pipe, out_dir=str(tmp_path / "out"))
    runtime.counter = counter
    yield runtime
    pipe.detokenize = counter.inner


# ----------------------------------------------------------------------------- caching
def test_tokenize_once_and_slider_moves_hit_the_cache(rt, clip_file, tmp_path):
    clip = rt.add_clip(clip_file)
    again = rt.add_clip(clip_file)
    copy = tmp_path / "same_content.mp4"
    copy.write_bytes(Path(clip_file).read_bytes())
    named = rt.add_clip(str(copy))  # the same file under another name (another page's upload, say)
    assert clip.id == again.id != named.id and named.name == "same_content.mp4" != clip.name
    assert named.content == clip.content and named.tokens is clip.tokens  # read and tokenized once
    assert rt.stats["tokenize"] == 1
    assert clip.tokens.shape == (5, rt.tok.n_tokens) and clip.frames.shape == (17, 64, 64, 3)

    ladder = rt.tok.ladder()
    rt.view(clip.id, k=2, steps=2, seed=0)
    assert rt.counter.calls == 1 and rt.counter.ks == [ladder]  # the whole ladder in ONE batched call
    rt.view(clip.id, k=4, steps=2, seed=0)  # in the ladder: no model work
    assert rt.counter.calls == 1
    rt.view(clip.id, k=3, steps=2, seed=0)  # not in the ladder: one decode of k = 3 only
    assert rt.counter.calls == 2 and rt.counter.ks[-1] == [3]
    for k in (3, 2, 8, 1):  # moving back and forth: all cached
        rt.view(clip.id, k=k, steps=2, seed=0)
    assert rt.counter.calls == 2
    rt.view(clip.id, k=3, steps=2, seed=1)  # another seed: the ladder and k again, in one call
    assert rt.counter.calls == 3 and rt.counter.ks[-1] == sorted(set(ladder) | {3})
    assert rt.stats["detokenize"] == 3
    # the other name's page: the same decodes, its own name on the page and on every download
    mine, theirs = rt.view(named.id, k=3, steps=2, seed=1), rt.view(clip.id, k=3, steps=2, seed=1)
    assert rt.counter.calls == 3
    assert "same_content" in mine.summary and Path(clip.name).stem not in mine.summary
    assert all("same_content" in Path(f).name for f in mine.downloads if f.endswith(".mp4"))
    assert not any("same_content" in str(f) for f in theirs.downloads)


def test_decode_cache_is_bounded(pipe, clip_file, tmp_path):
    Counting(pipe)
    try:
        rt = Runtime(Settings(cache_decodes=4), pipeline=pipe, out_dir=str(tmp_path))
        clip = rt.add_clip(clip_file)
        rt.decode(clip, [1, 2, 4, 8], rt.sampler(steps=1, seed=0))
        rt.decode(clip, [1, 2], rt.sampler(steps=1, seed=1))
        assert len(rt._decodes) == 4
        rt.decode(clip, [1, 2], rt.sampler(steps=1, seed=1))  # the newest are kept
        assert pipe.detokenize.calls == 2
        rt.decode(clip, [1], rt.sampler(steps=1, seed=0))  # the oldest were dropped
        assert pipe.detokenize.calls == 3
    finally:
        pipe.detokenize = pipe.detokenize.inner


def test_rendered_files_on_disk_are_bounded(rt, clip_file, monkeypatch):
    import flexvid.runtime as runtime_module
    monkeypatch.setattr(runtime_module, "RENDERED_VIEWS", 3)
    clip = rt.add_clip(clip_file)
    folder = rt.out_dir / clip.id
    first = rt.view(clip.id, k=2, steps=1, seed=0)
    for seed in range(1, 6):  # new seeds: new files each time
        rt.view(clip.id, k=2, steps=1, seed=seed)
    per_view = len([f for f in rt._views[next(iter(rt._views))] if f.endswith((".mp4", ".csv"))])
    rendered = sorted(p.name for p in folder.iterdir() if p.suffix in (".mp4", ".csv"))
    assert len(rt._views) == 3 and len(rendered) == 3 * per_view  # only the three newest views' files
    assert [p.name for p in folder.glob("*.png")] == [Path(first.token_file).name]  # one token grid per k
    assert not Path(first.compare).exists()
    # files shared with a kept view stay: another k of the newest seed shares its ladder and downloads
    last = rt.view(clip.id, k=4, steps=1, seed=5)
    rt.view(clip.id, k=1, steps=1, seed=6)
    rt.view(clip.id, k=1, steps=1, seed=7)
    assert Path(last.ladder).exists() and all(Path(f).exists() for f in last.downloads)
    again = rt.view(clip.id, k=2, steps=1, seed=0)  # an evicted view comes back: written again
    assert Path(again.compare).exists()


def test_model_work_is_bounded_by_the_semaphore(rt, tmp_path):
    clips = [rt.add_clip(video_io.write_video(tmp_path / f"c{i}.mp4", shapes.make_clip(2, 10 + i, 9).video, fps=8))
             for i in range(3)]
    errors = []

    def work(clip_id):
        try:
            rt.view(clip_id, k=2, steps=1, seed=0)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c.id,)) for c in clips]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert rt.counter.calls == 3 and rt.counter.max_active == 1  # model_concurrency = 1


# ----------------------------------------------------------------------------- outputs
def test_view_outputs(rt, clip_file):
    clip = rt.add_clip(clip_file)
    v = rt.view(clip.id, k=3, steps=2, guidance=1.0, mode="cfg", seed=7)
    assert sorted(v.metrics) == sorted(set(rt.tok.ladder()) | {3})
    for m in v.metrics.values():
        assert 0 < m.psnr <= 100 and -1 <= m.ssim <= 1
    frames, fps = video_io.read_video(v.compare)
    assert frames.shape[0] == 17 and fps == 8 and frames.shape[1] == 256  # 64 px shown at 256 px
    assert abs(frames.shape[2] - 2 * 256) <= 4  # original | reconstruction
    heat, _ = video_io.read_video(v.heatmap)
    assert heat.shape == (17, 256, 256, 3)
    ladder, _ = video_io.read_video(v.ladder)
    assert ladder.shape[0] == 17
    names = [Path(p).name for p in v.downloads]
    assert sum(n.endswith(".mp4") for n in names) == len(v.metrics) and names[-1].endswith(".npz")
    stem = Path(clip.name).stem  # every download names its clip: two clips' tables do not collide in Downloads
    assert all(f"_{stem}_" in n for n in names), names
    # the metrics of every k decoded with these settings, as a table: a k decoded before stays in it
    rows = Path(v.downloads[-2]).read_text().splitlines()
    assert rows[0] == "k,tokens,bits,psnr_db,ssim" and [int(r.split(",")[0]) for r in rows[1:]] == sorted(v.metrics)
    for r in rows[1:]:
        j, tokens, bits, p, s = r.split(",")
        assert int(tokens) == int(j) * clip.tokens.shape[0] and abs(float(p) - v.metrics[int(j)].psnr) < 1e-3
        assert abs(float(s) - v.metrics[int(j)].ssim) < 1e-4
    v5 = rt.view(clip.id, k=5, steps=2, guidance=1.0, mode="cfg", seed=7)
    assert 3 in {int(r.split(",")[0]) for r in Path(v5.downloads[-2]).read_text().splitlines()[1:]}
    assert {3, 5} <= set(v5.figure.data[0].x)
    t, K = clip.tokens.shape
    assert v.token_image.ndim == 3 and v.token_image.shape[2] == 3
    assert v.token_image.shape[0] % t == 0 and v.token_image.shape[1] % K == 0
    import cv2  # the page shows (and saves) the grid as a png named for the clip and k, not "image.png"
    assert Path(v5.token_file).name == f"tokens_k{5:0{len(str(K))}d}_{stem}.png"
    assert np.array_equal(cv2.imread(v5.token_file)[..., ::-1], v5.token_image)
    assert len(v.figure.data) >= 2  # PSNR, SSIM and the current-k marker
    assert "seed 7" in v.summary and "PSNR" in v.summary


def test_bits_and_bitrate_arithmetic(rt, clip_file):
    bits, rate = bits_and_bitrate(4, 9, 1000, 33 / 8)
    assert bits == pytest.approx(4 * 9 * math.log2(1000)) and rate == pytest.approx(bits / 4.125)
    bits, rate = bits_and_bitrate(256, 5, 64000, 17 / 8)  # the release's FSQ: 64,000 codes
    assert bits == pytest.approx(256 * 5 * 15.9658, rel=1e-4) and rate == pytest.approx(bits * 8 / 17)
    clip = rt.add_clip(clip_file)
    t, K = clip.tokens.shape
    caption = rt.token_caption(clip, 2)
    expected = 2 * t * math.log2(rt.tok.codebook_size)
    assert f"{2 * t}** tokens" in caption and f"{expected:,.0f} bits" in caption
    assert f"{expected / (17 / 8):,.0f} bit/s" in caption


def test_tokens_npz(rt, clip_file):
    clip = rt.add_clip(clip_file)
    with np.load(rt.tokens_npz(clip)) as z:
        assert np.array_equal(z["tokens"], clip.tokens.numpy())
        assert tuple(z["shape"]) == tuple(clip.tokens.shape)
        assert int(z["codebook_size"]) == rt.tok.codebook_size and int(z["n_tokens"]) == rt.tok.n_tokens
        assert float(z["fps"]) == 8.0 and int(z["frames"]) == 17
        assert z["tokens"].min() >= 0 and z["tokens"].max() < rt.tok.codebook_size


def test_token_image_and_heatmap():
    tokens = torch.tensor([[0, 999, 5, 7], [1, 2, 3, 4]])
    img = token_image(tokens, k=2, codebook_size=1000, cell=10)
    assert img.shape == (20, 40, 3) and img.dtype == np.uint8
    kept, dropped = img[:, :20].astype(int), img[:, 21:].astype(int)
    assert dropped.mean() > kept.mean()  # tokens past k are washed out
    a = shapes.make_clip(2, 1, 5).video
    same = error_heatmap(a, a)
    assert same.shape == a.shape and len(np.unique(same.reshape(-1, 3), axis=0)) == 1
    worse = error_heatmap(a, 255 - a)
    assert worse.astype(int).sum() > same.astype(int).sum()


# ----------------------------------------------------------------------------- reading
def test_resolution_and_fps_are_handled_like_video_io(rt, tmp_path):
    """The streaming reader (downscale per frame) gives what read_video + prepare_video give."""
    rng = np.random.default_rng(0)
    big = np.repeat(np.repeat(shapes.make_clip(2, 3, 45).video, 3, axis=1), 4, axis=2)  # 192 x 256
    big = np.clip(big.astype(int) + rng.integers(-3, 4, big.shape), 0, 255).astype(np.uint8)
    path = video_io.write_video(tmp_path / "big.mp4", big, fps=30)
    clip = rt.add_clip(path)
    frames, fps = video_io.read_video(path)
    expected = video_io.prepare_video(frames, fps, target_fps=8, size=64, max_frames=161)
    assert clip.frames.shape == expected.shape and np.array_equal(clip.frames, expected)
    assert "256x192 at 30 fps" in clip.source and any("resized" in n for n in clip.notes)
    # a rate under the model's: each source frame shown for its whole time, the last one too (5 frames at 1
    # fps are 5 s, 40 frames at 8 fps, 41 as a valid length; the reader once stopped half a frame early, 37)
    for fps, n in ((1, 5), (3, 9), (0.5, 5)):
        path = video_io.write_video(tmp_path / f"slow_{fps}.mp4", shapes.make_clip(3, 2, n).video, fps=fps)
        frames, src = video_io.read_video(path)
        expected = video_io.prepare_video(frames, src, target_fps=8, size=64, max_frames=161)
        clip = rt.add_clip(path)
        assert clip.frames.shape == expected.shape and np.array_equal(clip.frames, expected), (fps, len(clip.frames))


def test_long_clips_are_trimmed(pipe, tmp_path):
    rt = Runtime(Settings(limits=Limits(max_seconds=1.0)), pipeline=pipe, out_dir=str(tmp_path / "out"))
    path = video_io.write_video(tmp_path / "long.mp4", shapes.make_clip(2, 4, 33).video, fps=8)
    clip = rt.add_clip(path)
    assert len(clip.frames) == 9 and any("trimmed" in n for n in clip.notes)
    rt = Runtime(Settings(limits=Limits(max_frames=13)), pipeline=pipe, out_dir=str(tmp_path / "out2"))
    assert len(rt.add_clip(path).frames) == 13
    # the note gives the length kept: 13 frames at 8 fps of a 1 fps clip are 1.62 s, though 3 s were read
    slow = video_io.write_video(tmp_path / "slow.mp4", shapes.make_clip(2, 4, 5).video, fps=1)
    clip = rt.add_clip(slow)
    assert len(clip.frames) == 13 and "trimmed to the first 1.62 s" in "; ".join(clip.notes), clip.notes
    rt = Runtime(Settings(limits=Limits(max_frames=15)), pipeline=pipe, out_dir=str(tmp_path / "out3"))
    clip = rt.add_clip(slow)  # 15 frames cut to a valid 13: the note gives the 13
    assert len(clip.frames) == 13 and "trimmed to the first 1.62 s" in "; ".join(clip.notes), clip.notes


def _held(path, times, durations, size=(64, 48)):
    """An H.264 mp4 of grey frames shown at these times (s) for these durations (s), 1 ms time base."""
    from fractions import Fraction
    tb = Fraction(1, 1000)
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=25, options={"bf": "0"})
        st.width, st.height, st.pix_fmt = *size, "yuv420p"
        st.time_base = st.codec_context.time_base = tb
        packets = []
        for i, t in enumerate(times):
            f = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 60 * i % 256, np.uint8), format="rgb24")
            f.pts, f.time_base = round(t * 1000), tb
            packets += st.encode(f)
        packets += st.encode()
        for p, d in zip(packets, durations):
            p.duration = round(d * 1000)
            c.mux(p)
    return str(path)


def test_one_frame_held_for_seconds_is_no_still_image_and_a_hold_past_the_limit_is_trimmed(pipe, tmp_path):
    """One frame shown 5 s is a 5 s clip without the 'single frame' note; two frames of 15 s each are cut to the
    app's 20 s and say so (the last frame's hold crossed the limit with no note)."""
    rt = Runtime(Settings(), pipeline=pipe, out_dir=str(tmp_path / "out"))
    clip = rt.add_clip(_held(tmp_path / "one.mp4", [0.0], [5.0]))
    assert len(clip.frames) == 41 and not any("single frame" in n for n in clip.notes), clip.notes
    clip = rt.add_clip(_held(tmp_path / "two.mp4", [0.0, 15.0], [15.0, 15.0]))
    assert len(clip.frames) == 161 and "trimmed to the first 20.12 s" in "; ".join(clip.notes), clip.notes


# ----------------------------------------------------------------------------- bad input
def _empty_mp4(path):
    with av.open(str(path), mode="w", format="mp4") as c:
        s = c.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
    return str(path)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.txt").write_text("this is not a video\n" * 50)
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    (d / "empty.mp4").write_bytes(b"")
    (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    _empty_mp4(d / "zero_frames.mp4")
    return d


@pytest.mark.parametrize("name, message", [
    ("notes.txt", "not a video"), ("corrupt.mp4", "corrupt"), ("empty.mp4", "empty"),
    ("image.png", "could not read video"), ("zero_frames.mp4", "could not read video"),
    ("missing.mp4", "not found"),
])
def test_bad_files_raise_user_error(shared, bad_files, clip_file, name, message):
    with pytest.raises(UserError, match=message) as e:
        shared.add_clip(str(bad_files / name))
    assert str(bad_files) not in str(e.value)  # the server's paths stay out of the message
    assert shared.view(shared.add_clip(clip_file).id, k=1, steps=1).k == 1  # and the runtime keeps working


def test_too_large_upload(pipe, clip_file, tmp_path):
    rt = Runtime(Settings(limits=Limits(max_upload_mb=0.001)), pipeline=pipe, out_dir=str(tmp_path))
    with pytest.raises(UserError, match="too large"):
        rt.add_clip(clip_file)


@pytest.mark.parametrize("kw, message", [
    (dict(k=0), "k"), (dict(k=10**4), "k"), (dict(k=2.5), "k"), (dict(k=float("nan")), "k"), (dict(k="3"), "k"),
    (dict(k=True), "k"), (dict(steps=0), "steps"), (dict(steps=10**6), "steps"), (dict(steps=1.5), "steps"),
    (dict(guidance=-1), "guidance"), (dict(guidance=float("inf")), "guidance"), (dict(guidance=1e9), "guidance"),
    (dict(seed=-1), "seed"), (dict(seed=2**40), "seed"), (dict(seed=0.5), "seed"), (dict(mode="magic"), "mode"),
])
def test_absurd_settings_raise_user_error(shared, clip_file, kw, message):
    clip = shared.add_clip(clip_file)
    args = dict(k=2, steps=1, guidance=1.0, mode="cfg", seed=0) | kw
    calls = shared.counter.calls
    with pytest.raises(UserError, match=message):
        shared.view(clip.id, **args)
    assert shared.counter.calls == calls  # refused before any model work
    assert shared.view(clip.id, k=2, steps=1).k == 2


@pytest.mark.parametrize("clip_id", ["", None, "0123456789abcdef", 42])
def test_unknown_clip(shared, clip_id):
    with pytest.raises(UserError, match="clip"):
        shared.view(clip_id, k=1)


def test_an_unknown_clip_id_is_quoted_short(shared):
    """An id of a million characters is no million-character message (nor a megabyte of the Space's log)."""
    with pytest.raises(UserError) as e:
        shared.view("x" * 10**6, k=1)
    assert len(str(e.value)) < 200 and "'" + "x" * 40 + "' (1,000,000 characters)" in str(e.value)


def test_integral_floats_from_sliders_are_accepted(rt, clip_file):
    clip = rt.add_clip(clip_file)
    v = rt.view(clip.id, k=4.0, steps=2.0, guidance=1, seed=3.0)
    assert v.k == 4 and v.sampler.steps == 2 and v.sampler.seed == 3


# ----------------------------------------------------------------------------- model, generators, settings
def test_missing_model_gives_a_clear_error(tmp_path, capsys):
    with pytest.raises(ModelMissing, match="not found"):
        resolve_model("assets/no_such_tokenizer", str(REPO))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelMissing, match="config.json") as e:
        resolve_model(str(tmp_path / "empty"), str(tmp_path))
    assert "training run" not in str(e.value)
    (tmp_path / "run" / "export").mkdir(parents=True)  # a training run's folder: its model is in export/
    (tmp_path / "run" / "export" / "config.json").write_text("{}")
    with pytest.raises(ModelMissing, match=r"a training run's folder: its model is in run/export"):
        resolve_model("run", str(tmp_path))
    assert resolve_model("someone/some-model", str(tmp_path)) == "someone/some-model"  # a Hub repo id
    # an owner named as this checkout's package is still one (assets/ and runs/ are folders, flexvid/ code)
    assert resolve_model("flexvid/videoflextok-128", str(REPO)) == "flexvid/videoflextok-128"
    rt = Runtime(Settings(tokenizer=str(tmp_path / "nope")), out_dir=str(tmp_path / "out"))
    with pytest.raises(ModelMissing, match="FLEXVID_TOKENIZER"):
        rt.load()
    from flexvid.app_ui import main
    assert main(["--tokenizer", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "tokenizer folder not found" in err and "Give --tokenizer a folder holding" in err and "or a Hugging Face repo id" in err
    assert "space.yaml" not in err  # the folder came from the command line


def test_loads_from_a_folder(pipe, tmp_path, monkeypatch):
    pipe.save_pretrained(str(tmp_path / "tok"))
    monkeypatch.setenv("FLEXVID_TOKENIZER", str(tmp_path / "tok"))
    rt = Runtime(load_settings(REPO / "space.yaml"), out_dir=str(tmp_path / "out"))
    assert rt.info()["n_tokens"] == pipe.n_tokens and rt.info()["device"] in ("cpu", "cuda")
    assert rt.tok is rt.load()  # loaded once


def test_generators_load_lazily(rt):
    built = []
    rt.register_generator("text", lambda: built.append(1) or "model")
    assert built == [] and rt.info()["generators"] == ["text"]
    assert rt.generator_status() == {"text": "not loaded yet"}
    assert rt.generator("text") == "model" and rt.generator("text") == "model"
    assert built == [1] and rt.generator_status() == {"text": "ready"}
    with pytest.raises(UserError, match="Class-to-video is not configured"):
        rt.generator("class")


def test_settings(tmp_path, monkeypatch):
    for name in ("FLEXVID_TOKENIZER", "FLEXVID_TEXT_GENERATOR", "FLEXVID_CLASS_GENERATOR"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings(REPO / "space.yaml")
    bundled = {n: f"assets/generator-{n}" for n in ("text", "class")
               if (REPO / "assets" / f"generator-{n}" / "config.json").is_file()}
    assert s.tokenizer == "assets/tokenizer" and s.generators == bundled and s.limits.max_upload_mb > 0
    assert s.limits.max_prompt_chars == 300 and s.cache_generations >= 1
    monkeypatch.setenv("FLEXVID_TOKENIZER", "/models/tok")
    assert load_settings(REPO / "space.yaml").tokenizer == "/models/tok"
    assert load_settings(REPO / "space.yaml", tokenizer="a/b").tokenizer == "a/b"
    bad = tmp_path / "bad.yaml"
    bad.write_text("app:\n  limits:\n    max_upload_gb: 1\n")
    with pytest.raises(ValueError, match="max_upload_gb"):
        load_settings(bad)
    good = tmp_path / "best_of.yaml"
    good.write_text("app:\n  defaults:\n    best_of: 4\n")
    shipped = yaml.safe_load((REPO / "space.yaml").read_text())["app"]["defaults"]["best_of"]
    assert s.best_of == shipped and load_settings(good).best_of == 4
    for value in ("0", "9", "2.5", "x", "true"):
        bad.write_text(f"app:\n  defaults:\n    best_of: {value}\n")
        with pytest.raises(ValueError, match="best_of"):
            load_settings(bad)
    for name, value in (("max_best_of", '"8"'), ("max_best_of", "0"), ("max_best_of", "100"), ("max_steps", "2.5"),
                        ("max_upload_mb", "-1"), ("max_seconds", ".nan"), ("max_seed", "true")):
        bad.write_text(f"app:\n  limits:\n    {name}: {value}\n")
        with pytest.raises(ValueError, match=f"app.limits.{name}"):
            load_settings(bad)
    bad.write_text("app:\n  limits:\n    max_upload_mb: 10\n")  # a whole number where a float goes is fine
    assert load_settings(bad).limits.max_upload_mb == 10 and load_settings(bad).best_of == Settings().best_of
    bad.write_text("app:\n  generators:\n    audio: some/where\n")
    with pytest.raises(ValueError, match="audio"):
        load_settings(bad)
    for value in ("fp16", "float64", "1"):
        bad.write_text(f"app:\n  runtime:\n    dtype: {value}\n")
        with pytest.raises(ValueError, match="app.runtime.dtype"):
            load_settings(bad)
    bad.write_text("app:\n  runtime:\n    dtype: auto\n")
    assert load_settings(bad).dtype == "auto"
    for name, value in (("queue_size", "0"), ("file_max_age_s", "2.5"), ("cache_clips", "true"),
                        ("model_concurrency", '"2"')):
        bad.write_text(f"app:\n  runtime:\n    {name}: {value}\n")
        with pytest.raises(ValueError, match=f"app.runtime.{name} must be a whole number"):
            load_settings(bad)
    bad.write_text("app:\n  runtime:\n    queue_size: 8\n    file_max_age_s: 600\n")
    assert (load_settings(bad).queue_size, load_settings(bad).file_max_age_s) == (8, 600)
    # the defaults the page starts from are requests the limits allow
    for name, value, said in (("steps", "500", "from 1 to 50, got 500"), ("steps", "2.5", "got 2.5"),
                              ("k", "0", "from 1"), ("seed", "-3", "from 0 to 2147483647, got -3"),
                              ("guidance", "31", "from 0 to 30, got 31"), ("guidance", '"3"', "got '3'"),
                              ("guidance_mode", "xyz", "cfg, apg or null, got 'xyz'")):
        bad.write_text(f"app:\n  defaults:\n    {name}: {value}\n")
        with pytest.raises(ValueError, match=f"app.defaults.{name} must be .*{re.escape(said)}"):
            load_settings(bad)
    # a file that is no YAML, or YAML of the wrong shape: one line each (they were tracebacks)
    for text, said in (("app:\n  tokenizer: [unclosed\n", r"is not readable YAML \(line 3, column 1\): expected ','"),
                       ("- app\n", "must be a mapping with an app: section, got a list"),
                       ("app: 5\n", "app must be a mapping of settings, got 5"),
                       ("app:\n  limits: 5\n", "app.limits must be a mapping of settings, got 5"),
                       ("app:\n  runtime: [1]\n", r"app.runtime must be a mapping of settings, got \[1\]"),
                       ("app:\n  tokenizer: 12\n", r"app.tokenizer must be a folder or repo id \(text\), got 12"),
                       ("app:\n  examples: [a]\n", r"app.examples must be a folder \(text\)"),
                       ("app:\n  generators:\n    text: 5\n", "app.generators.text must be a folder, repo id or none")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=said):
            load_settings(bad)
    bad.write_bytes(b"\xff\xfe app")
    with pytest.raises(ValueError, match="is not readable YAML: 'utf-8' codec"):
        load_settings(bad)
    bad.write_text("app:\n  defaults:\n    steps: 20.0\n    guidance: 2\n    guidance_mode: apg\n    k: 99\n")
    s = load_settings(bad)
    assert (s.steps, s.guidance, s.guidance_mode, s.k) == (20, 2.0, "apg", 99)  # k above K is K (defaults())


def test_generator_settings(tmp_path, monkeypatch):
    """Generators: the environment, else the file, else the bundled folders next to the file, else this
    checkout's, else none."""
    from flexvid.generate import DEFAULT_MODELS
    for name in ("FLEXVID_TEXT_GENERATOR", "FLEXVID_CLASS_GENERATOR"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "space.yaml"
    config.write_text("app:\n  generators:\n    text: null\n    class: someone/class-model\n")
    checkout = {"text": str(Path(DEFAULT_MODELS["text"]).resolve()), "class": "someone/class-model"}
    assert load_settings(config).generators == checkout
    (tmp_path / "assets" / "generator-text").mkdir(parents=True)
    assert load_settings(config).generators == checkout  # a folder without config.json is not a model
    (tmp_path / "assets" / "generator-text" / "config.json").write_text("{}")
    assert load_settings(config).generators == {"text": "assets/generator-text", "class": "someone/class-model"}
    monkeypatch.setenv("FLEXVID_TEXT_GENERATOR", "none")
    monkeypatch.setenv("FLEXVID_CLASS_GENERATOR", "/models/class")
    assert load_settings(config).generators == {"class": "/models/class"}
    # the command line's --text-generator / --class-generator come first; None there is not given
    assert load_settings(config, generators={"text": "mine/text", "class": None}).generators == \
        {"text": "mine/text", "class": "/models/class"}
    assert load_settings(config, generators={"text": None, "class": "none"}).generators == {}


# ----------------------------------------------------------------------------- generation
class Calls:
    """Counts a generator's sample_tokens calls and their budgets."""

    def __init__(self, gen):
        self.inner, self.ks = gen.sample_tokens, []
        gen.sample_tokens = self

    def __call__(self, condition, *args, **kw):
        self.ks.append(args[0] if args else kw.get("k"))
        return self.inner(condition, *args, **kw)


@pytest.fixture(scope="module")
def generator_folders(tmp_path_factory):
    return small_generators(tmp_path_factory.mktemp("generators"))


@pytest.fixture(scope="module")
def grt(pipe, generator_folders, tmp_path_factory):
    """A runtime with both small generators (loaded once for the module: the text one loads MiniLM)."""
    counter = Counting(pipe)
    runtime = Runtime(Settings(generators=generator_folders, best_of=1), pipeline=pipe,  # plain samples
                      out_dir=str(tmp_path_factory.mktemp("gen")))
    assert runtime.load_generators() == {"class": "ready", "text": "ready"}
    runtime.counter = counter
    runtime.calls = {name: Calls(runtime.generator(name)) for name in ("text", "class")}
    yield runtime
    pipe.detokenize = counter.inner


def test_auto_dtype_decodes_in_bf16_where_native_and_samples_in_fp32_on_a_cpu(pipe, generator_folders, tmp_path):
    from flexvid.training import bf16_native
    pipe.save_pretrained(str(tmp_path / "tok"))
    rt = Runtime(Settings(tokenizer=str(tmp_path / "tok"), generators={"class": generator_folders["class"]},
                          device="cpu", dtype="auto", best_of=1), out_dir=str(tmp_path / "out"))
    native = torch.bfloat16 if bf16_native(torch.device("cpu")) else torch.float32
    assert rt.tok.dtype == native and rt.info()["dtype"] == str(native).replace("torch.", "")
    assert rt.generator("class").dtype == torch.float32 and rt.generator("class").tokenizer is rt.tok


def test_generate_defaults_give_each_model_its_own_guidance(grt, pipe, generator_folders, tmp_path):
    d = grt.generate_defaults()
    assert d["guidance"] == grt.generator("text").cfg.guidance == 4.0
    assert d["class_guidance"] == grt.generator("class").cfg.guidance == 2.5
    only_class = Runtime(Settings(generators={"class": generator_folders["class"]}), pipeline=pipe, out_dir=str(tmp_path))
    only_class.load_generators()
    assert only_class.generate_defaults()["guidance"] == only_class.generate_defaults()["class_guidance"] == 2.5


def test_generate_outputs_progress_and_cache(grt):
    K = grt.tok.n_tokens
    seen = []
    g = grt.generate("text", "a large red circle moving left", k=4, frames=17, steps=2, guidance=3.0,
                     temperature=1.0, seed=11, progress=lambda *a: seen.append(a))
    assert not g.cached and g.ks == [4] and grt.calls["text"].ks[-1] == 4
    frames, fps = video_io.read_video(g.video)
    assert frames.shape == (17, 256, 256, 3) and fps == 8  # 64 px shown at 256 px
    tokens = g.results[4].tokens
    assert tokens.shape == (5, K) and (tokens[:, 4:] == 0).all()  # only the budget is generated
    assert g.results[4].video.shape == (17, 64, 64, 3) and g.results[4].video.std() > 0
    assert f"k = 4 of {K}" in g.summary and "20 tokens" in g.summary and "seed 11" in g.summary
    # progress comes from the sampling loop (one call per token) and then from the decoder's Euler steps
    tok_steps = [(d, n) for s, d, n in seen if s == "tokens"]
    assert tok_steps == [(i, 20) for i in range(1, 21)]
    assert [s for s, *_ in seen].index("decode") == 20 and seen[-1][1] == seen[-1][2]

    calls, decodes = len(grt.calls["text"].ks), grt.counter.calls
    for prompt in ("a large red circle moving left", "  a large red circle   moving left "):  # normalised
        again = grt.generate("text", prompt, k=4, frames=17, steps=2, guidance=3, temperature=1, seed=11.0)
        assert again.cached and again.video == g.video and "from the cache" in again.summary
    assert len(grt.calls["text"].ks) == calls and grt.counter.calls == decodes  # no model work
    grt.generate("text", "a large red circle moving left", k=4, frames=17, steps=2, seed=12)
    assert len(grt.calls["text"].ks) == calls + 1 and grt.counter.calls == decodes + 1  # another seed: work


def test_the_page_says_the_embedded_models_domain_only_for_them(tmp_path):
    from flexvid.app_ui import EMBEDDED_NOTE, embedded, generate_intro
    assert embedded(SimpleNamespace(settings=Settings()))  # space.yaml's own default: assets/tokenizer
    other = tmp_path / "tok"
    other.mkdir()
    assert not embedded(SimpleNamespace(settings=Settings(tokenizer=str(other))))
    assert not embedded(SimpleNamespace(settings=Settings(tokenizer="someone/videoflextok-d18")))  # a repo id
    assert "shapes world" in EMBEDDED_NOTE
    ready = {"text": "ready", "class": "ready"}  # the Generate tab lists the shapes world's words for them only
    assert "circle, square or triangle" in generate_intro(ready, embedded_models=True)
    assert "circle, square or triangle" not in generate_intro(ready)


def test_a_prompt_outside_the_training_words_is_said(grt, monkeypatch):
    g = grt.generate("text", "a large red circle moving left", k=1, frames=17, steps=1, seed=0)
    assert "Words no training caption used" not in g.summary
    size, side = grt.tok.size, video_io.read_video(g.video)[0].shape[1]  # the model's size, and the file's
    assert side == size * grt.display_scale() > size and f"at {size}x{size} (shown at {side}x{side})." in g.summary
    g = grt.generate("text", "A cat playing piano on the moon, and a red cube descending", k=1, frames=17, steps=1,
                     seed=0)
    assert "Words no training caption used: **cat, playing, piano, on, moon**" in g.summary  # cube, descending: trained
    assert "circle, square or triangle" in g.summary
    c = grt.generate("class", "green square down", k=1, frames=17, steps=1, seed=0)
    assert "Words no training caption used" not in c.summary
    # emoji say nothing to the generators either (a prompt of emoji alone used to get no note at all)
    g = grt.generate("text", "🔴 ➡️", k=1, frames=17, steps=1, seed=0)
    assert "Words no training caption used: **🔴, ➡️**" in g.summary
    g = grt.generate("text", "a large red circle, moving left!", k=1, frames=17, steps=1, seed=0)
    assert "Words no training caption used" not in g.summary  # punctuation is no word
    assert "word pieces" not in g.summary
    # a prompt longer than the word pieces the generator reads: its end is said, in the ladder's summary too
    enc, long = grt.generator("text").text_encoder, "the the a red circle moving left"
    for make in (grt.generate, grt.generate_ladder):  # made as this one reads prompts (one sentence vector)...
        assert "word pieces" not in make("text", long, frames=17, steps=1, seed=0).summary
    monkeypatch.setattr(enc, "tokens", 4)  # ... and said (from the cache) as one reading 3 word pieces would
    said = "reads the first 3 word pieces of a prompt: from **red circle moving left** on"
    for make in (grt.generate, grt.generate_ladder):
        assert said in make("text", long, frames=17, steps=1, seed=0).summary
    monkeypatch.setattr(enc, "unread", lambda prompt: 1 / 0)  # a note that fails never fails its request
    assert "word pieces" not in grt.generate("text", long, frames=17, steps=1, seed=0).summary


def test_generation_matches_the_pipeline(grt):
    """The runtime samples and decodes as VideoGenerator.generate does for one condition."""
    g = grt.generate("class", "green square down", k=2, frames=17, steps=2, guidance=2.0, temperature=0.9, seed=3)
    d = grt.defaults()
    ref = grt.generator("class").generate(["green square down"], k=2, frames=17, guidance=2.0, temperature=0.9,
                                          seed=3, decode_steps=2, decode_guidance=d["guidance"],
                                          decode_guidance_mode=d["guidance_mode"])
    assert np.array_equal(video_io.from_model(ref[0]), g.results[2].video)


def test_generation_decodes_with_the_generator_decode_guidance(grt):
    """A generator config's decode_guidance overrides the tokenizer's default guidance for its grids."""
    gen, d = grt.generator("class"), grt.defaults()
    gen.cfg.decode_guidance = d["guidance"] + 1.5
    try:
        g = grt.generate("class", "blue triangle up", k=2, frames=17, steps=2, seed=5)
        ref = gen.generate(["blue triangle up"], k=2, frames=17, seed=5, decode_steps=2,
                           decode_guidance_mode=d["guidance_mode"])
        plain = gen.generate(["blue triangle up"], k=2, frames=17, seed=5, decode_steps=2,
                             decode_guidance=d["guidance"], decode_guidance_mode=d["guidance_mode"])
    finally:
        gen.cfg.decode_guidance = None
    assert np.array_equal(video_io.from_model(ref[0]), g.results[2].video)
    assert not np.array_equal(video_io.from_model(plain[0]), g.results[2].video)


def test_ladder_samples_each_budget_and_decodes_once(grt):
    K, ladder = grt.tok.n_tokens, grt.tok.ladder()
    grt.generate("class", "red circle left", k=4, frames=21, steps=2, seed=0)
    calls, decodes = len(grt.calls["class"].ks), grt.counter.calls
    lad = grt.generate_ladder("class", 0, frames=21, steps=2, seed=0)  # label 0 is red circle left
    missing = [k for k in ladder if k != 4]  # k = 4 is in the cache already
    assert grt.calls["class"].ks[calls:] == missing
    assert grt.counter.calls == decodes + 1 and grt.counter.ks[-1] == missing  # ONE batched decode
    assert lad.ks == ladder and not lad.cached
    grid, _ = video_io.read_video(lad.video)
    assert grid.shape[0] == 21 and grid.shape[1] == 128  # one row of 128 px cells
    assert all(f"| {k} | {6 * k} |" in lad.summary for k in ladder) and "red circle moving left" in lad.summary
    for k in ladder:
        assert (lad.results[k].tokens[:, k:] == 0).all() and lad.results[k].video.shape == (21, 64, 64, 3)
    same = grt.generate_ladder("class", "red-circle-left", frames=21, steps=2, seed=0)
    assert same.cached and grt.counter.calls == decodes + 1 and same.video == lad.video
    one = grt.generate("class", "red circle left", k=K, frames=21, steps=2, seed=0)
    assert one.cached and np.array_equal(one.results[K].video, lad.results[K].video)


def test_best_of_keeps_the_candidate_the_reranker_scores_best(grt):
    gen, d = grt.generator("class"), grt.defaults()
    g = grt.generate("class", "green square down", k=2, frames=17, steps=2, guidance=2.0, temperature=1.0, seed=4,
                     best_of=3)
    assert "best of 3" in g.summary and not g.cached
    grids = gen.sample_tokens(["green square down"] * 3, k=2, frames=17, temperature=1.0, guidance=2.0, seed=4)
    videos = grt.tok.detokenize(grids, k=[2] * 3, steps=2, guidance=d["guidance"], guidance_mode=d["guidance_mode"],
                                seed=[4, 5, 6])  # candidate j decodes with seed + j
    scores = gen.reranker.score(videos, ["green square down"] * 3, "class")
    best = int(scores.argmax())
    assert np.array_equal(video_io.from_model(videos[best]), g.results[2].video)
    assert torch.equal(grids[best], g.results[2].tokens)
    # the same video as the library's best of 3 (the one the README measures)
    ref = gen.generate(["green square down"], k=2, frames=17, temperature=1.0, guidance=2.0, seed=4, decode_steps=2,
                       decode_guidance=d["guidance"], decode_guidance_mode=d["guidance_mode"], best_of=3)
    assert np.array_equal(video_io.from_model(ref[0]), g.results[2].video)
    plain = grt.generate("class", "green square down", k=2, frames=17, steps=2, guidance=2.0, temperature=1.0, seed=4)
    assert not plain.cached  # best_of is part of the request


def test_best_of_default_comes_from_the_settings(grt, monkeypatch):
    monkeypatch.setattr(grt.settings, "best_of", 3)
    assert grt.generate_defaults()["best_of"] == 3
    kw = dict(k=2, frames=17, steps=2, guidance=2.0, temperature=1.0, seed=5)
    g = grt.generate("class", "blue triangle up", **kw)  # best_of not given: the configured 3
    assert "best of 3" in g.summary and not g.cached
    assert grt.generate("class", "blue triangle up", best_of=3, **kw).cached  # the same request
    plain = grt.generate("class", "blue triangle up", best_of=1, **kw)
    assert not plain.cached and "best of" not in plain.summary


def test_default_best_of_without_a_reranker_falls_back_to_plain_samples(grt, monkeypatch, tmp_path):
    gen = grt.generator("class")
    monkeypatch.setattr(grt.settings, "best_of", 4)
    monkeypatch.setattr(gen, "_reranker", None)
    monkeypatch.setattr(gen, "reranker_path", str(tmp_path / "no-reranker"))
    kw = dict(k=2, frames=17, steps=2, guidance=2.0, temperature=1.0, seed=6)
    g = grt.generate("class", "red square up", **kw)  # the Space's default: a plain sample rather than no video
    assert "best of" not in g.summary
    assert grt.generate_defaults()["best_of"] == 1  # and the Generate tab's slider starts there
    assert grt.generate("class", "red square up", best_of=1, **kw).cached
    with pytest.raises(UserError, match="best of 2 needs the reranker, and none is loaded here") as e:
        grt.generate("class", "red square up", best_of=2, **kw)  # asked for: said why not, without server paths
    assert str(tmp_path) not in str(e.value)


def test_the_reranker_comes_from_the_settings_and_none_turns_best_of_off(pipe, generator_folders, tmp_path,
                                                                        monkeypatch):
    """A deployment with generators of its own world can turn the shapes-world reranker off (app.reranker:
    none, FLEXVID_RERANKER, --reranker) or name its own; /info says which."""
    monkeypatch.delenv("FLEXVID_RERANKER", raising=False)
    config = tmp_path / "space.yaml"
    config.write_text("app:\n  reranker: mine/scorer\n")
    assert load_settings(REPO / "space.yaml").reranker == "assets/reranker"
    assert load_settings(config).reranker == "mine/scorer"
    monkeypatch.setenv("FLEXVID_RERANKER", "none")
    assert load_settings(config).reranker is None
    assert load_settings(config, reranker="other").reranker == "other"  # the command line first
    config.write_text("app:\n  reranker: 3\n")
    with pytest.raises(ValueError, match=r"app.reranker must be a folder or none \(text\), got 3"):
        load_settings(config)
    monkeypatch.delenv("FLEXVID_RERANKER")
    config.write_text("app:\n  reranker: off\n  generators:\n    text: off\n")  # YAML's off is False: off
    assert load_settings(config).reranker is None and "text" not in load_settings(config).generators
    gone = Runtime(Settings(generators={}, reranker=str(tmp_path / "no-such-reranker")), pipeline=pipe,
                   out_dir=str(tmp_path / "gone"))
    assert gone.info()["reranker"] is None and not gone.reranker_ready()  # configured, not there: not said loaded
    off = Runtime(Settings(generators={"class": generator_folders["class"]}, reranker=None, best_of=4),
                  pipeline=pipe, out_dir=str(tmp_path / "off"))
    assert off.load_generators() == {"class": "ready"} and off.info()["reranker"] is None
    assert off.generate_defaults()["best_of"] == 1  # the slider starts at plain samples
    kw = dict(k=2, frames=17, steps=2, guidance=2.0, temperature=1.0, seed=6)
    assert "best of" not in off.generate("class", "red square up", **kw).summary  # the default falls back
    with pytest.raises(UserError, match="best of 2 needs the reranker, and none is loaded here: ask for best of 1"):
        off.generate("class", "red square up", best_of=2, **kw)
    from flexvid.app_ui import build_demo
    slider = next(b for b in build_demo(off).blocks.values() if getattr(b, "elem_id", None) == "gen-best-of")
    assert slider.interactive is False and slider.value == 1 and "no reranker here" in slider.info
    mine = tmp_path / "my-reranker"
    shutil.copytree(REPO / "assets" / "reranker", mine)
    on = Runtime(Settings(generators={"class": generator_folders["class"]}, reranker=str(mine), best_of=1),
                 pipeline=pipe, out_dir=str(tmp_path / "on"))
    assert on.generator("class").reranker_path == str(mine) and on.info()["reranker"] == ".../my-reranker"


@pytest.mark.parametrize("bad", [0, 9, 2.5, "x", True])
def test_best_of_out_of_range_is_refused_before_model_work(grt, bad):
    calls = sum(len(c.ks) for c in grt.calls.values())
    with pytest.raises(UserError, match="best of"):
        grt.generate("text", "a small blue square moving up", k=2, frames=17, steps=1, best_of=bad)
    assert sum(len(c.ks) for c in grt.calls.values()) == calls


def test_generation_cache_is_bounded(pipe, generator_folders, tmp_path):
    rt = Runtime(Settings(generators={"class": generator_folders["class"]}, cache_generations=2, best_of=1),
                 pipeline=pipe,
                 out_dir=str(tmp_path))
    first = rt.generate("class", 1, k=1, frames=17, steps=1, seed=0)
    for seed in (1, 2):
        rt.generate("class", 1, k=1, frames=17, steps=1, seed=seed)
    assert len(rt._generated) == 2 and rt.stats["generated_videos"] == 3
    assert not Path(first.video).exists()  # the evicted clip's file is gone too
    assert not rt.generate("class", 1, k=1, frames=17, steps=1, seed=0).cached


@pytest.mark.parametrize("kind, kw, message", [
    ("text", dict(condition=""), "the prompt is empty"), ("text", dict(condition="  \n "), "the prompt is empty"),
    ("text", dict(condition=None), "the prompt is empty"), ("text", dict(condition=5), "must be text"),
    ("text", dict(condition="\u200b\x00"), "the prompt is empty"),  # nothing that shows
    ("text", dict(condition="x" * 301), "too long: 301 characters, at most 300"),
    ("text", dict(condition="y" * 10**6), "too long"),
    ("text", dict(condition="a red \ud800 circle"), "not valid Unicode text: character 7 is a lone surrogate"),
    ("text", dict(k=0), "k"), ("text", dict(k=9), "k"), ("text", dict(k=2.5), "k"), ("text", dict(k="3"), "k"),
    ("text", dict(frames=18), "1 \\+ 4n"), ("text", dict(frames=13), "clip length"),
    ("text", dict(frames=85), "clip length"), ("text", dict(frames=17.5), "clip length"),
    ("text", dict(frames=10**9), "clip length"), ("text", dict(steps=0), "decoder steps"),
    ("text", dict(steps=10**6), "decoder steps"), ("text", dict(guidance=-1), "guidance"),
    ("text", dict(guidance=float("inf")), "guidance"), ("text", dict(guidance=1e9), "guidance"),
    ("text", dict(temperature=0), "temperature"), ("text", dict(temperature=-1), "temperature"),
    ("text", dict(temperature=float("nan")), "temperature"), ("text", dict(temperature=1e9), "temperature"),
    ("text", dict(seed=-1), "seed"), ("text", dict(seed=2**40), "seed"), ("text", dict(seed=0.5), "seed"),
    ("text", dict(seed=True), "seed"), ("class", dict(condition=90), "class label"),
    ("class", dict(condition="purple circle left"), "colour shape motion"),
    ("class", dict(condition="red circle"), "colour shape motion"), ("class", dict(condition=1.0), "class label"),
    ("class", dict(condition="9" * 5000), "too long"), ("audio", dict(), "kind"),
])
def test_bad_generation_inputs_raise_user_error(grt, kind, kw, message):
    args = dict(condition="a small blue square moving up" if kind == "text" else 3, k=2, frames=17, steps=1,
                guidance=3.0, temperature=1.0, seed=0) | kw
    calls, decodes = sum(len(c.ks) for c in grt.calls.values()), grt.counter.calls
    with pytest.raises(UserError, match=message):
        grt.generate(kind, **args)
    if "k" not in kw:  # the ladder makes every k
        with pytest.raises(UserError, match=message):
            grt.generate_ladder(kind, **{a: v for a, v in args.items() if a != "k"})
    assert sum(len(c.ks) for c in grt.calls.values()) == calls and grt.counter.calls == decodes  # refused first
    assert grt.generate("class", 3, k=1, frames=17, steps=1, seed=0).results[1].video.shape == (17, 64, 64, 3)


def test_generators_that_are_missing_or_broken(pipe, generator_folders, tmp_path, caplog):
    rt = Runtime(Settings(), pipeline=pipe, out_dir=str(tmp_path / "none"))
    assert rt.load_generators() == {} and rt.info()["generators"] == []
    with pytest.raises(UserError, match="Text-to-video is not configured.*FLEXVID_TEXT_GENERATOR"):
        rt.generate("text", "a red circle", k=1)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"format": "flexvid-generator", "generator": {"dim": 64}}')
    rt = Runtime(Settings(generators={"text": str(tmp_path / "nope"), "class": str(broken)}), pipeline=pipe,
                 out_dir=str(tmp_path / "out"))
    import logging
    with caplog.at_level(logging.ERROR, logger="flexvid.app"):
        assert rt.load_generators() == {"class": "failed to load", "text": "failed to load"}
    said = [r.getMessage() for r in caplog.records if "could not load the text" in r.getMessage()
            and r.exc_info is None]  # a folder not there: one line, no traceback in the log
    assert len(said) == 1 and "text generator folder not found" in said[0], said
    said = [r.getMessage() for r in caplog.records if "could not load the class" in r.getMessage()]
    assert [r.exc_info for r in caplog.records if "could not load the class" in r.getMessage()] == [None]
    assert "missing weights file" in said[0], said  # a folder without its weights: one line too
    for kind, cond in (("text", "a red circle"), ("class", 0)):
        with pytest.raises(UserError, match="configured but could not be loaded .missing, unreadable or of the other kind") as e:
            rt.generate_ladder(kind, cond)
        assert str(tmp_path) not in str(e.value)  # the server's paths stay out of the message
    info = rt.info()
    assert info["generator_info"]["class"] == {"status": "failed to load", "model": ".../broken"}
    assert str(tmp_path) not in str(info)
    # one trained on another tokenizer's tokens (a tokenizer of one's own with the bundled generators) runs,
    # and the page, /info and the log say so
    import json
    other = tmp_path / "other-tokenizer"
    shutil.copytree(generator_folders["class"], other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["tokenizer_fingerprint"] = "0123456789abcdef"
    (other / "config.json").write_text(json.dumps(cfg))
    rt = Runtime(Settings(generators={"class": str(other), "text": generator_folders["text"]}), pipeline=pipe,
                 out_dir=str(tmp_path / "o"))
    assert rt.load_generators() == {"class": "ready", "text": "ready"} and rt.generators_unfit() == ["class"]
    gens = rt.info()["generator_info"]
    assert gens["class"]["fits_tokenizer"] is False and gens["text"]["fits_tokenizer"] is True
    from flexvid.app_ui import generate_intro
    intro = generate_intro(rt.generator_status(), unfit=rt.generators_unfit())
    assert "class-to-video generator was trained on another tokenizer" in intro and "text-to-video generator was" not in intro
    assert rt.generate("class", 3, k=1, frames=17, steps=1).video  # it still runs
    # a class generator configured as the text one is refused when it loads
    rt = Runtime(Settings(generators={"text": generator_folders["class"]}), pipeline=pipe, out_dir=str(tmp_path / "x"))
    assert rt.load_generators() == {"text": "failed to load"}


def test_examples_are_bundled_and_labelled():
    from flexvid.app_ui import EXAMPLES, examples
    files, labels = examples(REPO / "assets" / "examples")
    assert [Path(f[0]).name for f in files] == list(EXAMPLES)
    assert any("synthetic" in label and "not real" in label for label in labels)
    from flexvid.app_ui import REAL_EXAMPLES
    licences = (REPO / "assets" / "examples" / "LICENSES.md").read_text()
    for (f,) in files:
        frames, fps = video_io.read_video(f)
        if Path(f).name in REAL_EXAMPLES:  # real footage at its own frame rate and aspect: resampled, cropped
            a, b = REAL_EXAMPLES[Path(f).name]
            assert fps == 25 and frames.shape == (b - a, 180, 320, 3)
            assert Path(f).name in licences and "CC BY 3.0" in EXAMPLES[Path(f).name]
        else:
            assert fps == 8 and frames.shape[0] in (33, 81)


# ----------------------------------------------------------------------------- the Space card
def front_matter(text: str) -> dict:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---" or "---" not in [x.strip() for x in lines[1:]]:
        return {}
    end = 1 + [x.strip() for x in lines[1:]].index("---")
    return yaml.safe_load("\n".join(lines[1:end])) or {}


def test_space_card_agrees_with_readme_front_matter():
    card = yaml.safe_load((REPO / "space.yaml").read_text())["card"]
    assert card["sdk"] == "gradio" and (REPO / card["app_file"]).is_file()
    gradio = pytest.importorskip("gradio")
    assert card["sdk_version"] == gradio.__version__, "space.yaml sdk_version must be the installed gradio"
    readme = REPO / "README.md"
    meta = front_matter(readme.read_text()) if readme.exists() else {}
    block = "---\n" + yaml.safe_dump(card, sort_keys=False, allow_unicode=True) + "---"
    assert meta, f"README.md needs the Space card as YAML front matter at its top:\n{block}"
    for key, value in card.items():
        assert meta.get(key) == value, f"README.md front matter {key}: {meta.get(key)!r} != space.yaml {value!r}"


def test_an_unplayable_upload_gets_a_playable_copy_that_is_the_same_clip(rt, clip_file, tmp_path):
    """OpenCV's mp4v does not play in a browser: playable_preview makes an H.264 copy for the page, and
    tokenizing that copy (the page's change event does) finds the upload's clip instead of tokenizing again."""
    import cv2
    assert rt.playable_preview(clip_file) is None  # H.264 already
    frames = shapes.make_clip(3, 1, 17).video
    mp4v = tmp_path / "opencv.mp4"
    w = cv2.VideoWriter(str(mp4v), cv2.VideoWriter_fourcc(*"mp4v"), 8, (64, 64))
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    assert rt.preview_of(str(mp4v)) is None  # not made yet: the page keeps what it shows
    copy = rt.playable_preview(str(mp4v))
    # the page asks by what its box holds: the upload (any path with its content) finds its copy; anything else none
    same = tmp_path / "same_upload_elsewhere.mp4"
    same.write_bytes(mp4v.read_bytes())
    assert rt.preview_of(str(mp4v)) == copy and Path(copy).name == "opencv.mp4"  # named as the upload
    assert rt.preview_of(str(same)) is None  # another name: its own copy, made at its own upload
    other = rt.playable_preview(str(same))
    assert rt.preview_of(str(same)) == other and Path(other).name == "same_upload_elsewhere.mp4"
    assert rt.preview_of(clip_file) is None and rt.preview_of(copy) is None and rt.preview_of(None) is None
    assert copy is not None and video_io.browser_playable(copy) and Path(copy).is_relative_to(rt.out_dir)
    assert video_io.read_video(copy)[0].shape == (17, 64, 64, 3)
    clip = rt.add_clip(str(mp4v))
    assert rt.add_clip(copy).id == clip.id and rt.add_clip(copy).name == "opencv.mp4"
    assert rt.add_clip(other).content == clip.content and rt.add_clip(other).name == "same_upload_elsewhere.mp4"
    assert rt.stats["tokenize"] == 1
    # the copies kept are the newest uploads': one made again moves to the front, and stays the same clip
    small = Runtime(Settings(cache_clips=1), pipeline=rt.tok, out_dir=str(tmp_path / "small"))  # 4 copies kept
    files = []
    for i in range(5):
        path = tmp_path / f"u{i}.mp4"
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (64, 64))
        for f in shapes.make_clip(3, 10 + i, 5).video:
            w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        w.release()
        files.append(str(path))
    first = [small.playable_preview(f) for f in files[:4]]
    again = small.playable_preview(files[0])  # made again: the newest now
    small.playable_preview(files[4])  # a fifth: the oldest (u1's copy) goes, not u0's
    assert Path(again).exists() and not Path(first[1]).exists()
    assert small.add_clip(again).id == small.add_clip(files[0]).id
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF" + bytes(300))
    assert rt.playable_preview(str(bad)) is None and rt.playable_preview(None) is None  # add_clip says why


def test_an_upload_with_a_variable_frame_rate_keeps_its_length(rt, tmp_path):
    """A MediaRecorder-like webm (20 frames, a 6 s pause in the middle) is tokenized as the 6.7 s it plays
    for, not as 20 frames at the 25 fps OpenCV reports."""
    from test_video_io import _vfr_webm
    times = _vfr_webm(tmp_path / "vfr.webm", [40] * 9 + [6000] + [40] * 9)
    clip = rt.add_clip(str(tmp_path / "vfr.webm"))
    seconds = len(clip.frames) / rt.tok.fps
    assert abs(seconds - times[-1]) <= 4 / rt.tok.fps, (len(clip.frames), times[-1])  # to a valid length 1 + 4n
    assert "a variable frame rate, read at 25 fps" in clip.source and "repeated over gaps" in clip.source
    assert "variable" not in rt.add_clip(str(REPO / "assets" / "examples" / "shapes_one_object.mp4")).source
    from test_video_io import _gif  # a GIF whose last frame is held 3 s plays 3.9 s
    _gif(tmp_path / "held.gif", [100] * 9 + [3000])
    held = rt.add_clip(str(tmp_path / "held.gif"))
    assert abs(len(held.frames) / rt.tok.fps - 3.9) <= 4 / rt.tok.fps and "read at 10 fps: 39 frames" in held.source


def test_an_upload_cut_short_or_a_still_image_is_said(rt, tmp_path):
    """A clip whose download was cut short is read as far as it decodes, and the page says so; an image
    renamed to .mp4 is a one-frame clip, said as such."""
    from flexvid import shapes
    video_io.write_video(tmp_path / "whole.mp4", shapes.make_clip(0, 1, 65).video, fps=8)
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:len(data) // 2])
    clip = rt.add_clip(str(tmp_path / "cut.mp4"))
    assert any("though its header says 8.12 s (cut short or damaged?)" in n for n in clip.notes), clip.notes
    assert len(clip.frames) < 65
    assert not any("cut short" in n for n in rt.add_clip(str(tmp_path / "whole.mp4")).notes)
    import cv2
    cv2.imwrite(str(tmp_path / "still.png"), np.full((48, 64, 3), 90, np.uint8))
    (tmp_path / "still.mp4").write_bytes((tmp_path / "still.png").read_bytes())
    still = rt.add_clip(str(tmp_path / "still.mp4"))
    assert "a single frame (a still image?)" in "; ".join(still.notes) and len(still.frames) == 1
    summary = rt.view(still.id, k=1, steps=1).summary  # singular where it is one; the notes open a sentence
    assert "64x48 at 25 fps, 1 frame read (0.04 s) -> 1 frame 64x64" in summary, summary
    assert "). A single frame (a still image?); Resized" not in summary and ". A single frame (a still" in summary
    assert "tokens per step x **1** step = " in rt.token_caption(still, 1)


def test_work_stopped_by_its_progress_callback_leaves_the_runtime_as_it_was(grt, clip_file, tmp_path):
    """The app stops a cancelled request by raising from its progress callback (app_ui.check_wanted), mid
    sampling or mid decoding: nothing half-made is cached, the model slot is free, and the same request then
    gives what it gives uninterrupted (the generator's KV cache holds nothing of the stopped one)."""
    class Stop(Exception):
        pass

    def stop_at(stage, n):
        calls = []

        def cb(*args):
            calls.append(args)
            if (args[0] if len(args) == 3 else "decode") == stage and len(calls) >= n:
                raise Stop
        return cb

    seed = 31337
    ask = dict(k=4, frames=17, steps=2, seed=seed)
    for stage in ("tokens", "decode"):
        with pytest.raises(Stop):
            grt.generate("text", "a large red circle moving left", progress=stop_at(stage, 3), **ask)
    clip = grt.add_clip(clip_file)
    sampler = Sampler(2, 1.0, "cfg", seed)
    with pytest.raises(Stop):
        grt.decode(clip, [3], sampler, progress=stop_at("decode", 1))
    assert not grt.decoded(clip, sampler)
    assert grt._model.acquire(timeout=1)  # the slot was given back
    grt._model.release()
    got = grt.generate("text", "a large red circle moving left", **ask)
    assert not got.cached
    fresh = Runtime(grt.settings, pipeline=grt.tok, out_dir=str(tmp_path / "fresh"))
    fresh.load_generators()
    again = fresh.generate("text", "a large red circle moving left", **ask)
    assert torch.equal(again.results[4].tokens, got.results[4].tokens)
    assert np.array_equal(again.results[4].video, got.results[4].video)
    assert list(grt.decode(clip, [3], sampler)) == [3] and list(grt.decoded(clip, sampler)) == [3]


def test_cache_hits_wait_for_no_lock(grt, clip_file):
    """Another page's request may hold a clip's or a generator's lock for minutes while it waits for the
    model; a request the caches already answer used to wait behind it (a text-generation cache hit took
    342 s in a review), and now returns at once."""
    ask = dict(k=2, frames=17, steps=2, seed=4242)
    grt.generate("text", "a small blue square moving up", **ask)
    clip = grt.add_clip(clip_file)
    sampler = Sampler(2, 1.0, "cfg", 4242)
    grt.decode(clip, [1, 2], sampler)
    done = {}
    with grt._generation_lock("text"), grt._clip_lock(clip.content):
        calls = {"generate": lambda: grt.generate("text", "a small blue square moving up", **ask).cached,
                 "decode": lambda: sorted(grt.decode(clip, [2, 1], sampler)),
                 "add_clip": lambda: grt.add_clip(clip_file).id}
        threads = [threading.Thread(target=lambda n=n, f=f: done.__setitem__(n, f())) for n, f in calls.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert done == {"generate": True, "decode": [1, 2], "add_clip": clip.id}


def test_clips_sharing_a_file_share_decodes_until_the_last_of_them_goes(pipe, clip_file, tmp_path):
    rt = Runtime(Settings(cache_clips=1), pipeline=pipe, out_dir=str(tmp_path / "out"))
    sampler = Sampler(1, 1.0, "cfg", 0)
    first = rt.add_clip(clip_file)
    rt.decode(first, [2], sampler)
    renamed = tmp_path / "renamed.mp4"
    renamed.write_bytes(Path(clip_file).read_bytes())
    second = rt.add_clip(str(renamed))  # the only clip kept now; the first one's folder is gone
    assert not (rt.out_dir / first.id).exists() and list(rt.decoded(second, sampler)) == [2]
    other = tmp_path / "other.mp4"
    video_io.write_video(other, shapes.make_clip(2, 5, 17).video, fps=8)
    rt.add_clip(str(other))
    assert not rt.decoded(second, sampler) and rt.stats["tokenize"] == 2


def test_a_settings_file_kept_elsewhere_still_finds_the_bundled_models_and_examples(tmp_path, monkeypatch):
    """Relative paths resolve next to the settings file, else in this checkout: a file outside the repo (an
    operator's own limits, say) used to turn both generators off without a word."""
    from flexvid.app_ui import embedded
    from flexvid.generate import DEFAULT_MODELS
    for var in ("FLEXVID_TOKENIZER", "FLEXVID_TEXT_GENERATOR", "FLEXVID_CLASS_GENERATOR", "FLEXVID_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "mine.yaml"
    config.write_text("app:\n  limits:\n    max_upload_mb: 5\n")
    s = load_settings(config)
    assert s.base_dir == str(tmp_path) and s.limits.max_upload_mb == 5
    assert {k: Path(v) for k, v in s.generators.items()} == {k: Path(v) for k, v in DEFAULT_MODELS.items()}
    assert s.local(s.examples).is_dir() and any(s.local(s.examples).glob("*.mp4"))
    rt = Runtime(s, out_dir=str(tmp_path / "out"))
    assert rt.tok.n_tokens == 32 and embedded(rt)
    (tmp_path / "assets" / "examples").mkdir(parents=True)  # one next to the file comes first
    assert s.local("assets/examples") == tmp_path / "assets" / "examples"
    with pytest.raises(ModelMissing, match=r"folder not found: 'assets/no-such-model' \(looked for next to the "
                                           r"settings file, then in this checkout\)\. Set app.tokenizer"):
        resolve_model("assets/no-such-model", str(tmp_path))


def test_the_page_takes_its_file_age_and_queue_size_from_the_settings(pipe, tmp_path):
    from flexvid.app_ui import build_demo
    rt = Runtime(Settings(generators={}, file_max_age_s=600), pipeline=pipe, out_dir=str(tmp_path / "out"))
    rt.settings.queue_size = 7
    demo = build_demo(rt)
    assert demo.delete_cache == (600, 600) and demo._queue.max_size == 7
    work = {"tokenize", "decode", "resample", "decode_page", "resample_page", "preview", "generate_text",
            "generate_text_ladder", "generate_class", "generate_class_ladder"}
    names = {fn.name: fn.concurrency_id for fn in demo.fns.values() if fn.queue}
    assert work <= set(names) and {names[n] for n in work} == {"page"}  # tests/test_app_client.py runs it


def test_rerankers_load_with_the_generators_where_the_default_best_of_uses_them(pipe, generator_folders, tmp_path):
    """The first generation used to load the reranker (and its text model) while its page waited."""
    one = Runtime(Settings(generators={"class": generator_folders["class"]}, best_of=1), pipeline=pipe,
                  out_dir=str(tmp_path / "a"))
    one.load_generators()
    assert getattr(one.generator("class"), "_reranker", None) is None
    four = Runtime(Settings(generators=generator_folders, best_of=4), pipeline=pipe, out_dir=str(tmp_path / "b"))
    assert four.load_generators() == {"class": "ready", "text": "ready"}
    for name in ("class", "text"):  # with its text model, the one the text generator reads prompts with
        reader = four.generator(name)._reranker.text_encoder
        assert reader._model is not None and reader._model is four.generator("text").text_encoder.load()


def _opencv_clip(path, fourcc: str, frames) -> str:
    """frames (T, 64, 64, 3 RGB) written by OpenCV with the codec `fourcc` (MJPG, mp4v: none plays in a browser)."""
    import cv2
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 8, (64, 64))
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    return str(path)


def test_the_playable_copy_of_an_avi_is_the_uploads_clip(rt, tmp_path):
    """The copy of x.avi is x.avi.mp4, which add_clip reads as x.avi: the page's swap to the copy finds the
    upload's clip (same id and name), where a copy named x.mp4 made a second clip."""
    avi = tmp_path / "holiday.avi"
    _opencv_clip(avi, "MJPG", shapes.make_clip(3, 4, 17).video)
    copy = rt.playable_preview(str(avi))
    assert copy is not None and Path(copy).name == "holiday.avi.mp4"
    upload = rt.add_clip(str(avi))
    again = rt.add_clip(copy)
    assert (again.id, again.name) == (upload.id, "holiday.avi") and rt.stats["tokenize"] == 1
    gradio_copy = tmp_path / "g" / "holiday.avi.mp4"  # the page holds Gradio's copy of the copy
    gradio_copy.parent.mkdir()
    gradio_copy.write_bytes(Path(copy).read_bytes())
    assert rt.add_clip(str(gradio_copy)).id == upload.id
    plain = tmp_path / "plain.mp4"  # a real .mp4 upload keeps its name
    plain.write_bytes(Path(copy).read_bytes())
    assert rt.add_clip(str(plain)).name == "plain.mp4"
    # an .mp4 the browser cannot play, with dots in its name: its copy keeps the name, and is the same clip
    dotted = _opencv_clip(tmp_path / "my.clip.v2.mp4", "mp4v", shapes.make_clip(3, 5, 9).video)
    copy = rt.playable_preview(dotted)
    upload, again = rt.add_clip(dotted), rt.add_clip(copy)
    assert Path(copy).name == "my.clip.v2.mp4" and (again.id, again.name) == (upload.id, "my.clip.v2.mp4")
    # the same file uploaded under two names (two pages): each copy is its own upload's clip; and a name too
    # long to keep whole is the same shortened name for the upload and for its copy
    for first, second in (("a.avi", "b.avi"), ("c" * 114 + ".avi", "d" * 200 + ".mov")):
        one = _opencv_clip(tmp_path / first, "MJPG", shapes.make_clip(3, 6, 9).video)
        two = tmp_path / second
        two.write_bytes(Path(one).read_bytes())
        copies = [rt.playable_preview(one), rt.playable_preview(str(two))]
        for upload, copy in zip((one, str(two)), copies):
            clip, again = rt.add_clip(upload), rt.add_clip(copy)
            assert (again.id, again.name) == (clip.id, clip.name) and clip.name.endswith(Path(upload).suffix)


def test_the_apps_number_inputs_refuse_what_is_no_number_in_one_message():
    """flexvid.app_ui.quiet on a slider and a whole-number box: a value of the wrong type, NaN (raw JSON may
    carry it; gradio_client may not) or a fraction for a whole number is refused (Refused, its message) with
    no traceback; what the page sends passes as gradio would pass it. The event's function then says it: a
    gr.Error for the API and the Generate tab, a warning that changes no output for the page's own decodes
    (gradio marked every output of the Reconstruct tab as failed on a typo in its k box)."""
    import asyncio
    import warnings

    import gradio as gr
    from flexvid.app_ui import Refused, page_errors, quiet
    k = quiet(gr.Slider(1, 32, value=4, step=1, label="k"))
    seed = quiet(gr.Number(0, label="seed", precision=0, minimum=0, maximum=2**31 - 1))
    for box, value, said in ((k, "4", "k must be a number, got '4'"), (k, None, "k must be a number, got None"),
                             (k, float("nan"), "k must be a number, got nan"), (k, True, "k must be a number"),
                             (seed, 1.5, "seed must be a whole number, got 1.5"),
                             (seed, float("nan"), "seed must be a whole number, got nan"),
                             (seed, 10**400, "seed: value 10"), (seed, -1, "seed: value -1 is less than minimum"),
                             (k, 40, "k: value 40 is greater than maximum value 32")):  # gradio's own, named
        refused = box.preprocess(value)
        assert isinstance(refused, Refused) and re.search(re.escape(said), refused.message), (value, refused)
    assert k.preprocess(4) == 4 and k.preprocess(2.0) == 2.0 and seed.preprocess(3.0) == 3
    assert seed.preprocess(None) is None
    ran = []

    def decode(clip_id, k_value):
        ran.append(k_value)
        return "decoded"
    strict, lenient = page_errors(decode), page_errors(decode, lenient=True)
    with pytest.raises(gr.Error, match="k: value 40 is greater") as e:
        asyncio.run(strict("c", k.preprocess(40)))
    assert e.value.print_exception is False
    with pytest.warns(UserWarning, match="k: value 40 is greater"):  # (gradio's toast, outside a request)
        assert asyncio.run(lenient("c", k.preprocess(40))) == gr.skip()
    assert ran == []  # no work for a refused value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert asyncio.run(lenient("c", k.preprocess(8))) == "decoded" and ran == [8]


def test_long_names_are_shortened_to_fit_file_names():
    from flexvid.runtime import short_name
    assert short_name("clip.mp4") == "clip.mp4"
    long = short_name("b" * 300 + ".mp4")
    assert long == "b" * 113 + "....mp4" and len(long.encode()) == 120
    wide = short_name("\U0001F3A5" * 100 + ".webm")  # 4 bytes a character: cut at a character, not inside one
    assert wide.endswith("....webm") and len(wide.encode()) <= 120 and wide[:-8] == "\U0001F3A5" * 28
    assert short_name("x" * 200 + "." + "y" * 30) == "x" * 117 + "..."  # a long "extension" is no extension


def test_a_request_unwanted_by_the_time_it_has_the_model_does_no_model_work(rt, clip_file):
    """runtime.WANTED (the app's check_wanted) is asked once a model slot is had: a request cancelled while it
    waited for the model stops there, and MODEL_HELD_SINCE says when the slot was had."""
    import contextvars

    from flexvid import runtime as runtime_module

    class Gone(Exception):
        pass

    def unwanted():
        assert runtime_module.MODEL_HELD_SINCE.get() is not None
        raise Gone

    ctx = contextvars.copy_context()
    ctx.run(runtime_module.WANTED.set, unwanted)
    with pytest.raises(Gone):
        ctx.run(rt.add_clip, clip_file)
    assert rt.stats["tokenize"] == 0 and not rt._clips
    clip = rt.add_clip(clip_file)
    with pytest.raises(Gone):
        ctx.run(rt.decode, clip, [2], Sampler(1, 1.0, "cfg", 0))
    assert rt.counter.calls == 0 and runtime_module.MODEL_HELD_SINCE.get() is None
    assert list(rt.decode(clip, [2], Sampler(1, 1.0, "cfg", 0))) == [2] and rt.counter.calls == 1


def test_the_library_at_best_of_4_and_dtype_auto_gives_the_apps_clip(tmp_path, monkeypatch):
    """A speaker rehearses with `flexvid generate --best-of 4 --dtype auto --seed S` and shows the app's clip
    for the same prompt and seed (the embedded models, the shipped space.yaml)."""
    from flexvid.generate import DEFAULT_MODELS, VideoGenerator
    for var in ("FLEXVID_TOKENIZER", "FLEXVID_TEXT_GENERATOR", "FLEXVID_CLASS_GENERATOR", "FLEXVID_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings(REPO / "space.yaml")
    assert s.best_of == 4 and s.dtype == "auto"
    s.generators = {"text": s.generators["text"]}
    rt = Runtime(s, out_dir=str(tmp_path / "out"))
    rt.load_generators()
    g = rt.generate("text", "a large red circle moving left", seed=0)
    gen = VideoGenerator.from_pretrained(DEFAULT_MODELS["text"], dtype="auto")
    video = gen.generate(["a large red circle moving left"], k=g.ks[0], seed=0, best_of=4)[0]
    assert np.array_equal(video_io.from_model(video), g.results[g.ks[0]].video)


def test_psnr_and_ssim_are_of_the_clips_own_frames_not_its_padding(rt, tmp_path):
    """A 10-frame clip is padded to 13 (1 + 4n) with its last frame: the page says so, and its metrics are
    those of its own 10 frames against theirs, as eval-tokenizer and reconstruct measure them."""
    video_io.write_video(tmp_path / "ten.mp4", shapes.make_clip(0, 3, 17).video[:10], fps=8)
    clip = rt.add_clip(str(tmp_path / "ten.mp4"))
    assert len(clip.frames) == 13 and clip.own == 10
    assert "padded from 10 to 13 frames (1 + 4n) with its last frame; the videos, PSNR and SSIM are of its own 10" \
        in clip.notes
    v = rt.view(clip.id, 2, 1, 3.0, "cfg", 0)
    m, rec = v.metrics[2], v.metrics[2].video
    assert m.psnr == pytest.approx(psnr(clip.frames[:10], rec[:10])) and m.psnr != pytest.approx(psnr(clip.frames, rec))
    assert "Padded from 10 to 13 frames" in v.summary  # (the first note, capitalised)
    # its length and bitrate are its own 10 frames' (1.25 s); the files say which clip; one step is singular
    assert "for 1.25 s = **" in v.token_caption and "decoder 1 sampling step," in v.summary
    assert all("_ten_" in Path(f).name for f in (v.compare, v.heatmap, v.ladder, *v.downloads))
    for f in (v.compare, v.heatmap, v.ladder, *v.downloads[:-2]):  # the clip's own 10 frames, not the padding
        assert len(video_io.read_video(f)[0]) == 10, f
    assert v.figure.layout.title.text == "reconstruction quality vs k<br>decoder 1 step, guidance 3 cfg, seed 0"
    saved = np.load(v.downloads[-1])
    assert int(saved["own_frames"]) == 10 and int(saved["frames"]) == 13 and str(saved["dtype"]) in ("float32", "bfloat16")
    whole = rt.add_clip(str(video_io.write_video(tmp_path / "nine.mp4", shapes.make_clip(0, 3, 17).video[:9], fps=8)))
    assert whole.own == len(whole.frames) == 9 and not any("padded" in n for n in whole.notes)
