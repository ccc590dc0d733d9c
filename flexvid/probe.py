"""Attribute probe for the shapes world: reads colour, shape, size and motion back from a video.

Written from the world's specification (shared design note "shapes-world.md"), no learning. It scores
reconstructions and generated videos, so it is built not to be fooled by noisy output:

1. Pixels: the static dark background is estimated (Gaussian-weighted mean of the pixels whose channels
   all stay under ``BG_MAX``, pooled over frames). A pixel p is modelled as a mix of background b and a
   palette colour c, p = b + alpha (c - b), with alpha >= ``MIN_ALPHA`` = 0.5 (so a blurred edge stays
   where the sharp edge was): it takes the colour whose line it is closest to, when that residual is
   under ``COLOR_DIST`` and its largest channel is at least ``MIN_BRIGHT`` (background: [0, 70]).
   Pixels next to these, within ``GROW`` steps, also join with the looser residual ``LOOSE_DIST``
   (hysteresis: JPEG's subsampled chroma bleeds at the edges).
2. Per frame and per colour the largest 8-connected component is that colour's object; a frame counts
   when the component has at least ``MIN_AREA`` pixels. Colours are ranked by their mean component area
   over frames and only the largest ``n_objects`` are kept (a colour must be present in at least
   ``MIN_PRESENCE`` of the frames).
3. Shape and size: the 6 (shape, size) templates of the specification are fitted to the component in
   every frame (best intersection-over-union over all positions, ignoring pixels covered by other
   palette colours, since the second object may cover the main one); the template with the best mean
   IoU wins. When even that mean IoU is under ``MIN_FIT`` the colour's pixels are no object (scattered
   noise) and the next largest colour is tried.
4. Motion: the fitted template centre per frame gives a track; a robust (Theil-Sen) slope over the first
   17 frames times 16 is the net displacement (24 px for a moving object, 0 when still). Under
   ``STILL_DISP`` px it is "still", otherwise the dominant axis gives the direction (image y grows
   downward: "up" is decreasing y).

Validation on ground-truth clips (clean, blurred, noisy, JPEG, all three) and on control videos that must
be rejected (random noise, uniform gray, smooth coloured noise, another clip's video): ``validate()``, or
``python -m flexvid.probe --n 300``.

Known limit: when the second object covers most of the main one (both moving together, or a small main
object under a large one) the main object cannot be read. Of the first 3000 validation clips, 249 have the
main object less than 90% visible on average; of those, 4 fail clean (main object fully hidden) and 12
fail blurred + noisy + JPEG (only a sliver of a few pixels visible).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

import cv2
import numpy as np

from .cli import HelpFormatter
from .shapes import COLORS, COLOR_NAMES, SHAPES, SIZES, SIZE, SPLIT_SEEDS, ShapeObject, draw_object, make_clip

# ----------------------------------------------------------------------------- thresholds
COLOR_DIST = 45.0     # max RGB distance of a pixel to the background-to-colour line
LOOSE_DIST = 110.0    # looser residual for pixels next to strict ones (JPEG chroma bleeds at edges)
GROW = 2              # steps of growth from strict into loose pixels
MIN_ALPHA = 0.5       # min mixing weight of the colour (a blurred edge keeps the sharp edge at 0.5)
MAX_ALPHA = 1.35      # max mixing weight (brighter than the colour: not it)
MIN_BRIGHT = 90       # max channel of an object pixel; background <= 70, every palette colour has one >= 200
BG_MAX = 80           # pixels with all channels <= this are background samples (background: [0, 70])
BG_SIGMA = 6.0        # Gaussian window of the background estimate (background periods are 50-200 px)
BG_DEFAULT = 28.0     # background level when no pixel looks like background
MIN_AREA = 8          # pixels of a component for a frame to count (small triangle: 66 px, small circle: 81)
MIN_PRESENCE = 0.5    # fraction of frames in which a colour must be present to be detected
MIN_FIT = 0.5         # mean template IoU below which a colour's pixels are not an object
STILL_DISP = 8.0      # px over 16 frames: below this net displacement the object is still (moving: 24)
MOTION_FRAMES = 17    # motion is read over the first frames only (no bounce within 17 frames)
OCCLUDED_PENALTY = 0.05  # tie-break: prefer templates that need fewer pixels hidden under other colours

_PALETTE = np.array([COLORS[c] for c in COLOR_NAMES], np.float32)  # (6, 3)
_PAD = max(SIZES.values()) + 1


def _make_templates() -> list[tuple[str, str, np.ndarray]]:
    out = []
    for shape in SHAPES:
        for size, r in SIZES.items():
            img = np.zeros((2 * r + 1, 2 * r + 1, 3), np.uint8)
            draw_object(img, shape, (255, 255, 255), r, r, r)
            out.append((shape, size, (img[..., 0] > 0).astype(np.float32)))
    return out


_TEMPLATES = _make_templates()


@dataclass
class Detection:
    color: str
    shape: str            # one of SHAPES
    size: str             # "small" / "large"
    motion: str           # one of MOTIONS, or "unknown" when too few frames
    area: float           # mean pixel area of the component over all frames (0 where absent)
    track: np.ndarray     # (T, 2) fitted centre (x, y) per frame, nan where absent
    fit: float = 0.0      # mean IoU of the chosen template over the frames where present
    presence: float = 0.0  # fraction of frames where present
    displacement: tuple[float, float] = field(default=(0.0, 0.0))  # net (dx, dy) over 16 frames


# ----------------------------------------------------------------------------- input handling
def as_video(video) -> np.ndarray:
    """A video as (T, 64, 64, 3) uint8 RGB.

    Accepts (T, H, W, 3) or (3, T, H, W), numpy or torch: integers are read as [0, 255]; floats as
    [-1, 1] (as produced by ``shapes.to_tensor``; clipped, so slight overshoot is fine).
    """
    if hasattr(video, "detach"):  # torch tensor
        video = video.detach().cpu()
        video = (video.float() if video.is_floating_point() else video).numpy()
    v = np.asarray(video)
    if v.ndim != 4:
        raise ValueError(f"expected a 4-d video, got shape {v.shape}")
    if v.shape[-1] != 3 and v.shape[0] == 3:
        v = np.moveaxis(v, 0, -1)
    if v.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) or (3, T, H, W), got shape {v.shape}")
    if np.issubdtype(v.dtype, np.integer) or v.dtype == np.bool_:
        v = np.clip(v, 0, 255).astype(np.uint8)
    elif v.dtype != np.uint8:
        v = v.astype(np.float32)
        if v.size and float(np.nanmax(np.abs(v))) > 2.0:
            raise ValueError("float videos are expected in [-1, 1] (shapes.to_tensor); pass uint8 for [0, 255]")
        v = np.clip(np.rint((np.nan_to_num(v) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(v)


def estimate_background(video: np.ndarray) -> np.ndarray:
    """(H, W, 3) float estimate of the static dark background.

    Pixels whose channels all stay at most ``BG_MAX`` (and that are at least 2 px away from brighter
    pixels) are averaged with a Gaussian window (normalised convolution), pooled over all frames.
    """
    v = video.astype(np.float32)
    bright = (video.max(-1) > BG_MAX).astype(np.uint8)
    k = np.ones((5, 5), np.uint8)
    num = np.zeros(v.shape[1:], np.float32)
    den = np.zeros(v.shape[1:3], np.float32)
    for f in range(v.shape[0]):
        w = 1.0 - cv2.dilate(bright[f], k).astype(np.float32)
        num += cv2.GaussianBlur(v[f] * w[..., None], (0, 0), BG_SIGMA)
        den += cv2.GaussianBlur(w, (0, 0), BG_SIGMA)
    fallback = np.full(3, BG_DEFAULT, np.float32)
    total = den.sum()
    if total > 0:
        fallback = num.reshape(-1, 3).sum(0) / total
    ok = den > 1e-3 * v.shape[0]
    bg = np.where(ok[..., None], num / np.maximum(den, 1e-12)[..., None], fallback)
    return np.clip(bg, 0, BG_MAX)


def classify_pixels(video: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """(T, H, W) int8: index of the palette colour of each pixel, -1 for background / unknown.

    Each pixel p is modelled as a mix of the background b and a palette colour c,
    p = b + alpha (c - b): it belongs to the colour with the smallest residual distance to that line,
    when the residual is under ``COLOR_DIST`` and alpha is at least ``MIN_ALPHA`` (0.5 keeps a blurred
    edge where the sharp edge was).
    """
    if background is None:
        background = estimate_background(video)
    p = video.astype(np.float32) - background  # (T, H, W, 3)
    d = _PALETTE[None] - background[..., None, :]  # (H, W, 6, 3)
    alpha = np.einsum("thwk,hwck->thwc", p, d) / np.einsum("hwck,hwck->hwc", d, d)
    res = np.linalg.norm(p[..., None, :] - alpha[..., None] * d, axis=-1)  # (T, H, W, 6)
    res = np.where((alpha >= MIN_ALPHA) & (alpha <= MAX_ALPHA), res, np.inf)
    idx = res.argmin(-1)
    best = np.take_along_axis(res, idx[..., None], -1)[..., 0]
    bright = video.max(-1) >= MIN_BRIGHT
    strict = np.where((best < COLOR_DIST) & bright, idx, -1)
    loose = np.where((best < LOOSE_DIST) & bright, idx, -1)
    # hysteresis: grow the strict pixels of a colour into its loose pixels, at most GROW steps
    out = strict.copy()
    for _ in range(GROW):
        nb = _dilate_labels(out)
        out = np.where((out < 0) & (loose >= 0) & (nb == loose), loose, out)
    return out.astype(np.int8)


def _dilate_labels(lab: np.ndarray) -> np.ndarray:
    """For each pixel, a colour index found among its 8 neighbours (-1 if none; any one if several)."""
    T, H, W = lab.shape
    p = np.pad(lab, ((0, 0), (1, 1), (1, 1)), constant_values=-1)
    out = np.full_like(lab, -1)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            sh = p[:, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
            out = np.where(out < 0, sh, out)
    return out


def _largest_component(mask: np.ndarray) -> np.ndarray | None:
    m = mask.astype(np.uint8)
    if m.sum() < MIN_AREA:
        return None
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return None
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[k, cv2.CC_STAT_AREA] < MIN_AREA:
        return None
    return lab == k


def _fit_frame(comp: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best IoU (and centre) of each template for one component; pixels in ``other`` are unknown."""
    P = _PAD
    M = np.pad(comp.astype(np.float32), P)
    known = np.pad((~other | comp).astype(np.float32), P, constant_values=1.0)
    m_area = float(comp.sum())
    ious, centres = np.zeros(len(_TEMPLATES)), np.zeros((len(_TEMPLATES), 2))
    for i, (_, size, t) in enumerate(_TEMPLATES):
        r = SIZES[size]
        inter = cv2.matchTemplate(M, t, cv2.TM_CCORR)
        t_known = cv2.matchTemplate(known, t, cv2.TM_CCORR)
        iou = inter / np.maximum(m_area + t_known - inter, 1.0)
        score = iou - OCCLUDED_PENALTY * (t.sum() - t_known) / t.sum()
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        ious[i] = iou[y, x]
        centres[i] = (x + r - P, y + r - P)
    return ious, centres


