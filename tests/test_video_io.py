"""Tests for flexvid.video_io: reading, preprocessing, model conversion, writing and tiling."""
from __future__ import annotations

import os
import re
import tracemalloc
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

from flexvid import video_io as vio
from flexvid.video_io import VideoError

T_CLIP, H_CLIP, W_CLIP, FPS_CLIP = 48, 72, 96, 30.0
GRAY = 128
RED = (220, 30, 30)
SQ = 16


def square_x(i: int) -> int:
    return 4 + i


def synthetic_clip() -> np.ndarray:
    """RGB uint8 [48, 72, 96, 3]: a red 16 x 16 square moving right one pixel per frame on gray."""
    clip = np.full((T_CLIP, H_CLIP, W_CLIP, 3), GRAY, dtype=np.uint8)
    y = (H_CLIP - SQ) // 2
    for i in range(T_CLIP):
        x = square_x(i)
        clip[i, y : y + SQ, x : x + SQ] = RED
    return clip


def write_cv2(path, frames: np.ndarray, fps: float, fourcc: str) -> None:
    t, h, w, _ = frames.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"cv2.VideoWriter cannot write {fourcc}"
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return synthetic_clip()


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory, clip) -> dict[str, str]:
    d = tmp_path_factory.mktemp("clips")
    files = {"mp4": str(d / "clip.mp4"), "avi": str(d / "clip.avi")}
    write_cv2(files["mp4"], clip, FPS_CLIP, "mp4v")
    write_cv2(files["avi"], clip, FPS_CLIP, "MJPG")
    return files


def indexed_frames(t: int, h: int = 4, w: int = 4) -> np.ndarray:
    """Frame i is filled with the value i, so the selected source frames can be read back."""
    return np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, h, w, 3)).copy()


def pyav_info(path: str) -> dict:
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "rate": stream.average_rate,
            "frames": np.stack(frames),
        }


# ----------------------------------------------------------------------------- reading
@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_read_video_roundtrip(clip_files, clip, kind):
    frames, fps = vio.read_video(clip_files[kind])
    assert frames.dtype == np.uint8
    assert frames.shape == (T_CLIP, H_CLIP, W_CLIP, 3)
    assert fps == pytest.approx(FPS_CLIP, rel=1e-3)
    # lossy codecs: close on average, and the square is red in RGB order where it should be
    assert np.abs(frames.astype(int) - clip.astype(int)).mean() < 6
    y = H_CLIP // 2
    for i in (0, 20, 47):
        r, g, b = frames[i, y, square_x(i) + SQ // 2].astype(int)
        assert r > 180 and g < 80 and b < 80, (i, r, g, b)
        assert abs(int(frames[i, y, square_x(i) + SQ + 6, 0]) - GRAY) < 20  # gray behind the square


def test_read_video_max_frames(clip_files, clip):
    frames, _ = vio.read_video(clip_files["avi"], max_frames=5)
    assert frames.shape == (5, H_CLIP, W_CLIP, 3)
    assert np.abs(frames.astype(int) - clip[:5].astype(int)).mean() < 6
    frames, _ = vio.read_video(clip_files["avi"], max_frames=1000)
    assert frames.shape[0] == T_CLIP


def test_read_video_max_bytes(clip_files):
    size = os.path.getsize(clip_files["mp4"])
    with pytest.raises(VideoError, match=rf"too large: {size} bytes .* limit of {size - 1} bytes"):
        vio.read_video(clip_files["mp4"], max_bytes=size - 1)
    frames, _ = vio.read_video(clip_files["mp4"], max_bytes=size)
    assert frames.shape[0] == T_CLIP


def test_read_video_fps_fallback(tmp_path, monkeypatch, clip_files):
    real = cv2.VideoCapture

    class NanFps:
        def __init__(self, *args):
            self._cap = real(*args)

        def get(self, prop):
            return float("nan") if prop == cv2.CAP_PROP_FPS else self._cap.get(prop)

        def __getattr__(self, name):
            return getattr(self._cap, name)

    monkeypatch.setattr(vio.cv2, "VideoCapture", NanFps)
    assert vio.source_fps(cv2.VideoCapture(clip_files["avi"])) == 8.0
    frames, fps = vio.read_video(clip_files["avi"], max_frames=2)  # the timestamps say the rate
    assert abs(fps - FPS_CLIP) < 1e-6 and frames.shape[0] == 2

    def no_pyav(*args, **kwargs):
        raise av.error.InvalidDataError(1, "no")

    monkeypatch.setattr(av, "open", no_pyav)  # nor do they: the default rate
    frames, fps = vio.read_video(clip_files["avi"], max_frames=2)
    assert fps == 8.0 and frames.shape[0] == 2


def _vfr_webm(path, gaps_ms):
    """A VP9 webm of len(gaps_ms) + 1 grey frames (frame i at level 12 i) with these gaps between them: what a
    screen recorder or a browser's MediaRecorder writes. OpenCV reports the rate of its shortest gap."""
    pts = np.concatenate([[0], np.cumsum(gaps_ms)]).astype(int)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libvpx-vp9", rate=1000 // min(gaps_ms))
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(pts):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 12 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = int(t), Fraction(1, 1000)
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return pts / 1000


def test_a_variable_frame_rate_keeps_its_speed(tmp_path):
    """Ten frames 40 ms apart, a 6 s pause, ten more: read at the reported 25 fps, the clip lasts its own 6.7 s
    (not the 0.8 s of 20 frames at 25 fps), the paused frame fills the pause, and the playable copy and the
    app's reading keep that length too."""
    times = _vfr_webm(tmp_path / "vfr.webm", [40] * 9 + [6000] + [40] * 9)
    cap = cv2.VideoCapture(str(tmp_path / "vfr.webm"))
    assert cap.get(cv2.CAP_PROP_FPS) == 25  # what OpenCV says of it
    cap.release()
    frames, fps = vio.read_video(tmp_path / "vfr.webm")
    assert fps == 25 and abs(len(frames) / fps - (times[-1] + 1 / fps)) <= 1 / fps
    level = frames[:, 24, 32, 1].astype(int)
    assert abs(level[int(3.0 * fps)] - 12 * 9) <= 4  # 3 s in: the last frame before the pause
    assert abs(level[-1] - 12 * 19) <= 4 and abs(level[0]) <= 4
    # a constant rate is left as it was: each frame once
    vio.write_video(tmp_path / "cfr.mp4", np.repeat(np.arange(0, 240, 12, dtype=np.uint8)[:, None, None, None],
                                                    1, 0) * np.ones((1, 48, 64, 3), np.uint8), fps=25)
    cfr, cfps = vio.read_video(tmp_path / "cfr.mp4")
    assert cfps == 25 and len(cfr) == 20 and np.all(np.abs(np.diff(cfr[:, 24, 32, 1].astype(int)) - 12) <= 4)
    copy = vio.write_playable(tmp_path / "vfr.webm", tmp_path / "copy.mp4")
    again, afps = vio.read_video(copy)
    assert abs(len(again) / afps - len(frames) / fps) <= 1 / fps


def _gif(path, delays_ms: list[int]) -> None:
    """A 64 x 48 GIF of len(delays_ms) grey frames, frame i at level 25 i, each shown for its delay."""
    import PIL.Image
    frames = [PIL.Image.fromarray(np.full((48, 64, 3), 25 * i, np.uint8)) for i in range(len(delays_ms))]
    frames[0].save(path, save_all=True, duration=delays_ms, append_images=frames[1:], loop=0)


def test_a_gif_is_read_by_its_frame_delays(tmp_path):
    """A GIF's frames are shown for their delays: one whose last frame is held 3 s (OpenCV reports its
    average rate, 10 frames over 3.9 s, 2.56 fps) is read at its short delays' 10 fps for its whole 3.9 s,
    every frame once and the last one held; one with uneven delays shows each frame from its own time to the
    next's; the playable copy and the app's reading keep the same length."""
    _gif(tmp_path / "held.gif", [100] * 9 + [3000])
    cap = cv2.VideoCapture(str(tmp_path / "held.gif"))
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 10 / 3.9) < 1e-6  # what OpenCV says of it
    assert abs(vio.source_timing(cap, tmp_path / "held.gif")[0] - 10) < 1e-6
    cap.release()
    counts = {}
    frames, fps = vio.read_video(tmp_path / "held.gif", counts=counts)
    levels = frames[:, 24, 32, 0].astype(int)
    assert fps == 10 and len(frames) == 39, (fps, len(frames))
    assert np.all(np.abs(levels - np.minimum(np.arange(39), 9) * 25) <= 2), levels
    assert counts["dropped"] == 0 and counts["repeated"] == 29
    _gif(tmp_path / "uneven.gif", [100, 500, 100, 500] + [100] * 6)
    frames, fps = vio.read_video(tmp_path / "uneven.gif")
    shown = [0] + [1] * 5 + [2] + [3] * 5 + [4, 5, 6, 7, 8, 9]  # 0.1 s slots: frame 1 from 0.1 s to 0.6 s
    assert fps == 10 and np.all(np.abs(frames[:, 24, 32, 0].astype(int) - np.array(shown) * 25) <= 2)
    # a fast part among slower frames: read at the fast part's rate, so that none of its frames is lost
    _gif(tmp_path / "mixed.gif", [100] * 4 + [200] * 5)  # (their median, 0.2 s, would pass over frames 1 and 3)
    frames, fps = vio.read_video(tmp_path / "mixed.gif")
    shown = list(range(4)) + [i for i in range(4, 9) for _ in (0, 1)]  # 0.1 s slots: frames 4-8 twice each
    assert fps == 10 and np.all(np.abs(frames[:, 24, 32, 0].astype(int) - np.array(shown) * 25) <= 2), fps
    copy = vio.write_playable(tmp_path / "held.gif", tmp_path / "held.mp4")
    again, afps = vio.read_video(copy)
    assert afps == 10 and len(again) == 39
    # a video's timing: the rate OpenCV reports, its end by its last frame's duration, nearest frames
    vio.write_video(tmp_path / "cfr.mp4", np.zeros((5, 48, 64, 3), np.uint8), fps=25)
    cap = cv2.VideoCapture(str(tmp_path / "cfr.mp4"))
    timing = vio.source_timing(cap, tmp_path / "cfr.mp4")
    cap.release()
    assert timing.fps == 25 and abs(timing.end_s - 5 / 25) < 1e-6 and not timing.hold


