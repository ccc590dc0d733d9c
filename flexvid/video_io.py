"""Video reading, preprocessing and writing for the tokenizer.

Frames are handled as uint8 numpy arrays of shape [T, H, W, 3] in RGB order. The model side uses float
tensors [3, T, H, W] in [-1, 1] (same convention as ``flexvid.shapes.to_tensor``). Clip lengths fed to
the model are 1 + 4n frames (first frame plus groups of four).

- ``read_video`` decodes any container OpenCV can open (mp4, webm, avi, mov, mkv, usually gif) and
  raises ``VideoError`` (a ``ValueError``) with a readable message for missing, empty, corrupt,
  non-video or too-large files.
- ``resample_fps``, ``resize_center_crop``, ``fit_length`` and ``prepare_video`` turn an arbitrary clip
  into model input: fixed fps, square size, valid length.
- ``write_video`` encodes a browser-playable H.264 mp4 (yuv420p, even sizes, +faststart) with PyAV.
- ``browser_playable`` tells whether a browser plays a file as it is; ``write_playable`` re-encodes one
  that it does not (OpenCV's mp4v, most avi and mov) as such an mp4, frame by frame.
- ``side_by_side`` and ``grid`` tile several clips into one for comparison videos.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch

from .hub import check_output  # noqa: F401  (video_io.check_output: outputs are checked here too)

# A file OpenCV cannot read is reported by read_video's own error; FFmpeg's log line for it ("moov atom not
# found") would print beside it. OpenCV reads this when it first opens a file; set it to 32 to see them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

DEFAULT_FPS = 8.0
MAX_SOURCE_FPS = 1000.0  # a file claiming more (or no rate) is read at DEFAULT_FPS

__all__ = [
    "VideoError",
    "DEFAULT_FPS",
    "read_video",
    "read_resampled",
    "source_fps",
    "pixel_aspect",
    "constant_rate_frames",
    "source_timing",
    "Timing",
    "resample_fps",
    "resize_center_crop",
    "valid_length",
    "nearest_valid_length",
    "fit_length",
    "prepare_video",
    "to_model",
    "from_model",
    "write_video",
    "browser_playable",
    "write_playable",
    "side_by_side",
    "grid",
    "upscale",
    "label",
]


class VideoError(ValueError):
    """A file could not be read as a video (missing, empty, corrupt, not a video, too large)."""


# FFmpeg's text-mode demuxers (tty, bintext, ...) "play" text files such as .txt/.nfo as rendered ANSI
# art; OpenCV opens those happily, so they are refused by codec tag.
_TEXT_CODEC_TAGS = {"ansi", "bint", "xbin", "idf"}


def _fourcc(value: float) -> str:
    code = int(value) if math.isfinite(value) and value > 0 else 0
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip(" \x00").lower()


# ----------------------------------------------------------------------------- validation helpers
def _check_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    """Return ``frames`` as an array after checking it is uint8 [T, H, W, 3] with T, H, W >= 1."""
    model = isinstance(frames, torch.Tensor) and frames.ndim == 4 and frames.shape[0] == 3
    try:
        frames = np.asarray(frames.detach().cpu() if isinstance(frames, torch.Tensor) else frames)
    except (TypeError, ValueError, RuntimeError):  # e.g. a list of tensors: np.asarray's own error says less
        raise ValueError(f"{name} must be a uint8 array [T, H, W, 3], got {type(frames).__name__}") from None
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name} must have shape [T, H, W, 3], got {tuple(frames.shape)}"
                         + (": a model tensor (3, T, H, W)? video_io.from_model converts it" if model else ""))
    if frames.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {frames.dtype}")
    if min(frames.shape[:3]) < 1:
        raise ValueError(f"{name} must have at least one frame and non-empty H, W, got {tuple(frames.shape)}")
    return frames


def _check_fps(fps: float, name: str) -> float:
    # a real number only: float() would take True as 1 fps and "8" as 8 fps
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real):
        raise ValueError(f"{name} must be a positive number, got {fps!r}")
    value = float(fps)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {fps!r}")
    return value


def _check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_path(path: str | os.PathLike, name: str = "path") -> str:
    """Return ``path`` as a str after checking it is a str or os.PathLike naming a str, without NUL."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a str or os.PathLike, got {type(text).__name__}")
    if "\x00" in text:  # the OS refuses it, but FFmpeg cuts the name there and writes elsewhere first
        raise ValueError(f"{name} contains a NUL character: {text!r}")
    return text


# What one call may build beyond the size of its input: prepare_video's clip at model size (1 GiB is some
# 87,000 frames of 64 x 64), and the general resample_fps / resize_center_crop (a 10 s 720p clip at 60 fps
# is 1.5 GiB), which a crafted frame rate or size would otherwise take to hundreds of GiB.
MAX_OUTPUT_BYTES = 2**30
MAX_RAW_BYTES = 16 * 2**30
MAX_READ_BYTES = 8 * 2**30  # read_video's frames (a gap in a file's timestamps repeats a frame over it)


def _check_output_bytes(t: int, h: int, w: int, input_bytes: int, what: str, hint: str,
                        most: int = MAX_OUTPUT_BYTES) -> None:
    nbytes, limit = t * h * w * 3, max(input_bytes, most)
    if nbytes > limit:
        def gib(n):  # two decimals under 10 GiB: 1.02 is more than 1.00, where 1.0 read as no more
            return f"{n / 2**30:.{1 if n >= 10 * 2**30 else 2}f}"
        raise ValueError(f"{what} would give {t} frames of {w} x {h} ({gib(nbytes)} GiB, more than the "
                         f"{gib(limit)} GiB allowed); {hint}")


# ----------------------------------------------------------------------------- reading
def source_fps(cap) -> float:
    """The frame rate an open cv2.VideoCapture reports, or DEFAULT_FPS where it reports none (0, negative, nan)
    or more than MAX_SOURCE_FPS."""
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if math.isfinite(fps) and 0 < fps <= MAX_SOURCE_FPS else DEFAULT_FPS