def _theil_sen(t: np.ndarray, y: np.ndarray) -> float:
    i, j = np.triu_indices(len(t), 1)
    return float(np.median((y[j] - y[i]) / (t[j] - t[i])))


def _motion(track: np.ndarray) -> tuple[str, tuple[float, float]]:
    tr = track[:MOTION_FRAMES]
    t = np.nonzero(np.isfinite(tr[:, 0]))[0]
    if len(t) < 3:
        return "unknown", (float("nan"), float("nan"))
    steps = MOTION_FRAMES - 1
    dx, dy = _theil_sen(t, tr[t, 0]) * steps, _theil_sen(t, tr[t, 1]) * steps
    if np.hypot(dx, dy) < STILL_DISP:
        return "still", (dx, dy)
    if abs(dx) >= abs(dy):
        return ("right" if dx > 0 else "left"), (dx, dy)
    return ("down" if dy > 0 else "up"), (dx, dy)


# ----------------------------------------------------------------------------- detection
def detect(video, n_objects: int = 1) -> list[Detection]:
    """The largest ``n_objects`` palette-coloured objects, largest mean area first (may be fewer)."""
    video = as_video(video)
    T = video.shape[0]
    labels = classify_pixels(video)
    comps: dict[int, list] = {}
    areas = np.zeros((len(COLOR_NAMES), T))
    for c in range(len(COLOR_NAMES)):
        mask_c = labels == c
        if mask_c.sum() < MIN_AREA * T * MIN_PRESENCE:
            continue
        comps[c] = [_largest_component(mask_c[f]) for f in range(T)]
        areas[c] = [0 if m is None else m.sum() for m in comps[c]]
    presence = (areas > 0).mean(1)
    order = [c for c in np.argsort(-areas.mean(1), kind="stable") if presence[c] >= MIN_PRESENCE]
    out = []
    for c in order:
        if len(out) >= int(n_objects):
            break
        frames = [f for f in range(T) if comps[c][f] is not None]
        ious = np.zeros((len(frames), len(_TEMPLATES)))
        cents = np.zeros((len(frames), len(_TEMPLATES), 2))
        for k, f in enumerate(frames):
            other = (labels[f] >= 0) & (labels[f] != c)
            ious[k], cents[k] = _fit_frame(comps[c][f], other)
        mean_iou = ious.mean(0)
        best = int(np.argmax(mean_iou))
        fit = float(mean_iou[best])
        shape, size, _ = _TEMPLATES[best]
        track = np.full((T, 2), np.nan)
        track[frames] = cents[:, best]
        if fit < MIN_FIT:  # no shape of the world fits: not an object (e.g. scattered noise pixels)
            continue
        motion, disp = _motion(track)
        out.append(Detection(COLOR_NAMES[c], shape, size, motion, float(areas[c].mean()), track, fit,
                             float(presence[c]), (float(disp[0]), float(disp[1]))))
    return out