def _timed_h264(path, times_s, size=(64, 48), rate=30, durations=None, fmt=None, rotation=None, aspect=None,
                tb=Fraction(1, 1000), levels=None):
    """An H.264 file of len(times_s) grey frames (frame i at level 2 i mod 256, or levels[i]), frame i at
    times_s[i] by its timestamp, the stream's header saying `rate`; `durations` (s) set the packets' own."""
    w, h = size
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt, s.options = w, h, "yuv420p", {"bf": "0"}
        s.time_base = s.codec_context.time_base = tb
        if aspect:
            s.codec_context.sample_aspect_ratio = aspect
        if rotation:
            s.set_display_rotation(rotation)
        packets = []
        for i, t in enumerate(times_s):
            level = 2 * i % 256 if levels is None else levels[i]
            f = av.VideoFrame.from_ndarray(np.full((h, w, 3), level, np.uint8), format="rgb24")
            f.pts, f.time_base = round(t / tb), tb
            packets += s.encode(f)
        packets += s.encode()
        for p, d in zip(packets, durations or [None] * len(packets)):
            if d is not None:
                p.duration = round(d / tb)
            c.mux(p)


def test_the_timestamps_say_the_rate_where_the_header_is_wrong(tmp_path):
    """A browser's MediaRecorder webm (a 1 ms time base, jittered frames about 33 ms apart, no frame duration:
    OpenCV reports 1000 fps) is read at its timestamps' 30 fps, each frame once; a header saying 1 fps of
    30 fps frames drops none; a header near the timestamps' rate stays (a phone's 29.97 is not made 30)."""
    jitter = np.cumsum([0] + list(np.random.default_rng(0).integers(30, 37, 59))) / 1000
    with av.open(str(tmp_path / "rec.webm"), "w", options={"live": "1"}) as c:
        s = c.add_stream("libvpx", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(jitter):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 4 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = round(t * 1000), Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = bytearray((tmp_path / "rec.webm").read_bytes())  # Chrome writes no DefaultDuration (EBML 0x23E383)
    i = data.find(b"\x23\xe3\x83")
    n = 4 + (data[i + 3] & 0x7F)
    data[i:i + n] = bytes([0xEC, 0x80 | (n - 2)]) + bytes(n - 2)  # a Void element in its place
    (tmp_path / "rec.webm").write_bytes(data)
    assert cv2.VideoCapture(str(tmp_path / "rec.webm")).get(cv2.CAP_PROP_FPS) == 1000  # what OpenCV says of it
    counts = {}
    frames, fps = vio.read_video(tmp_path / "rec.webm", counts=counts)
    assert abs(fps - 1 / np.diff(jitter).mean()) < 0.5 and 57 <= len(frames) <= 63, (fps, len(frames))
    assert counts["dropped"] + counts["repeated"] <= 6, counts  # jitter: a frame or two repeated or passed over
    _timed_h264(tmp_path / "low.mkv", np.arange(90) / 30, rate=1)
    counts = {}
    frames, fps = vio.read_video(tmp_path / "low.mkv", counts=counts)
    assert abs(fps - 30) < 0.1 and len(frames) == 90 and counts["dropped"] == 0, (fps, len(frames), counts)
    _timed_h264(tmp_path / "ntsc.mp4", np.arange(30) * 1001 / 30000, rate=Fraction(30000, 1001),
                tb=Fraction(1, 30000))
    assert vio.read_video(tmp_path / "ntsc.mp4")[1] == pytest.approx(30000 / 1001)


def test_a_held_last_frame_keeps_its_hold(tmp_path, monkeypatch):
    """A screen recording's last frame shown 5 s (its packet's duration) after 61 frames at 30 fps: 7 s read,
    in an mp4 and an mkv, with no "cut short" note; a file longer than the packets read from its start
    finds its end's after a seek; a constant-rate file gains no frame; a header rate that set the packets'
    durations (all 1 s of 30 fps frames) holds nothing."""
    times = list(np.arange(61) / 30)
    for name in ("hold.mp4", "hold.mkv"):
        _timed_h264(tmp_path / name, times, durations=[1 / 30] * 60 + [5.0])
        counts = {}
        frames, fps = vio.read_video(tmp_path / name, counts=counts)
        assert abs(fps - 30) < 0.1 and abs(len(frames) / fps - 7) < 0.05, (name, fps, len(frames))
        assert counts["dropped"] == 0 and vio.ended_early(counts, tmp_path / name) == ""
        assert np.all(frames[60:, 24, 32, 0] == frames[-1, 24, 32, 0])
        assert len(vio.prepare_video(frames, fps, 8.0, 32)) == 57
    monkeypatch.setattr(vio, "TIMING_BYTES", 2000)  # the seek to the end
    assert abs(len(vio.read_video(tmp_path / "hold.mp4")[0]) / 30 - 7) < 0.05
    monkeypatch.undo()
    _timed_h264(tmp_path / "cfr.mp4", times, durations=[1 / 30] * 61)
    assert len(vio.read_video(tmp_path / "cfr.mp4")[0]) == 61
    _timed_h264(tmp_path / "low.mkv", times, rate=1, durations=[1.0] * 61)
    assert len(vio.read_video(tmp_path / "low.mkv")[0]) == 61


def _encode(path, frames, options, container_options=None):
    """frames (T, 48, 64, 3) as H.264 at 30 fps with these encoder and container options."""
    with av.open(str(path), "w", options=container_options or {}) as c:
        st = c.add_stream("libx264", rate=30, options=options)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for frame in frames:
            for p in st.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)


