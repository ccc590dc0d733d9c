"""The shapes world: a procedural video world with labelled attributes.

Specification: shared design note "shapes-world.md". Every clip is a pure function of (seed, index, T):
64 x 64 RGB uint8 frames at 8 fps, a smooth dark static background and one or two solid objects
(colour, shape, size, motion) drawn with OpenCV's LINE_8. The values below are the specification and
other code (probes, evaluations) relies on them exactly.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, asdict

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

# ----------------------------------------------------------------------------- specification
SIZE = 64
FPS = 8
COLORS = {
    "red": (230, 40, 40),
    "green": (40, 200, 70),
    "blue": (40, 100, 240),
    "yellow": (240, 220, 40),
    "magenta": (220, 60, 220),
    "cyan": (40, 210, 220),
}
COLOR_NAMES = list(COLORS)
SHAPES = ["circle", "square", "triangle"]
SIZES = {"small": 5, "large": 9}
SIZE_NAMES = list(SIZES)
MOTIONS = ["left", "right", "up", "down", "still"]
VELOCITY = {"left": (-1.5, 0.0), "right": (1.5, 0.0), "up": (0.0, -1.5), "down": (0.0, 1.5), "still": (0.0, 0.0)}
SPEED = 1.5
NUM_CLASSES = len(COLOR_NAMES) * len(SHAPES) * len(MOTIONS)  # 90
# Disjoint seeds for the splits; a clip is (seed, index, T).
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


@dataclass
class ShapeObject:
    color: str
    shape: str
    size: str
    motion: str
    start: tuple[float, float]  # start centre (cx, cy), floats

    def caption(self) -> str:
        if self.motion == "still":
            return f"a {self.size} {self.color} {self.shape} standing still"
        return f"a {self.size} {self.color} {self.shape} moving {self.motion}"


@dataclass
class Clip:
    video: np.ndarray  # (T, 64, 64, 3) uint8
    objects: list[ShapeObject]
    seed: int
    index: int

    @property
    def caption(self) -> str:
        return " and ".join(o.caption() for o in self.objects)

    @property
    def label(self) -> int:
        return class_index(self.objects[0].color, self.objects[0].shape, self.objects[0].motion)

    @property
    def metadata(self) -> dict:
        return {"seed": self.seed, "index": self.index, "caption": self.caption, "label": self.label,
                "objects": [asdict(o) for o in self.objects]}


def class_index(color: str, shape: str, motion: str) -> int:
    """Class of the main object: colour slowest, motion fastest (6 x 3 x 5 = 90)."""
    return (COLOR_NAMES.index(color) * len(SHAPES) + SHAPES.index(shape)) * len(MOTIONS) + MOTIONS.index(motion)


def class_attributes(label: int) -> tuple[str, str, str]:
    """Inverse of class_index: (colour, shape, motion)."""
    if not 0 <= int(label) < NUM_CLASSES:
        raise ValueError(f"class label must be in [0, {NUM_CLASSES}), got {label}")
    c, rest = divmod(int(label), len(SHAPES) * len(MOTIONS))
    s, m = divmod(rest, len(MOTIONS))
    return COLOR_NAMES[c], SHAPES[s], MOTIONS[m]


def valid_length(T: int) -> bool:
    return T >= 1 and (T - 1) % 4 == 0


# ----------------------------------------------------------------------------- rendering
def _background(rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    bg = np.empty((SIZE, SIZE, 3), np.float64)
    for ch in range(3):
        base = rng.uniform(10, 45)
        ax, ay = rng.uniform(8, 12, size=2)
        px, py = rng.uniform(50, 200, size=2)
        phx, phy = rng.uniform(0, 2 * math.pi, size=2)
        bg[..., ch] = base + ax * np.sin(2 * math.pi * xs / px + phx) + ay * np.sin(2 * math.pi * ys / py + phy)
    return np.clip(np.rint(bg), 0, 70).astype(np.uint8)


def _sample_object(rng: np.random.Generator, color: str) -> ShapeObject:
    shape = SHAPES[rng.integers(len(SHAPES))]
    size = SIZE_NAMES[rng.integers(len(SIZE_NAMES))]
    motion = MOTIONS[rng.integers(len(MOTIONS))]
    r = SIZES[size]
    lo, hi = r + 1, SIZE - r - 2
    travel = 16 * SPEED  # 24 px: no edge contact within the first 17 frames
    vx, vy = VELOCITY[motion]
    xlo, xhi = lo + (travel if vx < 0 else 0), hi - (travel if vx > 0 else 0)
    ylo, yhi = lo + (travel if vy < 0 else 0), hi - (travel if vy > 0 else 0)
    return ShapeObject(color, shape, size, motion, (float(rng.uniform(xlo, xhi)), float(rng.uniform(ylo, yhi))))


def object_centres(obj: ShapeObject, T: int) -> np.ndarray:
    """(T, 2) float centres with bouncing at r and 63 - r."""
    return object_track(obj, T)[0]


def object_track(obj: ShapeObject, T: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) float centres and (T, 2) velocities: at frame f, the velocity that moves the object on
    (its sign flipped by a bounce from that frame on)."""
    r = SIZES[obj.size]
    x, y = obj.start
    vx, vy = VELOCITY[obj.motion]
    out, vel = np.empty((T, 2)), np.empty((T, 2))
    for f in range(T):
        out[f] = (x, y)
        nx, ny = x + vx, y + vy
        if nx < r or nx > SIZE - 1 - r:
            vx = -vx
            nx = min(max(nx, r), SIZE - 1 - r)
        if ny < r or ny > SIZE - 1 - r:
            vy = -vy
            ny = min(max(ny, r), SIZE - 1 - r)
        vel[f] = (vx, vy)
        x, y = nx, ny
    return out, vel