# ----------------------------------------------------------------------------- scoring
ATTRS = ("color", "shape", "size", "motion")


def _objects_of(x) -> list[ShapeObject]:
    return list(x.objects) if hasattr(x, "objects") else list(x)


def score_detections(dets: list[Detection], objects: list[ShapeObject]) -> dict:
    """Booleans for the main object (objects[0]) given detections sorted by area."""
    main = objects[0]
    dets = dets[: len(objects)]
    det = next((d for d in dets if d.color == main.color), dets[0] if dets else None)
    if det is None:
        res = {a: False for a in ATTRS}
    else:
        res = {a: getattr(det, a) == getattr(main, a) for a in ATTRS}
    res["all"] = all(res[a] for a in ATTRS)
    res["detected"] = det is not None
    return res


def matches(pred: Detection, obj: ShapeObject) -> dict:
    """Per-attribute agreement of one detection with one true object, plus "all"."""
    res = {a: getattr(pred, a) == getattr(obj, a) for a in ATTRS}
    res["all"] = all(res.values())
    return res


def score_clip(video, objects) -> dict:
    """Main-object booleans {"color","shape","size","motion","all","detected"}.

    ``objects``: a Clip or its list of ShapeObject. The main object's detection is the one among the
    top len(objects) detections that has the main object's colour, else the largest (colour wrong).
    """
    objects = _objects_of(objects)
    return score_detections(detect(video, n_objects=len(objects)), objects)