def test_the_end_by_the_packets_holds_only_where_the_frames_reach_it(tmp_path):
    """Where the packets' end is no hold of the last frame, no frame is added: 29.97 fps in an mkv, whose
    millisecond timestamps put the last frame's end a little past N / fps; an mp4 whose data is zeros from
    60% on (the index lists every packet; the frames end early and are said to); an mp4 whose edit list
    ends at half its media; a stream copy that starts mid-GOP (its first frames are not decoded)."""
    import struct
    for n in (8, 16, 19, 27, 38):
        _timed_h264(tmp_path / "ntsc.mkv", np.arange(n) * 1001 / 30000, rate=Fraction(30000, 1001))
        assert len(vio.read_video(tmp_path / "ntsc.mkv")[0]) == n, n
    noise = np.random.default_rng(0).integers(0, 256, (300, 48, 64, 3), dtype=np.uint8)
    _encode(tmp_path / "whole.mp4", noise, {"g": "30"}, {"movflags": "+faststart"})
    data = bytearray((tmp_path / "whole.mp4").read_bytes())
    data[int(len(data) * 0.6):] = bytes(len(data) - int(len(data) * 0.6))
    (tmp_path / "zeros.mp4").write_bytes(data)
    counts = {}
    frames, _ = vio.read_video(tmp_path / "zeros.mp4", counts=counts)
    assert 100 < len(frames) < 250 and counts["repeated"] == 0 and "cut short" in vio.ended_early(counts, tmp_path / "zeros.mp4")
    levels = np.repeat(np.arange(0, 240, 2, dtype=np.uint8)[:, None, None, None], 48, 1).repeat(64, 2).repeat(3, 3)
    _encode(tmp_path / "src.mp4", levels[:60], {})  # 2 s with B-frames (the muxer writes an elst), cut to 1 s
    data = bytearray((tmp_path / "src.mp4").read_bytes())
    i = data.find(b"elst")
    data[i + 12:i + 16] = struct.pack(">I", struct.unpack(">I", data[i + 12:i + 16])[0] // 2)
    (tmp_path / "elst.mp4").write_bytes(data)
    assert len(vio.read_video(tmp_path / "elst.mp4")[0]) == 30
    _encode(tmp_path / "gop.mp4", levels, {"g": "30", "keyint_min": "30", "sc_threshold": "0", "bf": "0"})
    with av.open(str(tmp_path / "gop.mp4")) as src, av.open(str(tmp_path / "copy.mkv"), "w") as out:
        si = src.streams.video[0]
        so = out.add_stream_from_template(si)
        tick = round(1 / (30 * si.time_base))
        for p in src.demux(si):  # frames 40 .. 99: from the middle of a GOP, its first 20 frames undecodable
            if p.size and 40 * tick <= p.pts < 100 * tick:
                p.pts, p.dts, p.stream = p.pts - 40 * tick, p.dts - 40 * tick, so
                out.mux(p)
    counts = {}
    frames, _ = vio.read_video(tmp_path / "copy.mkv", counts=counts)
    assert len(frames) == 40 and counts["repeated"] == 0, (len(frames), counts)


def test_a_variable_rate_keeps_its_motion_and_a_header_with_no_rate_gives_way(tmp_path):
    """A screen recording idle for 75 s at its start and end (frames 0.5 s apart), 2 s of motion at 30 fps between,
    is read at 30 fps in an mkv (header 30) and an mp4 (whose header says the average, 3.75 fps), not at the
    idle parts' 2 fps; a header rate OpenCV cannot use (2000 fps: read as 8) gives way to the timestamps'
    10 fps; a last keyframe far from the end (one keyframe in 200 frames) keeps the last frame's 5 s hold;
    a one-frame mkv shown 3 s lasts 3 s; a GIF of delays 0.1 s and 2 s shows its short frame once."""
    idle = list(np.arange(150) * 0.5)  # more than a few packets: a sample of the file's ends sees idle parts only
    times = idle + [75 + i / 30 for i in range(60)] + [77 + 0.5 * i for i in range(150)]
    for name in ("idle.mkv", "idle.mp4"):
        _timed_h264(tmp_path / name, times, rate=30)
        frames, fps = vio.read_video(tmp_path / name, max_frames=1)
        assert abs(fps - 30) < 0.5, (name, fps)
    _timed_h264(tmp_path / "odd.mkv", np.arange(20) / 10, rate=2000)
    assert cv2.VideoCapture(str(tmp_path / "odd.mkv")).get(cv2.CAP_PROP_FPS) == 2000
    frames, fps = vio.read_video(tmp_path / "odd.mkv")
    assert fps == pytest.approx(10) and len(frames) == 20
    _timed_h264(tmp_path / "gop.mp4", np.arange(200) / 30, durations=[1 / 30] * 199 + [5.0])
    frames, fps = vio.read_video(tmp_path / "gop.mp4")
    assert abs(len(frames) / fps - (199 / 30 + 5)) < 0.05
    _timed_h264(tmp_path / "still.mkv", [0.0], durations=[3.0])
    counts = {}
    frames, fps = vio.read_video(tmp_path / "still.mkv", counts=counts)
    assert abs(len(frames) / fps - 3) < 0.05 and vio.ended_early(counts, tmp_path / "still.mkv") == ""
    import PIL.Image
    pair = [PIL.Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (0, 200)]
    pair[0].save(tmp_path / "pair.gif", save_all=True, append_images=pair[1:], duration=[100, 2000])
    frames, fps = vio.read_video(tmp_path / "pair.gif")
    assert fps == 10 and [int(v > 100) for v in frames[:, 8, 8, 0]] == [0] + [1] * 20


def test_after_a_pause_of_a_variable_rate_the_next_frame_shows_at_its_own_time(tmp_path):
    """2 s at 30 fps, then nothing until 5 s (an idle screen): the frame at 5 s shows from the 5 s slot, not
    from halfway through the pause; the frames at 30 fps are each shown once."""
    times = [i / 30 for i in range(60)] + [5 + i / 30 for i in range(60)]
    _timed_h264(tmp_path / "pause.mp4", times, rate=30, durations=[1 / 30] * 120, levels=[40] * 60 + [200] * 60)
    frames, fps = vio.read_video(tmp_path / "pause.mp4")
    after = frames[:, 24, 32, 0] > 120
    assert abs(fps - 30) < 0.1 and int(np.argmax(after)) == 150 and after[150:].all(), (fps, int(np.argmax(after)))
    assert len(frames) == 210


def test_the_grid_of_frame_delays_is_their_fast_end_by_display_time():
    assert vio.delay_grid([0.1] * 9 + [3.0]) == 0.1
    assert vio.delay_grid([0.1] * 4 + [0.2] * 5) == 0.1  # a fast part: its rate (the median, 0.2 s, skips frames)
    assert vio.delay_grid([0.1] * 9 + [0.02]) == 0.1  # one flash of 20 ms among ten: not a 50 fps grid over all
    assert vio.delay_grid([0.1] * 9 + [0.01]) == 0.1  # 10 ms is shown as 100 ms, as a browser shows it
    assert vio.delay_grid([0.001] * 100) == 0.1 and vio.delay_grid([0.015] * 100) == vio.DELAY_FLOOR_S == 0.02
    assert vio.delay_grid([0.04] * 50 + [1.0] * 5) == 0.04 and vio.delay_grid([]) == 0.0
    assert vio.delay_grid([0.1, 2.0]) == 0.1  # a frame held long after a short one: the short one's slot


def test_an_animated_png_or_webp_is_read_by_its_frame_delays_as_a_gif_is(tmp_path):
    """Delays 0.1 s x 3, 1 s, 0.05 s x 4 and a last frame held 2 s: 3.5 s at the typical delay's 10 fps
    from a GIF, an APNG and an animated WebP alike (OpenCV reports 4 frames at 2.12 fps of the last two)."""
    import PIL.Image
    images = [PIL.Image.fromarray(np.full((32, 48, 3), 25 * i, np.uint8)) for i in range(9)]
    delays = [100, 100, 100, 1000, 50, 50, 50, 50, 2000]
    read = {}
    for name in ("a.gif", "a.png", "a.webp"):
        images[0].save(tmp_path / name, save_all=True, append_images=images[1:], duration=delays, loop=0,
                       **({"lossless": True} if name.endswith("webp") else {}))
        frames, fps = vio.read_video(tmp_path / name)
        read[name] = (fps, len(frames), [round(v / 25) for v in frames[:, 16, 24, 0]])
    # 0.1 s slots (the 0.05 s frames show for 0.2 s of 3.5: a 20 fps grid would hold every frame twice for them)
    shown = [0, 1, 2] + [3] * 10 + [4, 6] + [8] * 20  # a 0.05 s frame between two is passed over
    assert read["a.gif"] == (10, 35, shown) and read["a.png"] == read["a.gif"] == read["a.webp"], read


def test_a_break_in_an_mpeg_ts_timestamps_is_no_pause(tmp_path, monkeypatch):
    """Two 2 s MPEG-TS recordings joined (the second's timestamps start at 600 s) read as 4 s, not 602 s of
    one frozen frame; a read that would still take more than MAX_READ_BYTES is refused in one line."""
    parts = []
    for name, start in (("a.ts", 0), ("b.ts", 600)):
        _timed_h264(tmp_path / name, start + np.arange(50) / 25, rate=25, fmt="mpegts", tb=Fraction(1, 90000))
        parts.append((tmp_path / name).read_bytes())
    (tmp_path / "joined.ts").write_bytes(b"".join(parts))
    counts = {}
    frames, fps = vio.read_video(tmp_path / "joined.ts", counts=counts)
    assert fps == 25 and len(frames) == 100 and counts["repeated"] == 0, (fps, len(frames), counts)
    assert vio.ended_early(counts, tmp_path / "joined.ts") == ""  # nothing is missing: the header spans the break
    monkeypatch.setattr(vio, "MAX_READ_BYTES", 60 * 64 * 48 * 3)
    with pytest.raises(VideoError, match=r"more than .* GiB \(60 frames of 64 x 48 at 25 fps so far\).*max_frames"):
        vio.read_video(tmp_path / "joined.ts")


def test_a_turned_video_with_wide_pixels_is_stretched_on_its_right_side(tmp_path):
    """A 96 x 48 picture of 2:1 pixels shows 192 x 48; turned a quarter, 48 x 192 (the stored width is up)."""
    for rotation, shape in ((None, (48, 192)), (90, (192, 48))):
        _timed_h264(tmp_path / "sar.mp4", np.arange(5) / 8, size=(96, 48), rate=8, aspect=Fraction(2, 1),
                    rotation=rotation)
        assert vio.read_video(tmp_path / "sar.mp4")[0].shape[1:3] == shape
        copy, _ = vio.read_video(vio.write_playable(tmp_path / "sar.mp4", tmp_path / "copy.mp4"))
        assert copy.shape[1:3] == shape


def test_a_file_cut_short_is_said(tmp_path):
    """A download cut short decodes to its first part: said, by time against the header's length, for an mp4
    with its index in front and for a webm; not for whole files (nor for a variable rate's webm, whose
    frame count is only an estimate), nor for a read stopped by max_frames, nor for a dict used before."""
    from flexvid import shapes
    vio.write_video(tmp_path / "whole.mp4", shapes.make_clip(0, 1, 65).video, fps=8)
    _vfr_webm(tmp_path / "vfr.webm", [40] * 9 + [6000] + [40] * 9)
    for name in ("whole.mp4", "vfr.webm"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[:int(len(data) * 0.7)])
        counts = {}
        whole, fps = vio.read_video(tmp_path / name, counts=counts)
        assert vio.ended_early(counts, tmp_path / name) == "", (name, counts)
        cut_counts = {}
        cut, fps = vio.read_video(tmp_path / f"cut_{name}", counts=cut_counts)
        assert 0 < len(cut) < len(whole)
        said = vio.ended_early(cut_counts, tmp_path / f"cut_{name}")
        header = len(whole) / fps
        assert f"though its header says {header:.2f} s (cut short or damaged?)" in said, (name, cut_counts)
        assert f"its frames end at {len(cut) / fps:.2f} s" in said
        vio.read_video(tmp_path / f"cut_{name}", counts=cut_counts, max_frames=2)  # the same dict again
        assert vio.ended_early(cut_counts, tmp_path / f"cut_{name}") == ""


def _encode_frames(c, codec: str, n: int, options: dict | None = None):
    """n grey 64 x 48 frames at 10 fps into the open container c; the video stream is returned."""
    v = c.add_stream(codec, rate=10)
    v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
    v.options = options or {}
    for i in range(n):
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (7 * i) % 255, np.uint8), format="rgb24")
        f.pts, f.time_base = i, Fraction(1, 10)
        for pk in v.encode(f):
            c.mux(pk)
    for pk in v.encode():
        c.mux(pk)
    return v