class Timing(NamedTuple):
    """The grid ``source_timing`` reads a file on (see there)."""
    fps: float  # the grid's rate
    end_s: float  # seconds from its first frame to when its last frame stops showing; nan: not known
    hold: bool  # a frame shows from its own time until the next frame's (GIF, APNG, WebP), else nearest
    max_gap_s: float  # a jump forward longer than this is a break in the timestamps (MPEG-TS), not a pause
    span_s: float = math.nan  # the packets' last time from their first: end_s holds only if the frames span it


TIMING_BYTES = 32 * 2**20  # packet data source_timing reads from a file's start, and at most from its last keyframe
MAX_GAP_S = 10.0  # FFmpeg's dts_delta_threshold: the jump in a discontinuous format's timestamps that is a break
_DELAY_FORMATS = {"gif", "apng", "webp_pipe"}  # formats whose frames carry display delays


def _delays_webp(path: str | os.PathLike) -> list[float]:
    """The frame delays (s) of an animated WebP, which FFmpeg's demuxer gives as one packet (PIL reads them)."""
    import PIL.Image
    with PIL.Image.open(str(path)) as im:
        delays = []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            im.load()  # sets the frame's duration
            delays.append(float(im.info.get("duration") or 0) / 1000.0)
    return delays


DELAY_FLOOR_S = 0.02  # the shortest delay a grid is laid for: 50 fps (a browser shows 10 ms GIF delays as 100 ms)