def score_videos(videos, clips_or_objects) -> dict:
    """Accuracy rates per attribute (and "all", "detected") over paired videos and clips / objects."""
    videos, refs = list(videos), list(clips_or_objects)
    if len(videos) != len(refs):
        raise ValueError(f"{len(videos)} videos but {len(refs)} references")
    keys = (*ATTRS, "all", "detected")
    tot = dict.fromkeys(keys, 0)
    for v, ref in zip(videos, refs):
        r = score_clip(v, ref)
        for k in keys:
            tot[k] += int(r[k])
    n = max(len(videos), 1)
    out = {k: tot[k] / n for k in keys}
    out["n"] = len(videos)
    return out


# ----------------------------------------------------------------------------- degradations
def blur(video: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in video])


def add_noise(video: np.ndarray, sigma: float = 10.0, rng: np.random.Generator | None = None) -> np.ndarray:
    rng = np.random.default_rng(0) if rng is None else rng
    return np.clip(np.rint(video + rng.normal(0, sigma, video.shape)), 0, 255).astype(np.uint8)


def jpeg(video: np.ndarray, quality: int = 50) -> np.ndarray:
    """Per-frame JPEG round trip (OpenCV, 4:2:0 chroma subsampling)."""
    out = []
    for f in video:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return np.stack(out)