def test_whole_files_whose_header_outlasts_their_video_are_not_called_cut_short(tmp_path):
    """Where a container's length is not its video's, nothing is said: a webm whose audio runs 5 s past its
    3 s of video, an mp4 trimmed by stream copy (`ffmpeg -ss 2.5 -c copy`: an edit list hides the frames
    before the cut, which its frame count still counts), a GIF whose last frame is held."""
    with av.open(str(tmp_path / "audio.webm"), "w") as c:
        a = c.add_stream("libopus", rate=48000)
        _encode_frames(c, "libvpx", 30)
        for t in range(0, 8 * 48000, 960):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="flt", layout="mono")
            af.sample_rate, af.pts, af.time_base = 48000, t, Fraction(1, 48000)
            for pk in a.encode(af):
                c.mux(pk)
        for pk in a.encode():
            c.mux(pk)
    with av.open(str(tmp_path / "src.mp4"), "w") as c:  # one keyframe: the trim keeps the frames before 2.5 s
        _encode_frames(c, "libx264", 60, {"g": "100", "bf": "3", "keyint_min": "100", "sc_threshold": "0"})
    with av.open(str(tmp_path / "src.mp4")) as i, av.open(str(tmp_path / "trim.mp4"), "w") as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        shift = int(round(2.5 / s.time_base))
        for pk in i.demux(s):
            if pk.dts is None:
                continue
            pk.pts -= shift
            pk.dts -= shift
            pk.stream = out
            o.mux(pk)
    frames = [np.full((48, 64, 3), 25 * i, np.uint8) for i in range(10)]
    import PIL.Image
    PIL.Image.fromarray(frames[0]).save(tmp_path / "held.gif", save_all=True, duration=[100] * 9 + [3000],
                                         append_images=[PIL.Image.fromarray(f) for f in frames[1:]])
    for name, count in (("audio.webm", 80), ("trim.mp4", 60)):  # the counts a frame-count check would trust
        cap = cv2.VideoCapture(str(tmp_path / name))
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == count, name
        cap.release()
    for name, seconds in (("audio.webm", 3.0), ("trim.mp4", 3.5), ("held.gif", None)):
        counts = {}
        frames, fps = vio.read_video(tmp_path / name, counts=counts)
        if seconds is not None:
            assert abs(len(frames) / fps - seconds) <= 1 / fps, (name, len(frames), fps)
        assert vio.ended_early(counts, tmp_path / name) == "", (name, counts, vio.header_length(tmp_path / name))


