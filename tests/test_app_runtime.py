"""Tests for flexvid.runtime (the app's runtime) and the Space card: caching, input checks, bit
arithmetic, downloads, settings. A small random tokenizer stands in for the embedded one."""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml

from conftest import small_pipeline
from flexvid import shapes, video_io
from flexvid.runtime import (Limits, ModelMissing, Runtime, Settings, UserError, bits_and_bitrate, error_heatmap,
                             load_settings, resolve_model, token_image)

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
    assert rt.add_clip(str(copy)).id == clip.id == again.id  # keyed by content, not name
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
    t, K = clip.tokens.shape
    assert v.token_image.ndim == 3 and v.token_image.shape[2] == 3
    assert v.token_image.shape[0] % t == 0 and v.token_image.shape[1] % K == 0
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


def test_long_clips_are_trimmed(pipe, tmp_path):
    rt = Runtime(Settings(limits=Limits(max_seconds=1.0)), pipeline=pipe, out_dir=str(tmp_path / "out"))
    path = video_io.write_video(tmp_path / "long.mp4", shapes.make_clip(2, 4, 33).video, fps=8)
    clip = rt.add_clip(path)
    assert len(clip.frames) == 9 and any("trimmed" in n for n in clip.notes)
    rt = Runtime(Settings(limits=Limits(max_frames=13)), pipeline=pipe, out_dir=str(tmp_path / "out2"))
    assert len(rt.add_clip(path).frames) == 13


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


def test_integral_floats_from_sliders_are_accepted(rt, clip_file):
    clip = rt.add_clip(clip_file)
    v = rt.view(clip.id, k=4.0, steps=2.0, guidance=1, seed=3.0)
    assert v.k == 4 and v.sampler.steps == 2 and v.sampler.seed == 3


# ----------------------------------------------------------------------------- model, generators, settings
def test_missing_model_gives_a_clear_error(tmp_path, capsys):
    with pytest.raises(ModelMissing, match="not found"):
        resolve_model("assets/no_such_tokenizer", str(REPO))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelMissing, match="config.json"):
        resolve_model(str(tmp_path / "empty"), str(tmp_path))
    assert resolve_model("someone/some-model", str(tmp_path)) == "someone/some-model"  # a Hub repo id
    rt = Runtime(Settings(tokenizer=str(tmp_path / "nope")), out_dir=str(tmp_path / "out"))
    with pytest.raises(ModelMissing, match="FLEXVID_TOKENIZER"):
        rt.load()
    from flexvid.app_ui import main
    assert main(["--tokenizer", str(tmp_path / "nope")]) == 2
    assert "tokenizer folder not found" in capsys.readouterr().err


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
    assert rt.generator("text") == "model" and rt.generator("text") == "model"
    assert built == [1]
    with pytest.raises(UserError, match="no generator"):
        rt.generator("class")


def test_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("FLEXVID_TOKENIZER", raising=False)
    s = load_settings(REPO / "space.yaml")
    assert s.tokenizer == "assets/tokenizer" and s.generators == {} and s.limits.max_upload_mb > 0
    monkeypatch.setenv("FLEXVID_TOKENIZER", "/models/tok")
    assert load_settings(REPO / "space.yaml").tokenizer == "/models/tok"
    assert load_settings(REPO / "space.yaml", tokenizer="a/b").tokenizer == "a/b"
    bad = tmp_path / "bad.yaml"
    bad.write_text("app:\n  limits:\n    max_upload_gb: 1\n")
    with pytest.raises(ValueError, match="max_upload_gb"):
        load_settings(bad)


def test_examples_are_bundled_and_labelled():
    from flexvid.app_ui import EXAMPLES, examples
    files, labels = examples(REPO / "assets" / "examples")
    assert [Path(f[0]).name for f in files] == list(EXAMPLES)
    assert any("synthetic" in label and "not real" in label for label in labels)
    for (f,) in files:
        frames, fps = video_io.read_video(f)
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