DEGRADATIONS = {
    "clean": lambda v, rng: v,
    "blur": lambda v, rng: blur(v, 1.0),
    "noise": lambda v, rng: add_noise(v, 10.0, rng),
    "jpeg": lambda v, rng: jpeg(v, 50),
    "blur+noise+jpeg": lambda v, rng: jpeg(add_noise(blur(v, 1.0), 10.0, rng), 50),
}


def noise_video(T: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random RGB noise, independent per pixel."""
    return rng.integers(0, 256, (T, SIZE, SIZE, 3), dtype=np.uint8)


def smooth_noise_video(T: int, rng: np.random.Generator, sigma: float = 3.0) -> np.ndarray:
    """Spatially smooth coloured noise (blobs of every hue), mean 128, std about 80."""
    v = rng.normal(0, 1, (T, SIZE, SIZE, 3)).astype(np.float32)
    v = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in v])
    v = (v - v.mean()) / max(float(v.std()), 1e-6) * 80 + 128
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def blank_video(T: int, level: int = 128) -> np.ndarray:
    return np.full((T, SIZE, SIZE, 3), level, np.uint8)


# Videos that must NOT be scored correct for a clip's objects (rate of "all" should be near 0):
# random noise, uniform mid-gray, smooth coloured noise, and the video of another clip.
CONTROLS = ("noise_video", "blank_video", "smooth_noise_video", "mismatched")


def validate(n: int = 300, seed_split: str = "val", T: int = 17, degradations: list[str] | None = None,
             start: int = 0, return_failures: bool = False) -> dict:
    """Probe accuracy on ground-truth clips, clean and degraded, and on control videos.

    Returns {case: {"color", "shape", "size", "motion", "all", "detected": rate, "n": n}} for each
    degradation in ``DEGRADATIONS`` (accuracy: should be near 1) and each of ``CONTROLS`` (the rate at
    which a video that is not the clip is scored correct for the clip's main object: should be near 0;
    "mismatched" scores clip i + n's video against clip i). With ``return_failures`` each entry also
    lists the clip indices that failed (for controls: that were scored all-correct).
    """
    seed = SPLIT_SEEDS[seed_split]
    names = list(DEGRADATIONS) if degradations is None else degradations
    keys = (*ATTRS, "all", "detected")
    tot = {d: dict.fromkeys(keys, 0) for d in [*names, *CONTROLS]}
    fails: dict[str, list] = {d: [] for d in tot}
    rng = np.random.default_rng(1234)
    for i in range(start, start + n):
        clip = make_clip(seed, i, T)
        cases = {d: DEGRADATIONS[d](clip.video, rng) for d in names}
        cases["noise_video"] = noise_video(T, rng)
        cases["blank_video"] = blank_video(T)
        cases["smooth_noise_video"] = smooth_noise_video(T, rng)
        cases["mismatched"] = make_clip(seed, i + n, T).video
        for d, v in cases.items():
            r = score_clip(v, clip.objects)
            for k in keys:
                tot[d][k] += int(r[k])
            if (not r["all"]) != (d in CONTROLS):
                fails[d].append(i)
    out = {}
    for d in tot:
        out[d] = {k: tot[d][k] / max(n, 1) for k in keys}
        out[d]["n"] = n
        if return_failures:
            out[d]["failures"] = fails[d]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(formatter_class=HelpFormatter,
                                 description="Validate the shapes attribute probe on ground-truth clips.")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--split", default="val")
    ap.add_argument("--T", type=int, default=17)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--failures", action="store_true", help="list failing clip indices")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    a = ap.parse_args(argv)
    res = validate(a.n, a.split, a.T, start=a.start, return_failures=a.failures)
    if a.json:
        print(json.dumps(res, indent=1))
        return res
    print(f"probe validation: {a.n} {a.split} clips, T={a.T}; degradations: accuracy, controls: rate scored correct")
    for d, r in res.items():
        print(f"{d:18s} " + " ".join(f"{k}={r[k]:.3f}" for k in (*ATTRS, "all", "detected")),
              *(["failures=" + str(r["failures"])] if a.failures else []))
    return res


if __name__ == "__main__":
    main()