def test_non_square_pixels_are_read_as_a_player_shows_them(tmp_path):
    """An anamorphic file (320 x 180 stored, pixel aspect 4:3) is read at the 427 x 180 a player shows, so that
    its centre crop is the player's; its playable copy keeps that shape."""
    path = tmp_path / "sar.mp4"
    frame = np.zeros((180, 320, 3), np.uint8)
    frame[:, 140:180] = 255  # a centred bar 40 stored pixels wide: 53 shown
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=8)
        st.width, st.height, st.pix_fmt = 320, 180, "yuv420p"
        st.codec_context.sample_aspect_ratio = Fraction(4, 3)
        for _ in range(3):
            for pk in st.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(pk)
        for pk in st.encode():
            c.mux(pk)
    frames, _ = vio.read_video(path)
    assert frames.shape[1:3] == (180, 427)
    assert 50 <= int((frames[0, 90, :, 1] > 128).sum()) <= 56
    copy = vio.write_playable(path, tmp_path / "copy.mp4")
    assert vio.read_video(copy)[0].shape[1:3] == (180, 428)  # even sizes for H.264


def _corrupt(p):
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _truncated_header(p):
    p.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("random.mp4", _corrupt, r"could not read video: .*not a video or is corrupt"),
        ("header.mp4", _truncated_header, r"could not read video: .*(not a video or is corrupt|no frames)"),
        ("empty.mp4", lambda p: p.write_bytes(b""), r"could not read video: file is empty"),
        ("notes.txt", lambda p: p.write_text("not a video\n" * 50), r"could not read video: .*not a video"),
        ("missing.mp4", lambda p: None, r"could not read video: file not found"),
        ("folder.mp4", lambda p: p.mkdir(), r"could not read video: not a regular file"),
    ],
)
def test_read_video_bad_files(tmp_path, name, make, message):
    p = tmp_path / name
    make(p)
    with pytest.raises(VideoError, match=message) as info:
        vio.read_video(p)
    assert isinstance(info.value, ValueError)
    assert name in str(info.value)


def test_read_video_bad_arguments(clip_files):
    with pytest.raises(ValueError, match="max_frames must be an integer >= 1, got 0"):
        vio.read_video(clip_files["avi"], max_frames=0)


# ----------------------------------------------------------------------------- preprocessing
def test_resample_down_picks_nearest_frames():
    out = vio.resample_fps(indexed_frames(48), 30.0, 8.0)
    # duration 1.6 s -> floor(12.8) = 12 frames; frame i at i / 8 s -> source round(3.75 i)
    assert out.shape == (12, 4, 4, 3)
    assert out[:, 0, 0, 0].tolist() == [0, 4, 8, 11, 15, 19, 23, 26, 30, 34, 38, 41]


def test_resample_up_and_edge_cases():
    out = vio.resample_fps(indexed_frames(4), 8.0, 24.0)  # 0.5 s -> 12 frames, each source frame x3
    assert out[:, 0, 0, 0].tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    assert vio.resample_fps(indexed_frames(2), 30.0, 8.0).shape[0] == 1  # at least one frame
    same = vio.resample_fps(indexed_frames(5), 8.0, 8.0)
    assert np.array_equal(same, indexed_frames(5))
    with pytest.raises(ValueError, match="dst_fps must be a positive finite number, got 0"):
        vio.resample_fps(indexed_frames(5), 8.0, 0)
    with pytest.raises(ValueError, match="src_fps must be a positive finite number, got nan"):
        vio.resample_fps(indexed_frames(5), float("nan"), 8.0)


def test_resize_center_crop_content():
    frame = np.full((1, H_CLIP, W_CLIP, 3), GRAY, dtype=np.uint8)
    frame[:, :, :8] = (0, 0, 255)  # blue strips at the far left/right are cropped away
    frame[:, :, -8:] = (0, 0, 255)
    frame[:, 28:44, 40:56] = RED  # 16 x 16 red square in the middle
    out = vio.resize_center_crop(frame, 64)
    assert out.shape == (1, 64, 64, 3) and out.dtype == np.uint8
    assert tuple(out[0, 32, 32]) == RED
    assert tuple(out[0, 2, 2]) == (GRAY,) * 3 and tuple(out[0, 61, 61]) == (GRAY,) * 3
    assert out[..., 2].max() <= GRAY + 1  # no blue left
    red = np.all(out[0] == RED, axis=-1)
    ys, xs = np.nonzero(red)
    assert abs(ys.mean() - 31.5) < 1 and abs(xs.mean() - 31.5) < 1  # square stays centred


