"""Where training clips come from: the shapes world (the default) or a folder of your own videos.

`flexvid train-vae --data FOLDER` and `flexvid train-tokenizer --data FOLDER` train on every video file
under FOLDER (mp4, webm, avi, mov, mkv, m4v, any depth) instead of the shapes world. Each file is
decoded once with OpenCV (flexvid.video_io), resampled to the model's frame rate, resized and
centre-cropped to its resolution, and kept in memory as uint8 frames (12 KB a frame at 64 x 64;
`max_frames` bounds the total); a training clip is a window of T consecutive frames of one video.
Files that cannot be read, or are shorter than one clip, are skipped with a warning that names them; files
that decode to less than their header says (a download cut short, damaged data) are kept, with a warning.

Both sources answer the same questions, so the training code has one path:
  stream(b, T, start, rank, world)  the training batches from global clip `start` on, a function of
                                    the step alone (exact resume, the same global batch for any number
                                    of processes), as (videos (b, 3, T, H, W) in [-1, 1], labels, captions);
  fixed(purpose, n, T)              n clips for one purpose ("cache": the latent cache, "stats": the
                                    VAE's latent statistics, "calib": FSQ calibration, "val": the
                                    usage check), the same every time.
The shapes world keeps its own fixed sets (held-out validation clips, disjoint index ranges). A folder
has no held-out split: its "val" clips are windows of the training videos, so the usage check there
measures fitting, not generalisation.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from . import shapes, video_io
from .hub import warn_caller

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v")
MAX_FRAMES = 400_000  # about 4.9 GB of frames at 64 x 64


class ShapesClips:
    """The shapes world (shared design note "shapes-world.md"): fresh clips, never repeated."""

    name = "shapes"
    size = shapes.SIZE
    fps = float(shapes.FPS)
    labelled = True  # main-object attributes exist (attribute loss, shapes teacher)

    def stream(self, b: int, T: int, start: int = 0, rank: int = 0, world: int = 1):
        return shapes.batch_stream("train", b, T, start=start, rank=rank, world_size=world)

    _BASES = {"cache": 0, "stats": 10_000_000, "calib": 20_000_000, "val": 0}  # disjoint index ranges

    def batches(self, purpose: str, n: int, T: int, batch: int = 16):
        """The clips of fixed(purpose, n, T) in batches, rendered in worker processes where there are cores."""
        seed = shapes.SPLIT_SEEDS["val" if purpose == "val" else "train"]
        return (b[0] for b in shapes.clip_batches(seed, self._BASES[purpose], n, T, batch))

    def fixed(self, purpose: str, n: int, T: int) -> torch.Tensor:
        return torch.cat(list(self.batches(purpose, n, T, 64))) if n else torch.zeros(0, 3, T, self.size, self.size)


def video_files(root: str | os.PathLike) -> list[Path]:
    """The video files under a folder, at any depth, sorted; a linked subfolder is followed (once: a link
    back up the tree is no loop), as a linked file is."""
    folder, seen, found = Path(root), set(), []
    for here, dirs, names in os.walk(folder, followlinks=True):
        dirs.sort(key=lambda d: (os.path.islink(os.path.join(here, d)), d))  # real folders before links to them
        real = os.path.realpath(here)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        found += [Path(here) / n for n in names if Path(n).suffix.lower() in VIDEO_EXTENSIONS
                  and (Path(here) / n).is_file()]
    return sorted(found)


def check_folder(root) -> list[Path]:
    """The video files under --data `root`, or a ValueError where it is no folder or holds none: said before
    any model is built or file decoded."""
    if not isinstance(root, (str, Path)) or not str(root):
        raise ValueError(f"--data must be a folder of videos, got {root!r}")
    if not Path(root).is_dir():
        raise ValueError(f"--data {str(root)!r} is not a folder")
    files = video_files(Path(root))
    if not files:
        raise ValueError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {str(root)!r}")
    return files


def folder_sizes(root: str) -> dict[str, int]:
    """{path in the folder: byte size} of its video files (none decoded); {} for no folder."""
    folder = Path(root)
    return {str(p.relative_to(folder)): p.stat().st_size for p in (video_files(folder) if folder.is_dir() else [])}


def folder_listing(root: str, sizes: dict[str, int] | None = None) -> str:
    """What a folder of videos holds, cheaply: 'N video files, <digest of their paths and byte sizes>' (no
    file is decoded), so that a run resumed on a folder whose videos were added, removed or replaced is told."""
    sizes = folder_sizes(root) if sizes is None else sizes
    digest = hashlib.sha1("\n".join(f"{name}:{size}" for name, size in sizes.items()).encode())
    return f"{len(sizes)} video files, {digest.hexdigest()[:12]}"


def folder_changes(saved: dict, now: dict, most: int = 5) -> str:
    """Which video files a folder gained, lost or had replaced (another byte size) between two folder_sizes;
    at most `most` named of each, then a count."""
    def named(names: list[str]) -> str:
        return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")

    parts = [(what, sorted(names)) for what, names in (
        ("added", set(now) - set(saved)), ("removed", set(saved) - set(now)),
        ("replaced", {n for n in set(saved) & set(now) if saved[n] != now[n]}))]
    return "; ".join(f"{what}: {named(names)}" for what, names in parts if names)


MIN_SIZE, MAX_SIZE = 8, 1024  # the side a folder's clips may be resized to


class TooShort(ValueError):
    """No file of a folder gives a clip; `longest`: the most frames one of them gives (0: none was readable)."""

    def __init__(self, message: str, longest: int):
        super().__init__(message)
        self.longest = longest


class VideoFolder:
    """Every video under `root`, decoded once at `size` x `size` and `fps`; clips are T-frame windows."""

    labelled = False

    def __init__(self, root: str, T: int = 17, size: int = 64, fps: float = 8.0, max_frames: int = MAX_FRAMES):
        files = check_folder(root)
        folder = Path(root)
        if not shapes.valid_length(T):
            raise ValueError(f"clip length must be 1 + 4n frames, got {T}")
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
            raise ValueError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
        self.T, self.size, self.fps = T, size, float(fps)
        self.videos: list[np.ndarray] = []
        self.files: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        shorter: list[int] = []  # the frames of each file too short for a clip
        total = 0
        self.partial: list[tuple[str, str]] = []  # files kept that decode to less than their header says
        for f in files:
            counts: dict = {}
            try:  # frame by frame, holding only the frames kept: at most those left under max_frames (or a clip's)
                frames, _, more = video_io.read_resampled(f, self.fps, size, max(max_frames - total, T), counts)
            except (video_io.VideoError, ValueError) as e:  # named by its place in the folder, not on this machine
                rel = str(f.relative_to(folder))
                self.skipped.append((rel, str(e).replace(repr(str(f)), repr(rel)).replace(str(f), rel)))
                continue
            cut_short = "" if more else video_io.ended_early(counts, f)  # a download cut short, damaged data
            if len(frames) < T and not more:
                shorter.append(len(frames))
                self.skipped.append((str(f.relative_to(folder)),
                                     f"{len(frames)} frame{'s' if len(frames) != 1 else ''} at {self.fps:g} fps, "
                                     f"shorter than one {T}-frame clip" + (f" ({cut_short})" if cut_short else "")))
                continue
            if cut_short:
                self.partial.append((str(f.relative_to(folder)), cut_short))
            total += len(frames)
            if more or total > max_frames:
                raise ValueError(f"the videos under {str(root)!r} hold more than {max_frames} frames at {self.fps:g} fps; "
                                 f"train on a smaller folder (the frames stay in memory, {size * size * 3} bytes each)")
            self.videos.append(frames)
            self.files.append(str(f.relative_to(folder)))
        listed = "; ".join(f"{name}: {why}" for name, why in self.skipped[:5]) \
            + (f" (and {len(self.skipped) - 5} more)" if len(self.skipped) > 5 else "")
        if not self.videos:  # one message, every file in it (a warning first would say the same again)
            longest = max(shorter, default=0)
            raise TooShort(f"none of the {len(files)} video files under {str(root)!r} gives a {T}-frame clip: "
                           f"{listed}" + (f" (the longest gives {longest} frames)" if longest else ""), longest)
        if self.skipped:
            warn_caller(f"skipped {len(self.skipped)} of {len(files)} files under {str(root)!r}: {listed}")
        if self.partial:  # kept: their first part is video like any other, but it may not be what was meant
            some = "; ".join(f"{name}: {why}" for name, why in self.partial[:5]) \
                + (f" (and {len(self.partial) - 5} more)" if len(self.partial) > 5 else "")
            warn_caller(f"read {len(self.partial)} of {len(files)} files under {str(root)!r} only in part: {some}")
        # what the frames are, not only their files' names: a latent cache made from another folder laid out
        # the same way (0001.mp4, ...) or from re-encoded files is made again (train_tokenizer.latent_cache)
        digest = hashlib.blake2b(digest_size=8)
        for n, v in zip(self.files, self.videos):
            digest.update(f"{n}:{v.shape}\n".encode())
            digest.update(memoryview(np.ascontiguousarray(v)).cast("B"))
        self.name = f"folder:{digest.hexdigest()}:{size}px:{self.fps:g}fps"
        self._ends: dict[int, np.ndarray] = {}

    def ends(self, T: int | None = None) -> np.ndarray:
        """Cumulative counts of the T-frame windows of the videos: window i is window i - ends[v-1] of video v."""
        T = self.T if T is None else T
        if T not in self._ends:
            self._ends[T] = np.cumsum([max(len(v) - T + 1, 0) for v in self.videos])
        return self._ends[T]

    def __len__(self) -> int:
        """Distinct T-frame windows."""
        return int(self.ends()[-1])

    def clip(self, i: int, T: int | None = None) -> torch.Tensor:
        """Window i of the T-frame windows (every frame of every video starts or ends some window, whatever
        T) as (3, T, size, size) in [-1, 1]."""
        T = self.T if T is None else T
        if T > self.T:
            raise ValueError(f"{T}-frame clips need videos of at least {T} frames; this folder was read for {self.T}")
        ends = self.ends(T)
        v = int(np.searchsorted(ends, i, side="right"))
        start = int(i - (ends[v - 1] if v else 0))
        return shapes.to_tensor(np.ascontiguousarray(self.videos[v][start:start + T]))

    def spread(self, n: int, T: int | None = None) -> list[tuple[int, int]]:
        """Up to n distinct T-frame windows (video, first frame) for an evaluation: the videos in turn, so every
        video counts and not only the longest, and within a video evenly over its length. Deterministic; none
        from the videos shorter than T."""
        T = self.T if T is None else T
        counts = [max(len(v) - T + 1, 0) for v in self.videos]
        n = min(int(n), sum(counts))
        per, v, taken = [0] * len(counts), 0, 0
        while taken < n:
            if per[v] < counts[v]:
                per[v] += 1
                taken += 1
            v = (v + 1) % len(counts)
        return [(v, int(s)) for v, (m, c) in enumerate(zip(per, counts)) if m
                for s in np.linspace(0, c - 1, m).round()]  # steps of at least 1: distinct

    def window(self, v: int, start: int, T: int | None = None) -> torch.Tensor:
        """Frames start .. start + T of video v as (3, T, size, size) in [-1, 1]."""
        T = self.T if T is None else T
        frames = self.videos[v][start:start + T]
        if len(frames) < T:
            raise ValueError(f"video {self.files[v]} has no {T}-frame window from frame {start}")
        return shapes.to_tensor(np.ascontiguousarray(frames))

    def _draw(self, key: int, n: int, T: int | None = None) -> torch.Tensor:
        return torch.randint(int(self.ends(T)[-1]), (n,), generator=torch.Generator().manual_seed(key))

    def stream(self, b: int, T: int, start: int = 0, rank: int = 0, world: int = 1):
        """Batch j holds global clips start + (j * world + rank) * b ...: windows drawn by the clip's
        index alone (uniform over all windows, so long videos count by their length)."""
        j = 0
        while True:
            first = start + (j * world + rank) * b
            idx = [int(self._draw(1_000_003 * (first + i) + 7, 1, T)[0]) for i in range(b)]
            yield torch.stack([self.clip(i, T) for i in idx]), None, None
            j += 1

    _KEYS = {"cache": 1, "stats": 2, "calib": 3, "val": 4}

    def batches(self, purpose: str, n: int, T: int, batch: int = 16):
        idx = self._draw(self._KEYS[purpose], n, T)
        for a in range(0, n, batch):
            yield torch.stack([self.clip(int(i), T) for i in idx[a:a + batch]])

    def fixed(self, purpose: str, n: int, T: int) -> torch.Tensor:
        return torch.cat(list(self.batches(purpose, n, T, 64))) if n else torch.zeros(0, 3, T, self.size, self.size)


def clip_source(data: str | None, T: int = 17, size: int = 64, fps: float = 8.0):
    """The shapes world (data None) or a VideoFolder of `data`."""
    if data is None:
        if size != shapes.SIZE or float(fps) != float(shapes.FPS):
            raise ValueError(f"the shapes world is {shapes.SIZE} x {shapes.SIZE} at {shapes.FPS} fps; --size and --fps "
                             f"are for --data folders")
        return ShapesClips()
    return VideoFolder(data, T=T, size=size, fps=fps)


def training_source(data: str | None, frames: int, size: int, fps: float):
    """clip_source for a training command: its videos must give 17-frame clips even where --frames is shorter
    (the evaluation during training and the VAE's latent statistics use one whole 17-frame chunk), and
    --frames clips where it is longer. SystemExit with the reason where they do not."""
    try:
        return clip_source(data, T=max(17, frames), size=size, fps=fps)
    except ValueError as e:
        hint = ""
        if data and frames < 17 and isinstance(e, TooShort) and e.longest:  # some were read, none made 17 frames
            hint = (f" (training takes its --frames {frames} clips from videos of at least 17 frames at {fps:g} fps: "
                    "its evaluation and the latent statistics use one whole 17-frame chunk)")
        raise SystemExit(f"{e}{hint}") from None