def draw_object(img: np.ndarray, shape: str, color: tuple[int, int, int], cx: float, cy: float, r: int) -> None:
    cx, cy = int(round(cx)), int(round(cy))
    if shape == "circle":
        cv2.circle(img, (cx, cy), r, color, -1, lineType=cv2.LINE_8)
    elif shape == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, -1, lineType=cv2.LINE_8)
    elif shape == "triangle":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(img, [pts], color, lineType=cv2.LINE_8)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def render(objects: list[ShapeObject], background: np.ndarray, T: int) -> np.ndarray:
    tracks = [object_centres(o, T) for o in objects]
    video = np.empty((T, SIZE, SIZE, 3), np.uint8)
    for f in range(T):
        img = background.copy()
        for o, tr in zip(objects, tracks):
            draw_object(img, o.shape, COLORS[o.color], tr[f, 0], tr[f, 1], SIZES[o.size])
        video[f] = img
    return video


def make_clip(seed: int, index: int, T: int = 17) -> Clip:
    """The clip (seed, index, T): same triple, same pixels, on every machine."""
    if not valid_length(T):
        raise ValueError(f"clip length must be 1 + 4n frames, got {T}")
    background, objects = _sample_clip(seed, index)
    return Clip(render(objects, background, T), objects, int(seed), int(index))


def _sample_clip(seed: int, index: int) -> tuple[np.ndarray, list[ShapeObject]]:
    rng = np.random.default_rng([int(seed), int(index)])
    background = _background(rng)
    n_obj = 1 if rng.random() < 0.7 else 2
    colors = rng.choice(len(COLOR_NAMES), size=n_obj, replace=False)
    return background, [_sample_object(rng, COLOR_NAMES[c]) for c in colors]


def clip_objects(seed: int, index: int) -> list[ShapeObject]:
    """The objects of clip (seed, index), of any length, without rendering it: its metadata alone."""
    return _sample_clip(seed, index)[1]


# the main object's attributes as class indices, in this order (a clip's labels for attribute heads)
ATTRIBUTES = {"color": COLOR_NAMES, "shape": SHAPES, "size": SIZE_NAMES, "motion": MOTIONS}


def attribute_labels(seed: int, indices) -> torch.Tensor:
    """(n, 4) int64: per clip (seed, i) its main object's colour, shape, size and motion, as indices
    into COLOR_NAMES, SHAPES, SIZE_NAMES and MOTIONS (the order of ATTRIBUTES)."""
    rows = []
    for i in indices:
        main = clip_objects(seed, int(i))[0]
        rows.append([names.index(getattr(main, attr)) for attr, names in ATTRIBUTES.items()])
    return torch.tensor(rows, dtype=torch.long).reshape(-1, len(ATTRIBUTES))