def test_resize_center_crop_identity_upscale_and_portrait():
    x = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert np.array_equal(vio.resize_center_crop(x, 64), x)
    assert vio.resize_center_crop(x[:, :32, :48], 64).shape == (3, 64, 64, 3)
    assert vio.resize_center_crop(np.zeros((2, 100, 50, 3), np.uint8), 25).shape == (2, 25, 25, 3)
    with pytest.raises(ValueError, match="size must be an integer >= 1, got 0"):
        vio.resize_center_crop(x, 0)


def test_valid_length_and_fit_length():
    assert [t for t in range(0, 14) if vio.valid_length(t)] == [1, 5, 9, 13]
    for t in range(1, 15):
        x = indexed_frames(t)
        padded = vio.fit_length(x, "pad")
        trimmed = vio.fit_length(x, "trim")
        assert vio.valid_length(padded.shape[0]) and vio.valid_length(trimmed.shape[0])
        assert t <= padded.shape[0] < t + 4 and t - 4 < trimmed.shape[0] <= t
        assert np.array_equal(padded[:t], x) and np.all(padded[t:] == t - 1)
        assert np.array_equal(trimmed, x[: trimmed.shape[0]])
    assert vio.fit_length(indexed_frames(6)).shape[0] == 9
    assert vio.fit_length(indexed_frames(8), "trim").shape[0] == 5
    with pytest.raises(ValueError, match="mode must be 'pad' or 'trim', got 'crop'"):
        vio.fit_length(indexed_frames(3), "crop")


def test_prepare_video(clip):
    out = vio.prepare_video(clip, FPS_CLIP, target_fps=8.0, size=64)
    assert out.shape == (13, 64, 64, 3) and out.dtype == np.uint8  # 12 frames at 8 fps -> padded to 13
    assert np.array_equal(out[12], out[11])
    capped = vio.prepare_video(clip, FPS_CLIP, max_frames=10)
    assert capped.shape == (9, 64, 64, 3)  # never above the cap, still 1 + 4n
    assert vio.prepare_video(clip, FPS_CLIP, max_frames=5).shape == (5, 64, 64, 3)


def resize_then_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """The previous resize_center_crop: every frame resized to short side ``size``, stacked, then cropped."""
    out = []
    for f in frames:
        h, w = f.shape[:2]
        scale = size / min(h, w)
        new_h, new_w = (size, max(size, round(w * scale))) if h <= w else (max(size, round(h * scale)), size)
        if (new_h, new_w) != (h, w):
            f = cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        out.append(f[top : top + size, left : left + size])
    return np.stack(out)


@pytest.mark.parametrize("shape", [(72, 96), (96, 72), (35, 51), (480, 640), (17, 200), (64, 900), (3, 47)])
@pytest.mark.parametrize("size", [8, 25, 64])
def test_resize_center_crop_same_as_resize_then_crop(shape, size):
    """Aspect ratios up to 16:1 (and any downscale) give exactly what resizing before cropping gave."""
    x = np.random.default_rng(3).integers(0, 256, (5, *shape, 3), dtype=np.uint8)
    assert np.array_equal(vio.resize_center_crop(x, size), resize_then_crop(x, size))
    before = vio.fit_length(resize_then_crop(vio.resample_fps(x, 3.0, 8.0), size))  # prepare_video as it was
    assert np.array_equal(vio.prepare_video(x, 3.0, 8.0, size), before)


def test_resize_center_crop_very_wide_crops_first():
    # upscaled beyond 16:1, the centred square is cropped before resizing: close to resize-then-crop on
    # smooth content (a sub-pixel shift), without building the 64 x 3200 (or 64 x 1920000) frame
    yy, xx = np.mgrid[0:4, 0:200]
    smooth = np.stack([xx * 1.2, yy * 40.0, np.full(xx.shape, 100.0)], axis=-1).astype(np.uint8)[None]
    out = vio.resize_center_crop(smooth, 64)
    assert np.abs(out.astype(int) - resize_then_crop(smooth, 64).astype(int)).max() <= 2
    tall = np.ascontiguousarray(smooth.transpose(0, 2, 1, 3))
    assert np.abs(vio.resize_center_crop(tall, 64).astype(int) - resize_then_crop(tall, 64).astype(int)).max() <= 2
    with pytest.raises(ValueError, match=r"would give 1 frames of 80000 x 80000 \(17.9 GiB"):  # refused unbuilt
        vio.resize_center_crop(np.zeros((1, 1, 1, 3), np.uint8), 80000)


def _traced(fn):
    """fn() and the peak of the memory it allocated (NumPy's arrays included), in bytes."""
    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_prepare_video_very_wide_frames_stay_small():
    """A 1 x 30000 frame used to become 64 x 1920000 (368 MB) before its crop; now one frame is ~12 KB."""
    frames = np.full((17, 1, 30000, 3), GRAY, np.uint8)
    frames[:, :, 14990:15010] = RED  # the middle of the strip is what is kept
    out, peak = _traced(lambda: vio.prepare_video(frames, 8.0, 8.0, size=64))
    assert out.shape == (17, 64, 64, 3) and np.all(out == RED)
    assert peak < 4 * out.nbytes, peak
    assert vio.prepare_video(frames.transpose(0, 2, 1, 3), 8.0, 8.0, size=64).shape == (17, 64, 64, 3)


def test_prepare_video_low_fps_resizes_before_repeating():
    """5 full-HD frames at 0.001 fps become 40001 frames at 8 fps: built at model size, not full size."""
    src = np.broadcast_to(np.arange(5, dtype=np.uint8)[:, None, None, None], (5, 1080, 1920, 3))
    out, peak = _traced(lambda: vio.prepare_video(src, 0.001, 8.0, size=8))
    assert out.shape == (40001, 8, 8, 3)  # 5000 s at 8 fps, plus one to reach 1 + 4n
    expected = np.clip(np.floor(np.arange(40001) * (0.001 / 8.0) + 0.5 + 1e-9), 0, 4)
    assert np.array_equal(out[:, 0, 0, 0], expected) and np.all(out == out[:, :1, :1, :1])
    assert peak < out.nbytes + src[0].nbytes + 2**20, peak  # the output and one source frame, not 40001
    assert vio.prepare_video(src, 0.001, 8.0, size=8, max_frames=10).shape == (9, 8, 8, 3)


def test_prepare_video_refuses_too_large_results():
    tiny = np.zeros((12, 4, 4, 3), np.uint8)  # 96001 frames at 0.001 -> 8 fps: 1.1 GiB at 64 x 64
    with pytest.raises(ValueError, match=r"would give 96001 frames of 64 x 64 \(1.10 GiB.*pass max_frames"):
        vio.prepare_video(tiny, 0.001, 8.0, size=64)
    assert vio.prepare_video(tiny, 0.001, 8.0, size=64, max_frames=33).shape == (33, 64, 64, 3)
    full_hd = np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (12, 1080, 1920, 3))  # no memory behind it
    with pytest.raises(ValueError, match=r"would give 96000 frames of 1920 x 1080 \(556.2 GiB"):
        vio.resample_fps(full_hd, 0.001, 8.0)
    # an ordinary one is not refused: 10 s of 720p at 30 -> 60 fps builds 1.5 GiB
    hd = np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (300, 720, 1280, 3))
    assert vio._resample_index(300, 30.0, 60.0).size == 600
    vio._check_output_bytes(600, 720, 1280, hd.nbytes, "resampling", "", vio.MAX_RAW_BYTES)  # within bounds