def delay_grid(delays: list[float]) -> float:
    """The slot length, in seconds, of the grid a file of per-frame display delays is read on: the shorter of
    its typical delay (the lower median: of delays 0.1 s and 2 s, the short frame is shown once) and the fast
    end of its delays by the time they are shown (the shortest delay whose frames, with all shorter ones, show
    for a tenth of the file's length: a part at 8 fps among more frames held 0.25 s keeps every frame), while
    a few frames flashed for 20 ms among slow ones lay no fast grid over all of it. Delays of 10 ms or less
    count as 100 ms, as browsers show them; no slot is shorter than DELAY_FLOOR_S. 0.0 for none."""
    shown = np.sort([0.1 if d <= 0.01 else d for d in delays if d > 0])
    if not len(shown):
        return 0.0
    covered = np.cumsum(shown)
    fast_end = float(shown[np.searchsorted(covered, 0.1 * covered[-1] - 1e-12)])
    typical = float(shown[(len(shown) - 1) // 2])
    return max(min(typical, fast_end), DELAY_FLOOR_S)


def source_timing(cap, path: str | os.PathLike) -> Timing:
    """The grid an open cv2.VideoCapture of ``path`` is read on (``Timing``), from the video stream's packet
    timestamps (PyAV demuxes them, no decode: TIMING_BYTES of packets from the start, the whole of most files,
    and as much after a seek to the last keyframe):

    - the rate: ``source_fps`` (the rate the header gives), unless the header gives none or the timestamps
      say a rate over 1.5 times higher or lower: the mean of their spacings where these are steady, else
      the fast end (10th percentile) of a variable rate (a screen recording idle at times keeps every frame
      of its motion); lower than the header's only from every timestamp of the file. A browser's
      MediaRecorder webm has no rate in its header and a millisecond time base, which OpenCV reports as
      1000 fps (33 times the frames of a 30 fps recording in memory); a header saying 1 fps of a 30 fps file
      would drop 29 frames in 30.
    - the end: when its last frame stops showing, from the last timestamp and its packet's duration, so that
      a last frame held for seconds (a screen recording's, a slide show's) keeps its hold; nan where the
      packets do not say.
    - a GIF, an animated PNG or WebP carry a display delay per frame: read at the rate ``delay_grid`` gives
      (its typical delay, or the fast end of its delays by display time where that is shorter),
      each frame shown from its own time to the next's, and the last held to the end of its delay
      (``hold``). Their reported rate is the frame count over the length, a grid too coarse for the motion
      of one that holds a frame for seconds.
    - in a format whose timestamps may jump (MPEG-TS: two recordings joined), a jump forward of more than
      MAX_GAP_S is a break, not a pause (``max_gap_s``): the next frame follows the last.

    Where PyAV cannot read the file (OpenCV could), the header's rate, with no end, nearest frames, no break.
    """
    fps = source_fps(cap)
    raw = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    usable = math.isfinite(raw) and 0 < raw <= MAX_SOURCE_FPS  # else source_fps fell back to DEFAULT_FPS
    plain = Timing(fps, math.nan, False, math.inf)
    try:
        import av
        with av.open(str(path)) as c:
            if not c.streams.video:
                return plain
            st = c.streams.video[0]
            name, tb = c.format.name, st.time_base
            gap = MAX_GAP_S if c.format.flags & 0x200 else math.inf  # AVFMT_TS_DISCONT

            def packets(budget):  # (pts, duration) of the decoded ones, and whether the file's end was reached
                got, read = [], 0  # (an edit list's discarded packets are not shown: not counted)
                for pk in c.demux(st):
                    read += pk.size
                    if pk.size and pk.pts is not None and not pk.is_discard:
                        got.append((pk.pts, pk.duration or 0))
                    if budget and read > budget:
                        return got, False
                return got, True

            if name == "webp_pipe":
                delays = _delays_webp(path)
            else:
                found, whole = packets(0 if name in _DELAY_FORMATS else TIMING_BYTES)
                if not whole and c.duration:  # the end's packets, after a seek to the last keyframe
                    with contextlib.suppress(Exception):
                        c.seek(c.duration + (c.start_time or 0), backward=True, any_frame=False)
                        last, whole = packets(TIMING_BYTES)  # (a last keyframe too far back: no end)
                        found += last if whole else []
                if not found or not tb:
                    return plain
                delays = [float(d * tb) for _, d in found if d > 0]
    except Exception:  # noqa: BLE001 - no PyAV (or PIL), or a file it cannot open that OpenCV could
        return plain
    if name in _DELAY_FORMATS:
        typical = delay_grid(delays)
        if not typical > 0:
            return plain
        rate = 1.0 / typical
        return Timing(rate if math.isfinite(rate) and 0 < rate <= MAX_SOURCE_FPS else fps, math.fsum(delays),
                      True, math.inf)
    found = sorted(set(found))
    times = np.array([float(p * tb) for p, _ in found])
    spacing = np.diff(times)
    spacing = spacing[(spacing >= 0.5 / MAX_SOURCE_FPS) & (spacing <= gap)]
    typical = math.nan
    if len(spacing):
        q10, typical, q90 = (float(q) for q in np.quantile(spacing, [0.1, 0.5, 0.9]))
        steady = q90 <= 1.5 * q10  # a constant rate (with a muxer's jitter), else a variable one
        # steady: the mean of the typical spacings (a 1/16000 time base's 528 and 544 ticks are 30 fps); variable
        # (a screen recording idle at times): its fast end, so that its motion keeps every frame
        near = (spacing >= 0.5 * typical) & (spacing <= 2 * typical) if steady else spacing <= 1.5 * q10
        rate = 1.0 / float(spacing[near].mean())
        # the header's rate stands unless it is none or far off; lowered only from every timestamp (the
        # packets read from a long file's start and end may be its idle parts)
        if 0 < rate <= MAX_SOURCE_FPS and (not usable or max(rate / fps, fps / rate) > 1.5 and (rate > fps or whole)):
            fps = rate
    durations = [float(d * tb) for _, d in found[:-1] if d > 0]
    # the last packet's duration is a hold only where the others' durations are their spacing (a header's
    # wrong rate sets them all; a single frame's stands alone), and only for a file whose frames reach the
    # last packet (constant_rate_frames)
    trusted = len(found) == 1 or bool(durations) and math.isfinite(typical) \
        and abs(math.log(float(np.median(durations)) / typical)) < 0.4
    if whole and found[-1][1] > 0 and trusted and gap == math.inf:
        base = times[times >= 0].min() if (times >= 0).any() else times.min()  # after an mp4's edit list
        end_s = float(times[-1] + found[-1][1] * tb - base)
        if end_s > 0:
            return Timing(fps, end_s, False, gap, float(times[-1] - base))
    return Timing(fps, math.nan, False, gap)


def pixel_aspect(cap) -> float:
    """The sample (pixel) aspect ratio an open cv2.VideoCapture reports: 1.0 for square pixels or none said.
    OpenCV decodes the stored picture; a player shows it stretched by this (anamorphic video, some DV and
    broadcast files)."""
    num, den = cap.get(cv2.CAP_PROP_SAR_NUM), cap.get(cv2.CAP_PROP_SAR_DEN)
    ratio = num / den if num > 0 and den > 0 and math.isfinite(num / den) else 1.0
    if cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) and round(cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 180 == 90:
        ratio = 1.0 / ratio  # OpenCV turned the picture a quarter: its stored width, which the ratio stretches, is up
    return ratio if 0.1 <= ratio <= 10 and abs(ratio - 1) > 1e-3 else 1.0


def display_size(w: int, h: int, aspect: float) -> tuple[int, int]:
    """(width, height) a player shows a w x h picture of pixel aspect `aspect` at: stretched, never shrunk."""
    return (max(1, round(w * aspect)), h) if aspect >= 1 else (w, max(1, round(h / aspect)))


def to_rgb(bgr: np.ndarray, aspect: float = 1.0) -> np.ndarray:
    """An OpenCV frame (BGR, BGRA or gray) as RGB, stretched to its display shape where its pixels are not
    square (pixel_aspect)."""
    if bgr.ndim == 2:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    else:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB if bgr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    if aspect != 1.0:
        rgb = cv2.resize(rgb, display_size(rgb.shape[1], rgb.shape[0], aspect), interpolation=cv2.INTER_LINEAR)
    return rgb


def constant_rate_frames(cap, fps: float, convert=None, counts: dict | None = None, end_s: float = math.nan,
                         hold: bool = False, max_gap_s: float = math.inf, span_s: float = math.nan):
    """The frames of an open cv2.VideoCapture on a constant-rate grid of ``fps``, by the file's own timestamps
    (``source_timing`` gives the grid, as a ``Timing``): grid slot j (time j / fps) shows the decoded frame
    nearest that time (halfway: the later one), or, with ``hold`` (a GIF's timing) and over a gap of more
    than two slots (a variable rate's pause, as a player shows it), the last frame that started by its time. The clip ends half a slot after its last frame, or at ``end_s`` seconds from its
    first frame where that is later (the slots nearer the hold than past it), so that a held last frame
    keeps its hold; where ``span_s`` is given, only if the decoded frames span it (to half a slot): a
    damaged file, or one whose edit list or first keyframe leaves frames undecoded, ends with its frames. A constant-rate file gives
    each frame once, in order; a variable-rate one (a screen recording, a browser's MediaRecorder webm, a
    phone's) has its frames repeated over long gaps and thinned in bursts, so that it keeps its own speed and
    length wherever it is then taken to be at ``fps``. A frame without a usable timestamp (none, or not at
    least half a millisecond after the last one: faster than MAX_SOURCE_FPS), or more than ``max_gap_s``
    after the last one (a break in an MPEG-TS's timestamps), is placed one slot after the last. ``convert``
    is applied once to each decoded frame (not per slot). ``counts``, when a dict is given, counts the slots
    that repeat a frame (``repeated``) and the frames no slot shows (``dropped``) so far: both 0 for a
    constant rate; the breaks (``breaks``, where there were any); and, once the file is read to its end, how
    long its frames lasted from the first and how many it had (``read_s``, ``decoded``: see ``ended_early``)."""
    j, prev, prev_t, t0, shown = 0, None, None, None, False
    counts = {} if counts is None else counts
    counts.pop("read_s", None)  # a dict used before: only this read's
    counts.pop("breaks", None)
    counts.update(repeated=0, dropped=0)
    decoded = 0
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            break
        decoded += 1
        t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if t0 is None:
            t0 = t if math.isfinite(t) else 0.0
        t = t - t0 if math.isfinite(t) else math.nan
        if prev_t is not None and t > prev_t + max_gap_s:  # a break: later frames keep their spacing from here
            t0 += t - prev_t - 1.0 / fps
            t = prev_t + 1.0 / fps
            counts["breaks"] = counts.get("breaks", 0) + 1
        if prev_t is not None and not t >= prev_t + 0.5 / MAX_SOURCE_FPS:  # nan, or not after the last frame
            t = prev_t + 1.0 / fps
        elif prev_t is None:
            t = 0.0
        frame = convert(frame) if convert is not None else frame
        if prev is not None:
            # nearest frame; over a gap of more than two slots (a variable rate's pause) the last frame holds
            # until the next one's time, as a player shows it
            mid = t if hold or t - prev_t > 2.0 / fps else (prev_t + t) / 2
            while j < mid * fps - 1e-6:  # slot j is nearer the previous frame (or before this one's time)
                counts["repeated"] += shown
                shown = True
                yield prev
                j += 1
            counts["dropped"] += not shown
        prev, prev_t, shown = frame, t, False
    if prev is not None:
        end = prev_t + 0.5 / fps
        if math.isfinite(end_s) and (not math.isfinite(span_s) or abs(prev_t - span_s) < 0.5 / fps):
            end = max(end, end_s if hold else end_s - 0.5 / fps)  # nearest: a slot past the hold's middle is out
        while j < end * fps - 1e-6 or j == 0:
            counts["repeated"] += shown
            shown = True
            yield prev
            j += 1
        counts.update(read_s=end if hold else end + 0.5 / fps, decoded=decoded)  # read to its end


def header_length(path: str | os.PathLike) -> tuple[float, int]:
    """How long a file's header says its video lasts, and how many frames it says it has (0: not said).
    The seconds are the video stream's own duration where the container records one (mp4, mov, mpeg-ts;
    after an mp4's edit list, so a stream-copied trim is its trimmed length), else the container's duration
    where the video is its only stream (a webm or mkv without audio); nan where neither says the video's
    length: audio that may outlast the video, a live recording without a duration, a GIF (whose length
    counts its last frame's hold), an image. The frames are the stream's exact count (mp4, mov)."""
    try:
        import av  # PyAV: its demuxer reads the header OpenCV does not expose
        with av.open(str(path)) as c:
            videos = [st for st in c.streams if st.type == "video"]
            if len(videos) != 1 or c.format.name == "gif" or c.format.name.endswith("_pipe"):
                return math.nan, 0
            st = videos[0]
            frames = max(0, int(st.frames or 0))
            if st.duration and st.time_base:
                return float(st.duration * st.time_base), frames
            if len(c.streams) == 1 and c.duration:
                return c.duration / av.time_base, frames
    except Exception:  # noqa: BLE001 - no PyAV, or a file PyAV cannot open that OpenCV could: no claim
        pass
    return math.nan, 0


def ended_early(counts: dict, path: str | os.PathLike) -> str:
    """A note when the frames of a file read to its end (``constant_rate_frames``'s counts) stop well before
    the length its header gives (``header_length``), and, where the header counts its frames, fewer were
    decoded (so that a last frame held long is no gap): a download or copy cut short, or damaged data,
    which decodes to its first part only. '' when nothing is amiss, when the header gives no video length,
    or when the file was not read to its end."""
    read = counts.get("read_s", math.nan)
    if not math.isfinite(read) or counts.get("breaks"):  # (a break's jump is in the header's length, not the frames')
        return ""
    header, frames = header_length(path)
    if not math.isfinite(header) or header - read <= max(0.1 * header, 0.25):
        return ""
    if frames and counts.get("decoded", 0) >= frames:
        return ""
    return (f"its frames end at {read:.2f} s though its header says {header:.2f} s (cut short or damaged?): "
            f"only what could be decoded was read")


def read_video(
    path: str | os.PathLike, max_frames: int | None = None, max_bytes: int | None = None,
    shrink_to: int | None = None, counts: dict | None = None,
) -> tuple[np.ndarray, float]:
    """Decode a video file with OpenCV into (frames uint8 [T, H, W, 3] RGB, fps).

    Reading stops after ``max_frames`` frames, so memory stays bounded on long clips. Files larger than
    ``max_bytes`` are refused before decoding. If the container reports no usable frame rate (<= 0, nan or
    more than ``MAX_SOURCE_FPS``), ``DEFAULT_FPS`` (8.0) is returned; where its timestamps say another rate
    (``source_timing``), theirs. A variable frame rate is laid on a constant grid at that rate by the file's
    timestamps (``constant_rate_frames``), so that the clip keeps its speed and length; ``counts`` (a dict)
    receives how many frames that repeated and dropped. Raises ``VideoError`` for missing, empty, corrupt,
    non-video or too-large files, and for frames that would take more than ``MAX_READ_BYTES`` (8 GiB).
    ``shrink_to`` downscales each frame as it is decoded so that its short
    side is that many pixels (as ``resize_center_crop`` would, before its crop): a long or large clip
    then never sits in memory at full resolution.
    """
    if max_frames is not None:
        max_frames = _check_positive_int(max_frames, "max_frames")
    if shrink_to is not None:
        shrink_to = _check_positive_int(shrink_to, "shrink_to")
    if max_bytes is not None:
        max_bytes = _check_positive_int(max_bytes, "max_bytes", minimum=0)
    path = _check_path(path)
    p = Path(path)
    if not p.exists():
        raise VideoError(f"could not read video: file not found: {str(path)!r}")
    if not p.is_file():
        raise VideoError(f"could not read video: not a regular file: {str(path)!r}")
    size = p.stat().st_size
    if size == 0:
        raise VideoError(f"could not read video: file is empty (0 bytes): {str(path)!r}")
    if max_bytes is not None and size > max_bytes:
        raise VideoError(
            f"video file is too large: {size} bytes exceeds the limit of {max_bytes} bytes: {str(path)!r}"
        )

    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise VideoError(
                f"could not read video: the file is not a video or is corrupt (OpenCV could not open it): "
                f"{str(path)!r}"
            )
        if _fourcc(cap.get(cv2.CAP_PROP_FOURCC)) in _TEXT_CODEC_TAGS:
            raise VideoError(f"could not read video: the file is text, not a video: {str(path)!r}")
        timing, aspect = source_timing(cap, p), pixel_aspect(cap)
        fps = timing.fps

        def convert(bgr):
            rgb = to_rgb(bgr, aspect)
            return _resize_short_side(rgb, shrink_to) if shrink_to is not None and min(rgb.shape[:2]) > shrink_to \
                else rgb

        frames: list[np.ndarray] = []
        for rgb in constant_rate_frames(cap, convert=convert, counts=counts, **timing._asdict()):  # keeps its speed
            if max_frames is not None and len(frames) >= max_frames:
                break
            if (len(frames) + 1) * rgb.nbytes > MAX_READ_BYTES:
                raise VideoError(
                    f"could not read video: its frames would take more than {MAX_READ_BYTES / 2**30:g} GiB "
                    f"({len(frames)} frames of {rgb.shape[1]} x {rgb.shape[0]} at {fps:.3g} fps so far); read its "
                    f"start (max_frames) or smaller frames (shrink_to): {str(path)!r}")
            if frames and rgb.shape != frames[0].shape:
                raise VideoError(
                    f"could not read video: frame size changed from {frames[0].shape[:2]} to "
                    f"{rgb.shape[:2]} at frame {len(frames)}: {str(path)!r}"
                )
            frames.append(rgb)
    finally:
        cap.release()
    if not frames:
        raise VideoError(
            f"could not read video: no frames could be decoded (empty, corrupt or not a video): {str(path)!r}"
        )
    return np.ascontiguousarray(np.stack(frames).astype(np.uint8, copy=False)), fps


def read_resampled(path: str | os.PathLike, fps: float, size: int, max_frames: int,
                   counts: dict | None = None) -> tuple[np.ndarray, float, bool]:
    """A video file's frames at ``fps``, resized and centre-cropped to ``size`` x ``size`` as they are decoded:
    what ``resize_center_crop(resample_fps(*read_video(path), fps), size)`` gives, frame for frame, but holding
    only the frames kept (a 240 fps file read for 8 fps never holds its other 29 frames in 30, nor any frame
    at its own size). Returns (frames uint8 [T, size, size, 3], the source's rate, whether the file goes on
    past ``max_frames``, the most it returns). ``counts``: filled as ``constant_rate_frames`` fills it (what
    ``ended_early`` reads). Raises ``VideoError`` as ``read_video`` does."""
    dst = _check_fps(fps, "fps")
    size = _check_positive_int(size, "size")
    max_frames = _check_positive_int(max_frames, "max_frames")
    read_video(path, max_frames=1)  # its checks and messages: missing, empty, text, corrupt, no frame
    cap = cv2.VideoCapture(str(path))
    out: list[np.ndarray] = []
    n, j, last = 0, 0, (None, None)
    try:
        timing, aspect = source_timing(cap, path), pixel_aspect(cap)
        src = timing.fps
        for frame in constant_rate_frames(cap, counts=counts, **timing._asdict()):
            # output j shows source frame round(j src / dst)
            while len(out) < max_frames and math.floor(j * src / dst + 0.5 + 1e-9) == n:
                if last[0] is not frame:  # a frame shown several times is converted once
                    last = (frame, _resize_crop_frame(to_rgb(frame, aspect), size))
                out.append(last[1])
                j += 1
            n += 1
            if len(out) == max_frames and math.floor(n * dst / src + 1e-9) > max_frames:  # the clip goes on
                return np.stack(out), src, True
    finally:
        cap.release()
    if not out:
        raise VideoError(f"could not read video: no frames could be decoded: {str(path)!r}")
    t_out = max(1, int(math.floor(n * dst / src + 1e-9)))  # as resample_fps: the frames that start in the clip,
    out += [out[-1]] * (min(t_out, max_frames) - len(out))  # those past its last frame showing that frame
    return np.stack(out[:t_out]), src, t_out > max_frames


# ----------------------------------------------------------------------------- preprocessing
def resample_fps(frames: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Nearest-frame temporal resampling from ``src_fps`` to ``dst_fps``.

    The clip lasts ``duration = T / src_fps`` seconds; the output has ``max(1, floor(duration * dst_fps))``
    frames (every output frame starts inside the clip; at least one frame is kept). Output frame ``i``
    shows time ``t = i / dst_fps`` and takes source frame ``round(t * src_fps)`` (halves round up),
    clipped to ``[0, T - 1]``. Equal rates return a copy of the input. An output larger than both the
    input and ``MAX_RAW_BYTES``, or of more than ``MAX_RESAMPLED_FRAMES`` (100,000) frames, is refused
    (ValueError; ``prepare_video``'s ``max_frames`` keeps the start of a longer clip).
    """
    frames = _check_frames(frames)
    src = _check_fps(src_fps, "src_fps")
    dst = _check_fps(dst_fps, "dst_fps")
    if src == dst:
        return frames.copy()
    idx = _resample_index(frames.shape[0], src, dst)
    _check_output_bytes(len(idx), *frames.shape[1:3], frames.nbytes, f"resampling from {src:g} to {dst:g} fps",
                        "resample a shorter clip, or check the frame rates", MAX_RAW_BYTES)
    return frames[idx]


MAX_RESAMPLED_FRAMES = 100_000


def _resample_index(t_in: int, src: float, dst: float, limit: int | None = None) -> np.ndarray:
    """The source frame of each output frame of resample_fps, at most ``limit`` of them."""
    # the small epsilon keeps exact products such as 48 / 30 * 7.5 = 12 from flooring to 11
    t_out = max(1, int(math.floor(t_in * dst / src + 1e-9)))
    if limit is not None:
        t_out = min(t_out, limit)
    elif t_out > MAX_RESAMPLED_FRAMES:
        raise ValueError(f"resampling {t_in} frames from {src:g} to {dst:g} fps would give {t_out} frames "
                         f"(more than {MAX_RESAMPLED_FRAMES}); check the frame rates, or keep the start "
                         "(prepare_video's max_frames)")
    idx = np.floor(np.arange(t_out, dtype=np.float64) * (src / dst) + 0.5 + 1e-9).astype(np.int64)
    return np.clip(idx, 0, t_in - 1)


def _short_side_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """(H, W) of an H x W frame resized so that its short side is ``size``."""
    scale = size / min(h, w)
    return (size, max(size, int(round(w * scale)))) if h <= w else (max(size, int(round(h * scale))), size)


def _resize_short_side(frame: np.ndarray, size: int) -> np.ndarray:
    """One frame (H, W, 3) resized so that its short side is ``size`` (INTER_AREA down, INTER_LINEAR up)."""
    h, w = frame.shape[:2]
    scale = size / min(h, w)
    new_h, new_w = _short_side_shape(h, w, size)
    if (new_h, new_w) == (h, w):
        return frame
    return cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _resize_crop_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """One frame (H, W, 3) -> (size, size, 3) as ``resize_center_crop`` describes."""
    h, w = frame.shape[:2]
    if (h, w) == (size, size):
        return frame
    short = min(h, w)
    new_h, new_w = _short_side_shape(h, w, size)
    if new_h * new_w <= max(h * w, 16 * size * size):
        # the short-side resize is no larger than the source frame or 16 output frames: resize, then crop
        resized = _resize_short_side(frame, size)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return resized[top : top + size, left : left + size]
    # an upscaled frame wider than 16:1 (a 2 x 16000 frame would become 64 x 512000): crop the centred
    # short-side square in source pixels first, which is the part the crop above keeps, up to rounding
    top, left = (h - short) // 2, (w - short) // 2
    square = frame[top : top + short, left : left + short]
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)


def resize_center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize so the short side equals ``size`` (INTER_AREA down, INTER_LINEAR up), then centre-crop
    to ``size`` x ``size``. Frames already ``size`` x ``size`` are returned unchanged (as a copy).

    Frames are done one at a time, so memory is the output plus one resized frame. Frames upscaled with
    an aspect ratio beyond 16:1 are cropped first (the centred short-side square) and then resized, which
    matches resize-then-crop up to a sub-pixel shift. An output larger than both the input and
    ``MAX_RAW_BYTES`` is refused (ValueError).
    """
    frames = _check_frames(frames)
    size = _check_positive_int(size, "size")
    t, h, w, _ = frames.shape
    if h == size and w == size:
        return frames.copy()
    _check_output_bytes(t, size, size, frames.nbytes, f"resizing to {size} x {size}",
                        "use a smaller size or fewer frames", MAX_RAW_BYTES)
    out = np.empty((t, size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = _resize_crop_frame(frame, size)
    return out


def valid_length(T: int) -> bool:
    """True if ``T`` is a clip length the model accepts: 1 + 4n with n >= 0."""
    return isinstance(T, (int, np.integer)) and T >= 1 and (T - 1) % 4 == 0


def nearest_valid_length(T: int, mode: str = "pad") -> int:
    """The valid length (1 + 4n) that ``fit_length`` produces from ``T`` frames: the next one up for
    ``mode="pad"``, the previous one down (at least 1) for ``mode="trim"``."""
    T = _check_positive_int(T, "T")
    if mode == "pad":
        return 1 + 4 * math.ceil((T - 1) / 4)
    if mode == "trim":
        return 1 + 4 * ((T - 1) // 4)
    raise ValueError(f"mode must be 'pad' or 'trim', got {mode!r}")


def fit_length(frames: np.ndarray, mode: str = "pad") -> np.ndarray:
    """Make the number of frames 1 + 4n: ``"pad"`` repeats the last frame up to the next valid length,
    ``"trim"`` drops frames at the end down to the previous valid length (at least 1)."""
    frames = _check_frames(frames)
    t = frames.shape[0]
    target = nearest_valid_length(t, mode)
    if target == t:
        return frames.copy()
    if target < t:
        return frames[:target].copy()
    tail = np.repeat(frames[-1:], target - t, axis=0)
    return np.concatenate([frames, tail], axis=0)


def prepare_video(
    frames: np.ndarray,
    fps: float,
    target_fps: float = DEFAULT_FPS,
    size: int = 64,
    max_frames: int | None = None,
) -> np.ndarray:
    """Turn a decoded clip into model input: uint8 [T, size, size, 3] at ``target_fps`` with T = 1 + 4n.

    Steps: resample to ``target_fps``, keep at most ``max_frames`` frames, resize + centre-crop to
    ``size``, then pad (repeat the last frame) to a valid length. With ``max_frames`` set the result
    never exceeds it: if padding would go past the cap, the clip is trimmed to the previous valid
    length instead. A result larger than both the input and ``MAX_OUTPUT_BYTES`` is refused
    (ValueError); pass ``max_frames`` to keep fewer frames.
    """
    frames = _check_frames(frames)
    if max_frames is not None:
        max_frames = _check_positive_int(max_frames, "max_frames")
    size = _check_positive_int(size, "size")
    src, dst = _check_fps(fps, "fps"), _check_fps(target_fps, "target_fps")
    # the cap applies to the resampled indices, so a clip upsampled in time is never built past it
    t_in = frames.shape[0]
    idx = _resample_index(t_in, src, dst, max_frames) if src != dst else np.arange(min(t_in, max_frames or t_in))
    mode = "pad"
    if max_frames is not None and nearest_valid_length(len(idx), "pad") > max_frames:
        mode = "trim"
    t_out = nearest_valid_length(len(idx), mode)
    idx = np.concatenate([idx[:t_out], np.full(max(0, t_out - len(idx)), idx[-1])])  # trim, or pad with the last
    _check_output_bytes(t_out, size, size, frames.nbytes, f"preparing {t_in} frames at {src:g} fps for {dst:g} fps",
                        "pass max_frames to keep fewer frames, or check the frame rates")
    # each source frame is resized once and then repeated, so memory is the output at model size
    out = np.empty((t_out, size, size, 3), dtype=np.uint8)
    starts = np.flatnonzero(np.diff(idx, prepend=-1))  # where the (non-decreasing) source index changes
    for start, end in zip(starts, [*starts[1:], t_out]):
        out[start] = _resize_crop_frame(frames[idx[start]], size)
        out[start + 1 : end] = out[start]
    return out


# ----------------------------------------------------------------------------- model conversion
def to_model(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 tensor [3, T, H, W] in [-1, 1]."""
    frames = _check_frames(frames)
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def from_model(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """float [3, T, H, W] in [-1, 1] -> uint8 [T, H, W, 3]; a batch [B, 3, T, H, W] gives
    [B, T, H, W, 3]. Values are clamped to [-1, 1] and rounded to the nearest integer; NaN or infinite
    values are refused (ValueError)."""
    if not isinstance(x, (torch.Tensor, np.ndarray)):  # a list of videos: torch's own error names no video
        raise ValueError(f"expected a tensor [3, T, H, W] or [B, 3, T, H, W], got {type(x).__name__} (a list of "
                         "videos: convert each, or torch.stack them)")
    x = torch.as_tensor(x).detach()
    if x.ndim not in (4, 5) or x.shape[-4] != 3:
        raise ValueError(f"expected a tensor of shape [3, T, H, W] or [B, 3, T, H, W], got {tuple(x.shape)}")
    x = x.to(device="cpu", dtype=torch.float32)
    if not torch.isfinite(x).all():  # a diverged model: say so rather than write black frames
        raise ValueError("the video holds NaN or infinite values (a model output gone wrong)")
    u8 = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    perm = (1, 2, 3, 0) if x.ndim == 4 else (0, 2, 3, 4, 1)
    return np.ascontiguousarray(u8.permute(*perm).numpy())


# ----------------------------------------------------------------------------- writing
# libx264 encodes at most this many pixels a side (measured: 16384 encodes, 16386 does not)
MAX_SIDE = 16384


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = DEFAULT_FPS,
    crf: int = 18,
    upscale: int = 1,
) -> str:
    """Write uint8 [T, H, W, 3] RGB frames as a browser-playable H.264 mp4 and return the path.

    Encoded with libx264 (yuv420p, preset veryfast, ``crf`` 0-51) and ``+faststart`` so browsers can
    start playback before the download ends. ``upscale`` > 1 enlarges frames by nearest-neighbour
    (e.g. 4 to show 64 px clips at 256 px). Odd widths/heights are padded to even by repeating the
    last row/column. ``fps`` may be fractional (stored as a fraction with denominator <= 1001). A file
    that cannot be written raises ValueError naming ``path``, and leaves no temporary file behind.
    """
    path = _check_path(path)
    frames = _check_frames(frames)
    fps = _check_fps(fps, "fps")
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be an integer in [0, 51], got {crf!r}")
    upscale = _check_positive_int(upscale, "upscale")
    h, w = frames.shape[1] * upscale, frames.shape[2] * upscale
    if max(h, w) > MAX_SIDE:
        raise ValueError(f"a {w} x {h} video (upscale {upscale}) is too large for H.264: at most {MAX_SIDE} "
                         "pixels a side")
    out_path = check_output(path)
    w, h = w + w % 2, h + h % 2  # odd sizes are padded to even, frame by frame in _encode
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps is too small to encode: {fps!r}")

    import av  # PyAV, imported when a video is written: reading and the models need no PyAV

    # written under a temporary name and renamed into place: a failed write leaves no half-written file and
    # keeps what was there, and a reader never sees a file being written
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        _encode(av, tmp, frames, rate, w, h, crf, upscale)
        os.replace(tmp, out_path)
    except (OSError, av.error.FFmpegError) as e:
        raise ValueError(f"could not write the video {path!r}: {getattr(e, 'strerror', None) or e}") from None
    finally:
        with contextlib.suppress(OSError):  # a failed unlink must not hide the error above
            tmp.unlink(missing_ok=True)
    return str(out_path)


def _encode(av, out_path: Path, frames: np.ndarray, rate: Fraction, w: int, h: int, crf: int, upscale: int) -> None:
    with av.open(str(out_path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = w
        stream.height = h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "veryfast"}
        for frame in frames:  # upscaled and padded one frame at a time: memory is one large frame
            if upscale > 1:
                frame = np.repeat(np.repeat(frame, upscale, axis=0), upscale, axis=1)
            if frame.shape[:2] != (h, w):
                frame = np.pad(frame, ((0, h - frame.shape[0]), (0, w - frame.shape[1]), (0, 0)), mode="edge")
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)


# what a browser's <video> plays, by file extension: codec names as FFmpeg gives them, and for H.264 its
# pixel formats (Chrome and Firefox play 8-bit 4:2:0 only)
_PLAYABLE = {".mp4": {"h264", "vp9", "av1"}, ".m4v": {"h264"}, ".webm": {"vp8", "vp9", "av1"}}
_PLAYABLE_H264 = {"yuv420p", "yuvj420p"}


def browser_playable(path: str | os.PathLike) -> bool:
    """Whether a web browser plays this video file as it is: H.264 (8-bit 4:2:0) in mp4, VP8 / VP9 / AV1
    in webm, VP9 / AV1 in mp4. False for other codecs and containers (OpenCV's mp4v, MJPEG or ProRes in avi
    or mov, ...) and for a file PyAV cannot open."""
    path = _check_path(path)
    allowed = _PLAYABLE.get(Path(path).suffix.lower())
    if not allowed or not os.path.isfile(path):
        return False
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return False
            ctx = container.streams.video[0].codec_context
            # the codec's own name: the decoder's may be a library's (AV1 decodes with libdav1d)
            codec = getattr(ctx.codec, "canonical_name", None) or ctx.name
            pix = ctx.format.name if ctx.format is not None else None
    except (av.error.FFmpegError, OSError, ValueError):
        return False
    return codec in allowed and (codec != "h264" or pix in _PLAYABLE_H264)


def write_playable(src: str | os.PathLike, path: str | os.PathLike, max_side: int = 640,
                   max_seconds: float | None = None, crf: int = 23) -> str:
    """Re-encode the video file ``src`` as a browser-playable H.264 mp4 at ``path`` (``write_video``'s
    encoder) and return the path: its own frame rate (a variable one laid on a constant grid, as
    ``read_video`` does), at most ``max_side`` pixels on its longer side (never
    enlarged; even sizes), its first ``max_seconds`` when given, no audio. Frames are read by OpenCV, as
    ``read_video`` reads them, and encoded one at a time, so memory stays at one frame whatever the length.
    Raises ``VideoError`` for a file OpenCV cannot read, ValueError for one that cannot be written."""
    src, path = _check_path(src, "src"), _check_path(path)
    max_side = _check_positive_int(max_side, "max_side", minimum=2)
    if max_seconds is not None and not (isinstance(max_seconds, numbers.Real) and max_seconds > 0):
        raise ValueError(f"max_seconds must be a positive number, got {max_seconds!r}")
    read_video(src, max_frames=1)  # read_video's checks and messages: missing, empty, text, corrupt, no frame
    cap = cv2.VideoCapture(src)
    try:
        if not cap.isOpened():
            raise VideoError(f"could not read video: the file is not a video or is corrupt: {src!r}")
        timing, aspect = source_timing(cap, src), pixel_aspect(cap)
        fps = timing.fps
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w < 1 or h < 1:
            raise VideoError(f"could not read video: no frame size: {src!r}")
        w, h = display_size(w, h, aspect)
        scale = min(1.0, max_side / max(w, h))
        ow, oh = max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)
        limit = None if max_seconds is None else max(1, math.ceil(max_seconds * fps))
        count = 0

        def convert(bgr):
            rgb = to_rgb(bgr)  # one resize, to the display shape at most max_side
            return cv2.resize(rgb, (ow, oh), interpolation=cv2.INTER_AREA) if rgb.shape[:2] != (oh, ow) else rgb

        def frames():
            nonlocal count
            for rgb in constant_rate_frames(cap, convert=convert, **timing._asdict()):  # keeps its speed
                if limit is not None and count >= limit:
                    return
                count += 1
                yield rgb

        out_path = check_output(path)
        import av

        tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            _encode(av, tmp, frames(), Fraction(fps).limit_denominator(1001), ow, oh, crf, 1)
            if count == 0:
                raise VideoError(f"could not read video: no frames could be decoded: {src!r}")
            os.replace(tmp, out_path)
        except (OSError, av.error.FFmpegError) as e:
            raise ValueError(f"could not write the video {path!r}: {getattr(e, 'strerror', None) or e}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    finally:
        cap.release()
    return str(out_path)


# ----------------------------------------------------------------------------- tiling
def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of uint8 [T, H, W, 3] frames by an integer factor >= 1."""
    frames, factor = _check_frames(frames), _check_positive_int(factor, "factor")
    t, h, w = frames.shape[:3]
    _check_output_bytes(t, h * factor, w * factor, frames.nbytes, f"upscale by {factor}", "use a smaller factor",
                        most=MAX_RAW_BYTES)  # an absurd factor, not a long clip at 4x (a long reconstruct's tiles)
    return frames if factor == 1 else np.repeat(np.repeat(frames, factor, axis=1), factor, axis=2)


def label(frames: np.ndarray, text: str) -> np.ndarray:
    """Write text in the bottom-left corner of every uint8 [T, H, W, 3] frame (white with a dark outline)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    out = _check_frames(frames).copy()
    scale = max(0.4, out.shape[2] / 320)
    org = (4, out.shape[1] - 6)
    for f in out:  # the outline is the text shifted around (a thicker stroke would also be wider)
        for dx, dy in ((-1, -1), (-1, 1), (1, -1), (1, 1), (0, 2), (2, 0), (-2, 0), (0, -2)):
            cv2.putText(f, text, (org[0] + dx, org[1] + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(f, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _pad_length(video: np.ndarray, t: int) -> np.ndarray:
    if video.shape[0] == t:
        return video
    return np.concatenate([video, np.repeat(video[-1:], t - video.shape[0], axis=0)], axis=0)


def side_by_side(videos: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Concatenate uint8 videos [T_i, H, W_i, 3] left to right with ``pad`` white pixels between them.

    All videos must share the same height; shorter ones are extended by repeating their last frame.
    """
    return _tile(videos, cols=max(1, len(videos)), pad=pad, same_width=False)


def grid(videos: list[np.ndarray], cols: int, pad: int = 2) -> np.ndarray:
    """Tile uint8 videos [T_i, H, W, 3] in rows of ``cols`` with ``pad`` white pixels between cells.

    All videos must share the same H and W; shorter ones are extended by repeating their last frame and
    empty cells of the last row are white.
    """
    return _tile(videos, cols=cols, pad=pad, same_width=True)


def _tile(videos: list[np.ndarray], cols: int, pad: int, same_width: bool) -> np.ndarray:
    if len(videos) == 0:
        raise ValueError("videos must contain at least one video, got an empty list")
    cols = _check_positive_int(cols, "cols")
    pad = _check_positive_int(pad, "pad", minimum=0)
    vids = [_check_frames(v, f"videos[{i}]") for i, v in enumerate(videos)]
    heights = {v.shape[1] for v in vids}
    if len(heights) != 1:
        raise ValueError(f"videos must all have the same height, got heights {[v.shape[1] for v in vids]}")
    widths = [v.shape[2] for v in vids]
    if same_width and len(set(widths)) != 1:
        raise ValueError(f"videos must all have the same width, got widths {widths}")
    t = max(v.shape[0] for v in vids)
    h = vids[0].shape[1]
    cols = min(cols, len(vids))
    rows = math.ceil(len(vids) / cols)
    # column widths: per column maximum (all equal for grid, per video for side_by_side)
    col_w = [max(widths[i] for i in range(c, len(vids), cols)) for c in range(cols)]
    out_h = rows * h + (rows - 1) * pad
    out_w = sum(col_w) + (cols - 1) * pad
    out = np.full((t, out_h, out_w, 3), 255, dtype=np.uint8)
    x_off = np.concatenate([[0], np.cumsum([cw + pad for cw in col_w])])
    for i, v in enumerate(vids):
        r, c = divmod(i, cols)
        y, x = r * (h + pad), int(x_off[c])
        out[:, y : y + h, x : x + v.shape[2]] = _pad_length(v, t)
    return out