def background_clip(seed: int, index: int, T: int = 17) -> np.ndarray:
    """The clip (seed, index, T) with its objects left out: its static background alone, (T, 64, 64, 3)."""
    if not valid_length(T):
        raise ValueError(f"clip length must be 1 + 4n frames, got {T}")
    return render([], _background(np.random.default_rng([int(seed), int(index)])), T)


def to_tensor(video: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float in [-1, 1]."""
    return torch.from_numpy(video).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


# ----------------------------------------------------------------------------- datasets
class ShapesStream(IterableDataset):
    """Endless training stream of (video [3, T, 64, 64] in [-1, 1], label, caption).

    Each worker and each data-parallel rank reads a disjoint arithmetic progression of indices.
    """

    def __init__(self, split: str = "train", T: int = 17, start: int = 0, rank: int = 0, world_size: int = 1):
        if split not in SPLIT_SEEDS:
            raise ValueError(f"split must be one of {list(SPLIT_SEEDS)}, got {split!r}")
        self.seed, self.T, self.start, self.rank, self.world_size = SPLIT_SEEDS[split], T, start, rank, world_size

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        stride = self.world_size * nw
        i = self.start + self.rank * nw + wid
        while True:
            clip = make_clip(self.seed, i, self.T)
            yield to_tensor(clip.video), clip.label, clip.caption
            i += stride


class ClipRange(Dataset):
    """Clips (seed, base + i, T) for i < n as (video [3, T, 64, 64] in [-1, 1], label, caption): a
    map-style dataset, so a DataLoader can render them in worker processes (`clip_batches`)."""

    def __init__(self, seed: int, base: int, n: int, T: int = 17):
        if not valid_length(T):
            raise ValueError(f"clip length must be 1 + 4n frames, got {T}")
        self.seed, self.base, self.n, self.T = int(seed), int(base), int(n), int(T)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        clip = make_clip(self.seed, self.base + int(i), self.T)
        return to_tensor(clip.video), clip.label, clip.caption


def default_workers() -> int:
    """Processes that render clips for the caches: none on a small machine (rendering a clip takes about a
    millisecond, the model's step more), up to 8 where there are cores to spare (a GPU host)."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 4 else min(8, cores - 2)


def clip_batches(seed: int, base: int, n: int, T: int = 17, batch: int = 16, workers: int | None = None):
    """Batches (videos (B, 3, T, 64, 64), labels (B,), captions) of the clips (seed, base + i, T), i < n,
    in order, rendered by `workers` processes (default: `default_workers()`)."""
    workers = default_workers() if workers is None else workers
    # batches in flight: 8 per worker for small ones, fewer for big ones (at most about 256 MB a worker,
    # at least 2): 8 workers x 8 batches of 32 clips of 81 frames would hold 8 GB of shared memory
    prefetch = max(2, min(8, (256 << 20) // (batch * T * 3 * 64 * 64 * 4)))
    return DataLoader(ClipRange(seed, base, n, T), batch_size=batch, num_workers=workers,
                      persistent_workers=False, prefetch_factor=prefetch if workers else None)


def fixed_split(split: str, n: int, T: int = 17) -> list[Clip]:
    """The first n clips of a split (validation and test sets)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {list(SPLIT_SEEDS)}, got {split!r}")
    return [make_clip(SPLIT_SEEDS[split], i, T) for i in range(n)]


def batch_stream(split: str, batch_size: int, T: int = 17, start: int = 0, rank: int = 0, world_size: int = 1):
    """Deterministic batches for training: batch j holds clips start + (j * world + rank) * B ..."""
    seed = SPLIT_SEEDS[split]
    j = 0
    while True:
        base = start + (j * world_size + rank) * batch_size
        clips = [make_clip(seed, base + i, T) for i in range(batch_size)]
        yield torch.stack([to_tensor(c.video) for c in clips]), torch.tensor([c.label for c in clips]), [c.caption for c in clips]
        j += 1