@pytest.mark.parametrize("bad", [True, "8", None, [8]])
def test_fps_must_be_a_real_number(bad):
    frames = indexed_frames(5)
    with pytest.raises(ValueError, match=rf"fps must be a positive number, got {re.escape(repr(bad))}"):
        vio.prepare_video(frames, bad)
    with pytest.raises(ValueError, match="target_fps must be a positive number"):
        vio.prepare_video(frames, 8.0, target_fps=bad)
    with pytest.raises(ValueError, match="src_fps must be a positive number"):
        vio.resample_fps(frames, bad, 8.0)
    with pytest.raises(ValueError, match="fps must be a positive number"):
        vio.write_video("unused.mp4", frames, fps=bad)


def test_fps_accepts_numpy_and_fractions():
    frames = indexed_frames(5)
    for fps in (np.float32(8), np.int64(8), Fraction(8)):
        assert vio.prepare_video(frames, fps, size=4).shape == (5, 4, 4, 3)


# ----------------------------------------------------------------------------- model conversion
def test_to_model_from_model_roundtrip():
    values = np.arange(256, dtype=np.uint8)
    x = np.stack([values.reshape(16, 16)] * 3, axis=-1)[None].repeat(2, axis=0)  # [2, 16, 16, 3]
    x[1] = 255 - x[1]
    t = vio.to_model(x)
    assert t.shape == (3, 2, 16, 16) and t.dtype == torch.float32
    assert t.min().item() == -1.0 and t.max().item() == 1.0
    assert np.array_equal(vio.from_model(t), x)
    batch = vio.from_model(torch.stack([t, t]))
    assert batch.shape == (2, 2, 16, 16, 3) and np.array_equal(batch[1], x)
    clamped = vio.from_model(torch.tensor([-3.0, 3.0, 0.0]).view(3, 1, 1, 1))
    assert clamped.reshape(-1).tolist() == [0, 255, 128]
    with pytest.raises(ValueError, match=r"got \(4, 2, 16, 16\)"):
        vio.from_model(torch.zeros(4, 2, 16, 16))
    with pytest.raises(ValueError, match="got list .a list of videos: convert each, or torch.stack them"):
        vio.from_model([t, t])


def test_label_and_upscale_check_their_input():
    """The side-by-side helpers say what they take, rather than OpenCV's assertion, NumPy's negative
    dimensions, an empty array for factor 0 or factor 2.5 read as 2."""
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    assert vio.upscale(frames, 3).shape == (2, 24, 24, 3) and vio.upscale(frames, np.int64(2)).shape == (2, 16, 16, 3)
    for factor in (0, -1, 2.5, True, "2"):
        with pytest.raises(ValueError, match="factor must be an integer >= 1"):
            vio.upscale(frames, factor)
    with pytest.raises(ValueError, match=r"upscale by 100000 would give 2 frames of 800000 x 800000 .*smaller factor"):
        vio.upscale(frames, 100_000)  # refused before any memory is taken
    import flexvid.video_io as module
    old = module.MAX_OUTPUT_BYTES  # a long clip at 4x (reconstruct's tiles) is no absurd factor: not held to
    module.MAX_OUTPUT_BYTES = 1000  # the 1 GiB of prepare_video's output
    try:
        assert vio.upscale(frames, 4).shape == (2, 32, 32, 3)
    finally:
        module.MAX_OUTPUT_BYTES = old
    assert vio.label(vio.upscale(frames, 8), "k = 1").max() == 255 and frames.max() == 0  # a copy, labelled
    for bad, said in ((frames.astype(np.float32), "must be uint8, got float32"),
                      (torch.zeros(3, 2, 8, 8), r"a model tensor \(3, T, H, W\)\? video_io.from_model converts it"),
                      (np.zeros((2, 8, 8), np.uint8), r"shape \[T, H, W, 3\]")):
        with pytest.raises(ValueError, match=said):
            vio.label(bad, "x")
    with pytest.raises(ValueError, match="text must be a str, got int"):
        vio.label(frames, 4)


# ----------------------------------------------------------------------------- writing
def test_write_video_h264_readable(tmp_path, clip):
    frames = vio.resize_center_crop(clip[:17], 64)
    path = vio.write_video(tmp_path / "out" / "demo.mp4", frames, fps=8.0, upscale=4)
    assert isinstance(path, str) and path.endswith("demo.mp4")
    info = pyav_info(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (256, 256)
    assert info["rate"] == 8 and info["frames"].shape == (17, 256, 256, 3)
    expected = np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2)
    assert np.abs(info["frames"].astype(int) - expected.astype(int)).mean() < 4
    data = open(path, "rb").read()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # +faststart: index before the media data
    back, fps = vio.read_video(path)
    assert back.shape == (17, 256, 256, 3) and fps == pytest.approx(8.0)
    assert np.abs(back.astype(int) - expected.astype(int)).mean() < 4


def test_write_video_odd_size_and_fractional_fps(tmp_path):
    rng = np.random.default_rng(2)
    frames = np.repeat(rng.integers(0, 256, (1, 35, 51, 3), dtype=np.uint8), 5, axis=0)
    path = vio.write_video(tmp_path / "odd.mp4", frames, fps=30000 / 1001)
    info = pyav_info(path)
    assert (info["width"], info["height"]) == (52, 36)
    assert info["width"] % 2 == 0 and info["height"] % 2 == 0
    assert info["frames"].shape[0] == 5
    assert info["rate"] == pytest.approx(30000 / 1001, rel=1e-4)
    back, _ = vio.read_video(path)
    assert back.shape == (5, 36, 52, 3)
    with pytest.raises(ValueError, match="crf must be an integer in \\[0, 51\\], got 99"):
        vio.write_video(tmp_path / "bad.mp4", frames, crf=99)
    with pytest.raises(ValueError, match="frames must be uint8, got float32"):
        vio.write_video(tmp_path / "bad.mp4", frames.astype(np.float32))


@pytest.mark.parametrize("bad, name", [(None, "NoneType"), (3, "int"), (b"x.mp4", "bytes")])
def test_paths_must_be_str_or_pathlike(tmp_path, bad, name):
    with pytest.raises(ValueError, match=rf"path must be a str or os.PathLike, got {name}"):
        vio.read_video(bad)
    with pytest.raises(ValueError, match=rf"path must be a str or os.PathLike, got {name}"):
        vio.write_video(bad, indexed_frames(1))


def test_paths_with_nul_are_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="path contains a NUL character"):
        vio.write_video("nul/clip\x00.mp4", indexed_frames(2))
    with pytest.raises(ValueError, match="path contains a NUL character"):
        vio.read_video(tmp_path / "clip\x00.mp4")
    assert os.listdir(tmp_path) == []  # FFmpeg, cutting the name at NUL, used to leave nul/.clip


@pytest.mark.parametrize("error, message", [
    (av.error.FFmpegError(-28, "No space left on device"), "No space left on device"),
    (OSError(5, "Input/output error"), "Input/output error"),
])
def test_write_failures_name_the_path_and_leave_nothing(tmp_path, monkeypatch, error, message):
    def fail(av, out_path, *args):
        out_path.write_bytes(b"half a video")
        raise error

    monkeypatch.setattr(vio, "_encode", fail)
    with pytest.raises(ValueError, match=rf"could not write the video '.*clip\.mp4': .*{message}"):
        vio.write_video(tmp_path / "clip.mp4", indexed_frames(2))
    assert os.listdir(tmp_path) == []  # the temporary file is gone too


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_write_video_into_proc_is_a_value_error():
    with pytest.raises(ValueError, match=r"/proc/x\.mp4"):
        vio.write_video("/proc/x.mp4", indexed_frames(2))
    assert not any(name.startswith(".x.mp4") for name in os.listdir("/proc"))


# ----------------------------------------------------------------------------- tiling
def test_side_by_side():
    a = np.zeros((3, 8, 6, 3), np.uint8)
    b = np.full((5, 8, 4, 3), 50, np.uint8)
    b[-1] = 77
    out = vio.side_by_side([a, b], pad=2)
    assert out.shape == (5, 8, 6 + 2 + 4, 3)
    assert np.all(out[:, :, 6:8] == 255)  # white separator
    assert np.all(out[:, :, :6] == 0)  # a repeated past its end
    assert np.all(out[4, :, 8:] == 77) and np.all(out[3, :, 8:] == 50)
    assert vio.side_by_side([a], pad=2).shape == (3, 8, 6, 3)
    with pytest.raises(ValueError, match=r"same height, got heights \[8, 9\]"):
        vio.side_by_side([a, np.zeros((3, 9, 6, 3), np.uint8)])


def test_grid():
    vids = [np.full((2, 4, 6, 3), 10 * (i + 1), np.uint8) for i in range(5)]
    out = vio.grid(vids, cols=3, pad=1)
    assert out.shape == (2, 2 * 4 + 1, 3 * 6 + 2, 3)
    assert np.all(out[:, 0:4, 7:13] == 20)  # row 0, col 1
    assert np.all(out[:, 5:9, 7:13] == 50)  # row 1, col 1
    assert np.all(out[:, 5:9, 14:20] == 255)  # empty cell is white
    assert np.all(out[:, 4] == 255) and np.all(out[:, :, 6] == 255)
    with pytest.raises(ValueError, match="cols must be an integer >= 1, got 0"):
        vio.grid(vids, cols=0)


def test_a_corrupt_file_is_one_clear_error_without_ffmpeg_log_lines(tmp_path, capfd):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))  # an mp4 header and nothing else: no moov atom
    with pytest.raises(vio.VideoError, match="not a video or is corrupt"):
        vio.read_video(bad)
    captured = capfd.readouterr()
    assert "moov atom" not in captured.out + captured.err  # FFmpeg's own line, printed from C, stays quiet


# ----------------------------------------------------------------------------- browser playability
def _opencv_video(path, fourcc: str, fps: float, frames: np.ndarray) -> str:
    """frames (RGB) written by OpenCV's own encoder, as a researcher's script would write them."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (frames.shape[2], frames.shape[1]))
    assert w.isOpened(), f"OpenCV cannot write {fourcc}"
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    return str(path)


def _moving_bar(t: int, h: int, w: int) -> np.ndarray:
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, :, (7 * i) % (w - 20):(7 * i) % (w - 20) + 20] = (250, 40, 40)
    return frames


def test_browser_playable(tmp_path, clip):
    assert vio.browser_playable(vio.write_video(tmp_path / "h264.mp4", clip[:5], fps=8))
    frames = _moving_bar(10, 48, 64)
    assert not vio.browser_playable(_opencv_video(tmp_path / "mp4v.mp4", "mp4v", 10, frames))  # OpenCV's default
    assert not vio.browser_playable(_opencv_video(tmp_path / "mjpg.avi", "MJPG", 10, frames))
    h264_in_avi = tmp_path / "h264.avi"  # a playable codec in a container browsers do not open
    h264_in_avi.write_bytes((tmp_path / "h264.mp4").read_bytes())
    assert not vio.browser_playable(h264_in_avi)
    (tmp_path / "notes.mp4").write_text("not a video\n")
    assert not vio.browser_playable(tmp_path / "notes.mp4") and not vio.browser_playable(tmp_path / "missing.mp4")
    _vfr_webm(tmp_path / "vp9.webm", [40] * 4)
    assert vio.browser_playable(tmp_path / "vp9.webm")
    if "libsvtav1" in av.codecs_available:  # AV1 decodes with libdav1d: the codec's name decides, not the decoder's
        with av.open(str(tmp_path / "av1.webm"), "w") as c:
            st = c.add_stream("libsvtav1", rate=8)
            st.width, st.height, st.pix_fmt = 64, 64, "yuv420p"
            for f in frames[:4]:
                for pk in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:48, :64].repeat(2, 0)[:64]),
                                                               format="rgb24")):
                    c.mux(pk)
            for pk in st.encode():
                c.mux(pk)
        assert vio.browser_playable(tmp_path / "av1.webm")


def test_write_playable_reencodes_what_read_video_reads(tmp_path):
    frames = _moving_bar(45, 361, 801)  # odd sizes, 30 fps, 1.5 s
    src = _opencv_video(tmp_path / "mp4v.mp4", "mp4v", 30, frames)
    out = vio.write_playable(src, tmp_path / "prev" / "copy.mp4", max_side=400)
    assert vio.browser_playable(out)
    info = pyav_info(out)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["rate"] == 30
    assert (info["width"], info["height"]) == (400, 180)  # the longer side to 400 px, even sizes, aspect kept
    original, _ = vio.read_video(src)
    assert info["frames"].shape[0] == 45
    expected = np.stack([cv2.resize(f, (400, 180), interpolation=cv2.INTER_AREA) for f in original])
    assert np.abs(info["frames"].astype(int) - expected.astype(int)).mean() < 6
    short = vio.write_playable(src, tmp_path / "short.mp4", max_seconds=0.5)  # its first 0.5 s, 640 px wide
    assert pyav_info(short)["frames"].shape == (15, 288, 640, 3)
    small = _opencv_video(tmp_path / "small.avi", "MJPG", 10, _moving_bar(5, 48, 64))
    assert pyav_info(vio.write_playable(small, tmp_path / "small.mp4"))["frames"].shape == (5, 48, 64, 3)  # not enlarged


def test_write_playable_bad_input(tmp_path):
    (tmp_path / "notes.txt").write_text("not a video\n" * 50)
    with pytest.raises(VideoError, match="not a video"):
        vio.write_playable(tmp_path / "notes.txt", tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists() and not list(tmp_path.glob(".out.mp4*"))
    with pytest.raises(ValueError, match="max_seconds"):
        vio.write_playable(tmp_path / "notes.txt", tmp_path / "out.mp4", max_seconds=0)
