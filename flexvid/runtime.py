"""The app's runtime: one loaded tokenizer, cached tokens and decodes, and everything the pages show.

    rt = Runtime(load_settings())                     # space.yaml's `app:` section, FLEXVID_TOKENIZER overrides
    clip = rt.add_clip("clip.mp4")                    # read, downscale, tokenize once (cached by file hash)
    view = rt.view(clip.id, k=4, steps=25, seed=0)    # decode the prefix ladder (one batched call), render
    g = rt.generate("text", "a large red circle moving left", k=4, frames=17, seed=0)   # text-to-video
    lad = rt.generate_ladder("class", "red circle left", frames=17, seed=0)            # k = 1, 2, 4, ..., K

The Gradio layer (flexvid.app_ui) only calls this class. Model work is bounded by a semaphore, so a busy
Space queues instead of running out of memory. Tokens are computed once per clip; decodes are cached by
(clip, k, steps, guidance, mode, seed) in a bounded LRU, so moving the token slider back is instant.
Generators (text-to-video, class-to-video) come from space.yaml's app.generators (or the bundled
assets/generator-text and assets/generator-class folders), share the runtime's tokenizer and load lazily;
their videos are cached by (condition, k, frames, steps, guidance, temperature, seed) in a bounded LRU.

Bad input of any kind (not a video, corrupt, too large, absurd slider values sent straight to the API)
raises UserError, a ValueError whose message is meant for the page.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import logging
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from . import shapes, video_io
from .video_io import VideoError, label, upscale  # noqa: F401  (runtime.label: the app's tiles)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "space.yaml"
Progress = Callable[[int, int], None]  # (done, total) decoder steps
GenProgress = Callable[[str, int, int], None]  # (stage "tokens" or "decode", done, total), as VideoGenerator.generate
log = logging.getLogger("flexvid.app")


# the app's hooks, per request (context variables reach the worker thread that runs it):
# WANTED is asked once a model slot is had (it raises to stop a request cancelled while it waited), and
# MODEL_HELD_SINCE is when this request's slot was had (the app's max_request_s counts model time only)
WANTED: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar("flexvid_wanted", default=None)
MODEL_HELD_SINCE: contextvars.ContextVar[float | None] = contextvars.ContextVar("flexvid_model_since", default=None)


class UserError(ValueError):
    """Bad input from a user or an API caller; the message is shown on the page as is."""


class UnknownClip(UserError):
    """A clip id the runtime does not hold (never made, or forgotten: it keeps cache_clips clips)."""


class ModelMissing(ValueError):
    """The configured tokenizer folder (or repo) could not be found or loaded."""


# ----------------------------------------------------------------------------- settings
@dataclass
class Limits:
    max_upload_mb: float = 50.0  # uploads above this are refused before decoding
    max_seconds: float = 20.0  # longer clips are trimmed to their first max_seconds
    max_frames: int = 161  # cap after resampling to the model's fps (161 = 20 s at 8 fps)
    max_steps: int = 50  # decoder Euler steps a request may ask for
    max_guidance: float = 30.0
    max_seed: int = 2**31 - 1
    max_prompt_chars: int = 300  # longer prompts are refused (the text encoder reads ~256 word pieces)
    max_gen_frames: int = 81  # longest generated clip (1 + 4n frames; 81 = 21 time steps, 10 s at 8 fps)
    max_temperature: float = 3.0  # generator sampling temperature
    max_best_of: int = 8  # candidates a generation may sample and rerank (N times the work)
    max_request_s: float = 300.0  # a page request still working after this long is stopped, and told why

    def __post_init__(self):
        for f in fields(self):
            v, whole = getattr(self, f.name), f.type in (int, "int")
            ok = not isinstance(v, bool) and (isinstance(v, int) or (not whole and isinstance(v, float)))
            if not ok or not math.isfinite(v) or v <= 0:
                raise ValueError(f"app.limits.{f.name} must be a positive {'whole ' if whole else ''}number, "
                                 f"got {v!r}")
        from .generate import MAX_BATCH

        if self.max_best_of > MAX_BATCH:
            raise ValueError(f"app.limits.max_best_of must be at most {MAX_BATCH} (samples per generator call), "
                             f"got {self.max_best_of}")


@dataclass
class Settings:
    tokenizer: str = "assets/tokenizer"  # folder (relative to space.yaml) or Hugging Face repo id
    generators: dict = field(default_factory=dict)  # name ("text", "class") -> folder or repo id; empty = none
    examples: str = "assets/examples"  # folder of example clips (relative to space.yaml)
    reranker: str | None = "assets/reranker"  # best-of scorer folder (relative to space.yaml); None: plain samples
    k: int | None = None  # defaults; None = the model's own (k = K, its measured sampler settings)
    steps: int | None = None
    guidance: float | None = None
    guidance_mode: str | None = None
    seed: int = 0
    best_of: int = 4  # Generate-tab candidates per clip (the reranker keeps one); 1 = plain samples
    limits: Limits = field(default_factory=Limits)
    device: str = "auto"
    dtype: str | None = None  # None: bf16 on CUDA, fp32 on CPU; "auto": bf16 wherever native (training.bf16_native)
    model_concurrency: int = 1  # model calls running at once (tokenize, decode, generate)
    queue_concurrency: int = 4  # Gradio events running at once (rendering and cache hits need no model)
    cache_clips: int = 16
    cache_decodes: int = 256
    cache_generations: int = 64  # generated videos kept (LRU); an 81-frame 64 px clip is 1 MB
    queue_size: int = 64  # requests waiting at most; more are told the app is busy
    file_max_age_s: int = 3600  # Gradio's copies of uploads and outputs older than this are deleted (checked as often)
    base_dir: str = str(REPO_ROOT)  # relative paths resolve here (the folder of space.yaml), else in the checkout

    def local(self, path: str | os.PathLike) -> Path:
        """A relative path next to the settings file where it exists there, else in this checkout (a settings
        file kept elsewhere still finds the bundled assets/), else next to the settings file (to be refused)."""
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        return next((b / p for b in (Path(self.base_dir), REPO_ROOT) if (b / p).exists()), Path(self.base_dir) / p)


def _section(d: dict | None, known, where: str) -> dict:
    d = dict(d or {})
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"unknown keys in {where}: {unknown}; known: {sorted(known)}")
    return d


DEFAULT_KEYS = ("k", "steps", "guidance", "guidance_mode", "seed", "best_of")
RUNTIME_KEYS = ("device", "dtype", "model_concurrency", "queue_concurrency", "cache_clips", "cache_decodes",
                "cache_generations", "queue_size", "file_max_age_s")
GENERATOR_NAMES = ("text", "class")
OFF = ("none", "off", "null")  # FLEXVID_TEXT_GENERATOR=none turns a generator off


def load_settings(path: str | os.PathLike | None = None, tokenizer: str | None = None,
                  generators: dict[str, str | None] | None = None, reranker: str | None = None) -> Settings:
    """Read the `app:` section of space.yaml (default: FLEXVID_CONFIG, else the repo's space.yaml, else
    built-in defaults). The tokenizer comes from, in order: the `tokenizer` argument, FLEXVID_TOKENIZER,
    the file. Each generator ("text", "class") from the `generators` argument ({name: folder, repo id or
    "none"}; None entries are not given), else FLEXVID_TEXT_GENERATOR / FLEXVID_CLASS_GENERATOR ("none"
    turns it off), else the file's app.generators, else assets/generator-text or assets/generator-class
    next to the file when that folder holds a config.json, else none. The best-of reranker from the
    `reranker` argument, else FLEXVID_RERANKER, else app.reranker, else assets/reranker ("none" turns best of N
    off: plain samples)."""
    import yaml

    path = path or os.environ.get("FLEXVID_CONFIG") or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    app: dict = {}
    base = REPO_ROOT
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"settings file not found: {str(path)!r}")
        try:
            with open(path) as f:
                doc = yaml.safe_load(f) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:  # one line, as every other settings error
            where = getattr(e, "problem_mark", None)
            raise ValueError(f"settings file {str(path)!r} is not readable YAML"
                             + (f" (line {where.line + 1}, column {where.column + 1})" if where else "")
                             + f": {getattr(e, 'problem', None) or e}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"settings file {str(path)!r} must be a mapping with an app: section, got a "
                             f"{type(doc).__name__}")
        app = doc.get("app") or {}
        base = path.resolve().parent
    for name, value in (("app", app), *((f"app.{k}", app.get(k)) for k in ("limits", "defaults", "runtime")
                                        if isinstance(app, dict))):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping of settings, got {value!r}")
    app = dict(app)
    limits = _section(app.pop("limits", None), [f.name for f in fields(Limits)], "app.limits")
    flat = {**_section(app.pop("defaults", None), DEFAULT_KEYS, "app.defaults"),
            **_section(app.pop("runtime", None), RUNTIME_KEYS, "app.runtime"),
            **_section(app, ("tokenizer", "generators", "examples", "reranker"), "app")}
    for name, what in (("tokenizer", "a folder or repo id"), ("examples", "a folder"), ("reranker", "a folder or none")):
        if flat.get(name) is not None and not isinstance(flat[name], str) and not (name == "reranker" and
                                                                                   flat[name] is False):
            raise ValueError(f"app.{name} must be {what} (text), got {flat[name]!r}")
    s = Settings(**{k: v for k, v in flat.items() if v is not None}, limits=Limits(**limits), base_dir=str(base))
    if not isinstance(s.generators, dict):
        raise ValueError(f"app.generators must map text / class to a folder or repo id, got {s.generators!r}")
    s.generators = _section(s.generators, GENERATOR_NAMES, "app.generators")
    for name, spec in s.generators.items():
        if spec is False:  # YAML reads off / no / false as False: turned off, as "none"
            s.generators[name] = spec = "none"
        if spec is not None and not isinstance(spec, str):
            raise ValueError(f"app.generators.{name} must be a folder, repo id or none (text), got {spec!r}")
    def given(spec):  # a folder given on the command line or in the environment is where the user stands
        p = Path(spec).expanduser() if spec else None
        if p is None or p.is_absolute() or not p.exists():
            return spec
        return spec if s.local(p).resolve() == p.resolve() else str(p.resolve())

    for name in GENERATOR_NAMES:
        spec = (given((generators or {}).get(name) or os.environ.get(f"FLEXVID_{name.upper()}_GENERATOR"))
                or s.generators.get(name))
        if spec is None and (base / "assets" / f"generator-{name}" / "config.json").is_file():
            spec = f"assets/generator-{name}"
        elif spec is None and (REPO_ROOT / "assets" / f"generator-{name}" / "config.json").is_file():
            spec = str(REPO_ROOT / "assets" / f"generator-{name}")  # a settings file kept outside the checkout
        s.generators[name] = None if spec is None or str(spec).strip().lower() in OFF else str(spec)
    s.generators = {k: v for k, v in s.generators.items() if v}
    s.tokenizer = given(tokenizer or os.environ.get("FLEXVID_TOKENIZER")) or s.tokenizer
    if s.reranker is False:  # YAML reads off / no / false as False
        s.reranker = None
    s.reranker = given(reranker or os.environ.get("FLEXVID_RERANKER")) or s.reranker
    if s.reranker is not None and s.reranker.strip().lower() in OFF:
        s.reranker = None
    if s.dtype not in (None, "auto", "bf16", "fp32"):
        raise ValueError(f"app.runtime.dtype must be auto, bf16, fp32 or null, got {s.dtype!r}")
    for name in ("model_concurrency", "queue_concurrency", "cache_clips", "cache_decodes", "cache_generations",
                 "queue_size", "file_max_age_s"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"app.runtime.{name} must be a whole number >= 1, got {value!r}")
    if isinstance(s.best_of, bool) or not isinstance(s.best_of, int) or not 1 <= s.best_of <= s.limits.max_best_of:
        raise ValueError(f"app.defaults.best_of must be a whole number from 1 to app.limits.max_best_of "
                         f"({s.limits.max_best_of}), got {s.best_of!r}")
    lim = s.limits  # the defaults the page starts from are requests the limits allow (k above K is K)
    for name, check in (("k", lambda v, n: _integer(v, n, 1, 2**31 - 1)),
                        ("steps", lambda v, n: _integer(v, n, 1, lim.max_steps)),
                        ("guidance", lambda v, n: _number(v, n, 0.0, lim.max_guidance)),
                        ("seed", lambda v, n: _integer(v, n, 0, lim.max_seed))):
        if getattr(s, name) is not None:
            try:
                setattr(s, name, check(getattr(s, name), f"app.defaults.{name}"))
            except UserError as e:
                raise ValueError(str(e)) from None
    if s.guidance_mode not in (None, "cfg", "apg"):
        raise ValueError(f"app.defaults.guidance_mode must be cfg, apg or null, got {s.guidance_mode!r}")
    return s


MODEL_KINDS = {  # what resolve_model's messages name: setting, environment variable, files
    "tokenizer": ("app.tokenizer", "FLEXVID_TOKENIZER", "config.json, vae.safetensors and tokenizer.safetensors"),
    "text generator": ("app.generators.text", "FLEXVID_TEXT_GENERATOR", "config.json and model.safetensors"),
    "class generator": ("app.generators.class", "FLEXVID_CLASS_GENERATOR", "config.json and model.safetensors"),
}


def resolve_model(spec: str, base_dir: str, kind: str = "tokenizer") -> str:
    """A local folder (absolute, or relative to base_dir) or a Hugging Face repo id (owner/name).

    A spec whose first component exists locally (e.g. "assets/tokenizer" while "assets" exists) is a
    path, so a missing local model gives a clear error instead of a Hub lookup."""
    setting, env, files = MODEL_KINDS[kind]
    p = Path(spec).expanduser()
    local = Settings(base_dir=str(base_dir)).local(p)  # next to the settings file, else in this checkout
    # owner/name is a repo id unless its first part is a folder here (assets/, runs/: a missing model there
    # is said as such, not looked up on the Hub); a Python package (this checkout's flexvid/) is no such folder
    looks_local = p.is_absolute() or spec.startswith((".", "~")) or spec.count("/") != 1 or \
        any((b / p.parts[0]).is_dir() and not (b / p.parts[0] / "__init__.py").exists()
            for b in (Path(base_dir), REPO_ROOT))
    if local.is_dir():
        if not (local / "config.json").exists():
            run = (local / "export" / "config.json").exists()
            raise ModelMissing(f"{kind} folder {spec!r} has no config.json (expected {files})"
                               + (f"; it is a training run's folder: its model is in {spec.rstrip('/')}/export"
                                  if run else ""))
        return str(local)
    if looks_local:
        where = "" if p.is_absolute() else " (looked for next to the settings file, then in this checkout)"
        raise ModelMissing(f"{kind} folder not found: {spec!r}{where}. Set {setting} in space.yaml or the {env} "
                           f"environment variable to a folder holding {files}, or to a Hugging Face repo id")
    return spec  # a repo id: huggingface_hub fetches it


def public_name(spec: str) -> str:
    """A model spec as the page may show it: repo ids and relative folders as they are, an absolute
    folder by its last component only (a server path stays on the server)."""
    p = Path(spec).expanduser()
    return f".../{p.name}" if p.is_absolute() or spec.startswith("~") else spec


# ----------------------------------------------------------------------------- input checks
def _integer(value, name: str, lo: int, hi: int) -> int:
    """An int in [lo, hi]; integral floats (what sliders send) are accepted."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise UserError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")
    if not math.isfinite(value) or value != int(value) or not lo <= value <= hi:
        raise UserError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")
    return int(value)


def _number(value, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or not lo <= value <= hi:
        raise UserError(f"{name} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Sampler:
    """Validated decoder settings; also the cache key (with the clip and k)."""
    steps: int
    guidance: float
    mode: str
    seed: int

    def tag(self) -> str:
        return f"s{self.steps}_g{self.guidance:g}_{self.mode}_seed{self.seed}"


# ----------------------------------------------------------------------------- clips and views
@dataclass
class Clip:
    id: str
    name: str
    frames: np.ndarray  # (T, S, S, 3) uint8, the model's input
    tokens: torch.Tensor  # (t, K) int64
    fps: float
    source: str  # what was uploaded, in words
    notes: list[str] = field(default_factory=list)
    content: str = ""  # the id of what was read (file content and reading settings): uploads of the same file
    # under other names are other clips (each shows its own name) that share its tokens and decodes
    own: int = 0  # the clip's own frames before the padding to 1 + 4n (its last frame repeated); 0: all of them

    def __post_init__(self):
        self.content = self.content or self.id
        self.own = min(self.own or len(self.frames), len(self.frames))

    @property
    def duration(self) -> float:
        """Seconds of the clip itself (its own frames, not the padding to 1 + 4n)."""
        return self.own / self.fps


@dataclass
class Decoded:
    video: np.ndarray  # (T, S, S, 3) uint8
    psnr: float
    ssim: float | None


@dataclass
class View:
    """Everything the Reconstruct tab shows for one (clip, k, sampler)."""
    clip_id: str
    k: int
    sampler: Sampler
    compare: str  # mp4: original | reconstruction
    heatmap: str  # mp4: |error| colour-mapped
    ladder: str  # mp4: original and every k of the ladder, labelled
    token_image: np.ndarray  # (h, w, 3) uint8
    token_caption: str
    summary: str
    figure: Any  # plotly Figure: PSNR and SSIM vs k
    downloads: list[str]  # mp4 per decoded k, tokens npz
    metrics: dict[int, Decoded]
    token_file: str = ""  # token_image as a png named for the clip and k (what the page shows and saves)


def bits_and_bitrate(k: int, t: int, codebook_size: int, duration_s: float) -> tuple[float, float]:
    """Bits of k tokens at each of t steps from a codebook of codebook_size codes, and bits per second."""
    bits = k * t * math.log2(codebook_size)
    return bits, bits / duration_s


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 videos (capped at 100 dB for identical clips)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(min(100.0, 10 * math.log10(255.0**2 / max(mse, 1e-10))))


def ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean per-frame SSIM (Gaussian window 11, sigma 1.5, RGB in [0, 1]); None without pytorch-msssim."""
    try:
        from pytorch_msssim import ssim as _ssim
    except ImportError:
        return None
    x = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # (T, 3, H, W)
    y = torch.from_numpy(b).permute(0, 3, 1, 2).float() / 255
    if min(x.shape[-2:]) < 11:
        return None
    return float(_ssim(x, y, data_range=1.0, size_average=True))


def error_heatmap(a: np.ndarray, b: np.ndarray, full_scale: float = 128.0) -> np.ndarray:
    """|a - b| averaged over RGB, colour-mapped (inferno: black = 0, yellow = full_scale 8-bit levels or
    more). A fixed scale, so heatmaps of different k compare. (T, H, W, 3) uint8 in and out."""
    err = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=-1)  # (T, H, W)
    u8 = np.clip(err * (255.0 / full_scale), 0, 255).astype(np.uint8)
    T, H, W = u8.shape
    bgr = cv2.applyColorMap(u8.reshape(T * H, W), cv2.COLORMAP_INFERNO)
    return np.ascontiguousarray(bgr.reshape(T, H, W, 3)[..., ::-1])


def token_image(tokens: torch.Tensor, k: int, codebook_size: int, cell: int | None = None) -> np.ndarray:
    """The (t, K) token grid as a picture: one row per time step, one column per token, colour = token id
    (turbo colour map), tokens past the first k dimmed. uint8 (t * cell, K * cell, 3)."""
    t, K = tokens.shape
    cell = cell or int(np.clip(480 // max(t, K), 4, 32))
    ids = tokens.numpy().astype(np.float64)
    u8 = np.round(ids * 255 / max(codebook_size - 1, 1)).astype(np.uint8)
    rgb = cv2.applyColorMap(u8, cv2.COLORMAP_TURBO)[..., ::-1].astype(np.float32)  # (t, K, 3)
    rgb[:, k:] = 0.25 * rgb[:, k:] + 0.75 * 235  # dropped tokens: washed out
    img = np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1).astype(np.uint8)
    if cell >= 6:  # thin cell borders
        img[::cell, :] = 255
        img[:, ::cell] = 255
    img[:, min(k * cell, img.shape[1] - 1)] = 0  # where the kept prefix ends
    return np.ascontiguousarray(img)


def metrics_figure(metrics: dict[int, Decoded], k: int, title: str = ""):
    """PSNR (left axis) and SSIM (right axis) against k on a log2 axis, with the current k marked."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ks = sorted(metrics)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=ks, y=[metrics[j].psnr for j in ks], name="PSNR (dB)", mode="lines+markers"),
                  secondary_y=False)
    if all(metrics[j].ssim is not None for j in ks):
        fig.add_trace(go.Scatter(x=ks, y=[metrics[j].ssim for j in ks], name="SSIM", mode="lines+markers",
                                 line=dict(dash="dot")), secondary_y=True)
    if k in metrics:
        fig.add_trace(go.Scatter(x=[k], y=[metrics[k].psnr], name=f"k = {k}", mode="markers",
                                 marker=dict(size=14, symbol="diamond", color="black")), secondary_y=False)
    fig.add_vline(x=k, line_dash="dash", line_color="gray")
    fig.update_xaxes(type="log", tickvals=ks, ticktext=[str(j) for j in ks], title_text="tokens per time step (k)")
    fig.update_yaxes(title_text="PSNR (dB)", secondary_y=False)
    fig.update_yaxes(title_text="SSIM", secondary_y=True)
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=380,
                      margin=dict(l=50, r=50, t=70 if "<br>" in title else 50, b=40),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def _check_progress(progress) -> None:
    if progress is not None and not callable(progress):
        raise UserError(f"progress must be a function or None, got {type(progress).__name__}")


NAME_BYTES = 120  # a clip's name at most (UTF-8): it goes into file names, which hold 255 bytes


def short_name(name: str, limit: int = NAME_BYTES) -> str:
    """A file name cut to at most `limit` UTF-8 bytes, its extension kept: "bbb...b.mp4" -> "bbb....mp4"."""
    if len(name.encode()) <= limit:
        return name
    stem, ext = os.path.splitext(name)
    if len(ext.encode()) > 16:  # not an extension
        stem, ext = name, ""
    return stem.encode()[:limit - 3 - len(ext.encode())].decode("utf-8", "ignore") + "..." + ext


def _copy_name(upload_name: str) -> str:
    """The file name of the playable copy of an upload: x.avi -> x.avi.mp4 (add_clip reads it as x.avi); an .mp4
    keeps its name."""
    name = upload_name or "clip"
    return name if name.lower().endswith(".mp4") else f"{name}.mp4"


def _file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_video(path: Path, frames: np.ndarray, fps: float, scale: int = 1) -> str:
    if not path.exists():  # same key, same pixels: written once
        tmp = path.with_name(f".{path.stem}.{threading.get_ident()}.tmp.mp4")
        video_io.write_video(tmp, frames, fps=fps, upscale=scale)
        os.replace(tmp, path)
    return str(path)


def _atomic_write_png(path: Path, image: np.ndarray) -> str:
    if not path.exists():
        tmp = path.with_name(f".{path.stem}.{threading.get_ident()}.tmp.png")
        try:
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(image[..., ::-1])):  # RGB -> OpenCV's BGR
                raise OSError(f"could not write {path.name}")
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.remove(tmp)  # (gone once renamed)
    return str(path)


# ----------------------------------------------------------------------------- generations
def _either(words) -> str:
    words = list(words)
    return ", ".join(words[:-1]) + f" or {words[-1]}"


# what the shapes world's captions say, for visitors who type something else
SHAPES_WORDS = (f"{_either(shapes.SIZES)}; {_either(shapes.COLOR_NAMES)}; {_either(shapes.SHAPES)}; moving "
                f"{_either(m for m in shapes.MOTIONS if m != 'still')}, or standing still")
GEN_MIN_FRAMES = 17  # shortest generated clip (5 time steps, about 2 s at 8 fps)
PREVIEW_SIDE = 640  # longer side of the playable copy of an upload a browser cannot play (playable_preview)
RENDERED_VIEWS = 64  # views (clip, k, decoder settings) whose mp4s stay on disk
MIN_TEMPERATURE = 0.05


@dataclass(frozen=True)
class GenRequest:
    """A validated generation request, all but the budget k; with k, the cache key."""
    kind: str  # "text" or "class"
    condition: str | int  # the prompt (whitespace normalised) or the class label 0..89
    frames: int  # 1 + 4n
    steps: int  # decoder Euler steps
    guidance: float  # the generator's classifier-free guidance (1 = none)
    temperature: float
    seed: int  # token sampling and decoder noise
    best_of: int = 1  # candidates sampled and decoded; the reranker keeps one

    def key(self, k: int) -> tuple:
        return (self.kind, self.condition, k, self.frames, self.steps, self.guidance, self.temperature, self.seed,
                self.best_of)

    @staticmethod
    def from_key(key: tuple) -> "GenRequest":
        kind, condition, _, *rest = key
        return GenRequest(kind, condition, *rest)

    def tag(self) -> str:
        """File-name tag: a hash of the request (prompts can hold any character)."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]

    def describe(self) -> str:
        if self.kind == "text":
            return f'"{self.condition}"'
        colour, shape, motion = shapes.class_attributes(self.condition)
        motion = "standing still" if motion == "still" else f"moving {motion}"
        return f"class {self.condition}: {colour} {shape} {motion}"


@dataclass
class Generated:
    video: np.ndarray  # (T, S, S, 3) uint8
    tokens: torch.Tensor  # (t, K) int64: the first k of each step generated, the rest 0


@dataclass
class Generation:
    """What the Generate tab shows for a request at one budget k, or at the ladder k = 1, 2, 4, ..., K."""
    request: GenRequest
    ks: list[int]
    video: str  # mp4, upscaled for display: the clip, or the labelled grid of the ladder
    summary: str
    results: dict[int, Generated]
    cached: bool  # served without model work


# ----------------------------------------------------------------------------- the runtime
class Runtime:
    """One tokenizer, shared by every session of the app, with caches and a bound on model work.

    pipeline: an already loaded VideoFlexTok (tests); otherwise settings.tokenizer is loaded on first use
    (or by load()). out_dir: where mp4s and npz files are written (default: a fresh temporary folder)."""

    def __init__(self, settings: Settings | None = None, pipeline=None, out_dir: str | None = None):
        self.settings = settings or Settings()
        self._tok = pipeline
        if out_dir is None:  # a temporary folder, removed with the runtime (or at exit)
            out_dir = tempfile.mkdtemp(prefix="flexvid-app-")
            weakref.finalize(self, shutil.rmtree, out_dir, ignore_errors=True)
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._model = threading.BoundedSemaphore(self.settings.model_concurrency)
        self._lock = threading.RLock()  # caches, loading, statistics
        self._clip_locks: dict[str, threading.Lock] = {}
        self._clips: OrderedDict[str, Clip] = OrderedDict()
        self._decodes: OrderedDict[tuple, Decoded] = OrderedDict()
        # the files each rendered view wrote, newest last: a view's files go once RENDERED_VIEWS newer
        # views exist and no kept view names them (a view asked for again is simply rendered again)
        self._views: OrderedDict[tuple, list[str]] = OrderedDict()
        self.generators: dict[str, dict] = {}  # name -> {"loader": callable, "model": None or loaded, "error"}
        self._generator_lock = threading.Lock()  # loading a generator must not block the caches
        self._generation_locks: dict[str, threading.Lock] = {}  # name -> one request at a time (see _generate)
        self._generated: OrderedDict[tuple, Generated] = OrderedDict()
        # playable copies of uploads a browser cannot play: the copy's sha256 -> the upload's, and the name of each
        # copy made of it -> the name of its upload (the same file uploaded as a.avi and b.avi), newest last
        self._previews: OrderedDict[str, tuple[str, dict[str, str]]] = OrderedDict()
        self.stats = {"tokenize": 0, "detokenize": 0, "decoded_videos": 0, "sample_tokens": 0, "generated_videos": 0}
        for name, spec in self.settings.generators.items():
            self.register_generator(name, functools.partial(self._load_generator, name, spec))

    # ------------------------------------------------------------------ model and generators
    def load(self):
        """Load the tokenizer (once). Raises ModelMissing with a clear message."""
        with self._lock:
            if self._tok is None:
                from .pipeline import VideoFlexTok

                s = self.settings
                where = resolve_model(s.tokenizer, s.base_dir)
                try:
                    self._tok = VideoFlexTok.from_pretrained(where, device=s.device, dtype=s.dtype)
                except ValueError as e:
                    raise ModelMissing(f"could not load the tokenizer {s.tokenizer!r}: {e}") from None
            return self._tok

    @property
    def tok(self):
        return self._tok if self._tok is not None else self.load()

    def register_generator(self, name: str, loader: Callable[[], Any]) -> None:
        """Make a generator available under `name` ("text", "class"); loader() builds it on first use, e.g.
        rt.register_generator("text", lambda: VideoGenerator.from_pretrained(folder, tokenizer=rt.tok)).
        The runtime registers the generators of its settings itself."""
        with self._generator_lock:
            self.generators[name] = {"loader": loader, "model": None, "error": None}

    def generator(self, name: str):
        """The generator `name`, loaded on first use (run it inside model_slot()). UserError when it is not
        configured, or failed to load (once; the server log says why, the page does not show server paths)."""
        with self._generator_lock:
            if name not in self.generators:
                what = f"{name.capitalize()}-to-video" if name in GENERATOR_NAMES else f"generator {name!r}"
                raise UserError(f"{what} is not configured in this app (space.yaml: app.generators.{name}, the "
                                f"FLEXVID_{name.upper()}_GENERATOR environment variable or app.py --{name}-generator); "
                                "configured: "
                                f"{', '.join(sorted(self.generators)) or 'none'}")
            slot = self.generators[name]
            if slot["model"] is None and slot["error"] is None:
                try:
                    slot["model"] = slot["loader"]()
                except ModelMissing as e:  # a folder or repo not there, or broken files: said, no traceback
                    log.error("flexvid app: could not load the %s generator: %s", name, e)
                    slot["error"] = "missing, unreadable or of the other kind"
                except Exception as e:
                    log.exception("flexvid app: could not load the %s generator", name)
                    slot["error"] = type(e).__name__
            if slot["error"] is not None:
                raise UserError(f"the {name} generator is configured but could not be loaded ({slot['error']}; "
                                f"the server log has the details)")
            return slot["model"]

    def _load_generator(self, name: str, spec: str):
        """A VideoGenerator from a folder or repo id that decodes with this runtime's tokenizer (shared, not
        loaded twice), on its device and in its dtype. Checks that it fits the tokenizer."""
        from .generate import VideoGenerator
        from .hub import resolve

        tok = self.tok
        where = resolve_model(spec, self.settings.base_dir, f"{name} generator")
        try:  # a repo id the Hub cannot give (offline, no such repo) is missing too, as a folder not here is
            where = resolve(where)
        except ValueError as e:
            raise ModelMissing(f"{name} generator {spec!r}: {e}") from None
        try:  # a broken config.json or safetensors file is said in one line, as a missing folder is
            gen = VideoGenerator.from_pretrained(where, tokenizer=tok, device=str(tok.device),
                                                 dtype=self.settings.dtype if self.settings.dtype == "auto" else tok.dtype)
        except ValueError as e:
            raise ModelMissing(f"{name} generator {spec!r}: {e}") from None
        if gen.cfg.cond != name:
            raise ModelMissing(f"{spec!r} is a {gen.cfg.cond}-to-video generator, configured as the {name} one")
        # best of N is scored by the settings' reranker (none: plain samples; the default best of N falls back)
        gen.reranker_path = str(self.settings.local(self.settings.reranker)) if self.settings.reranker else ""
        fits = gen.check_tokenizer(tok)  # a ValueError when K or the codebook differ from the tokenizer's
        if gen.text_encoder is not None:
            gen.text_encoder.dim  # noqa: B018 - loads the text model now, not during the first request
        if not fits:
            log.warning("flexvid app: the %s generator %s was trained on another tokenizer's tokens than %s: its "
                        "clips will not show what they are asked for", name, spec, self.settings.tokenizer)
        return gen

    def generators_unfit(self) -> list[str]:
        """The loaded generators that were trained on another tokenizer's tokens than this runtime's (a
        tokenizer of one's own with the bundled generators, say): they run, and the page says so."""
        with self._generator_lock:
            loaded = {name: slot["model"] for name, slot in self.generators.items() if slot["model"] is not None}
        return sorted(name for name, gen in loaded.items() if hasattr(gen, "fits") and not gen.fits(self.tok))

    def load_generators(self) -> dict[str, str]:
        """Load every registered generator now (the app does at start), and its best-of reranker where the
        default best of N is above 1 (else the first request would load it); returns generator_status()."""
        for name in list(self.generators):
            try:
                gen = self.generator(name)
            except UserError:
                continue  # logged; the Generate tab and the endpoint say it could not be loaded
            if self.settings.best_of > 1:
                try:  # one per generator: a generator's requests run one at a time, so its reranker's caches do
                    if gen.reranker.text_encoder is not None:  # its text model too (shared with the text generator)
                        gen.reranker.text_encoder.load()
                except ValueError as e:
                    log.warning("no reranker for the %s generator (%s): generations fall back from the default "
                                "best of %d to 1", name, e, self.settings.best_of)
        return self.generator_status()

    def generator_status(self) -> dict[str, str]:
        """name -> "ready", "not loaded yet" or "failed to load"."""
        with self._generator_lock:
            return {name: "failed to load" if slot["error"] else "ready" if slot["model"] is not None
                    else "not loaded yet" for name, slot in sorted(self.generators.items())}

    @contextmanager
    def model_slot(self):
        """Hold one of the model_concurrency slots (tokenize, decode, generate); see WANTED and MODEL_HELD_SINCE."""
        with self._model:
            token = MODEL_HELD_SINCE.set(time.monotonic())
            try:
                wanted = WANTED.get()
                if wanted is not None:
                    wanted()
                yield
            finally:
                MODEL_HELD_SINCE.reset(token)

    def reranker_ready(self) -> bool:
        """Whether the settings' best-of reranker is there to load (a folder with its config.json)."""
        return bool(self.settings.reranker) and (self.settings.local(self.settings.reranker) / "config.json").is_file()

    def info(self) -> dict:
        """The loaded tokenizer, defaults, limits and generators (what /info returns); no server paths."""
        tok, s = self.tok, self.settings
        status = self.generator_status()
        unfit = self.generators_unfit()
        gens = {}
        for name, state in status.items():
            gens[name] = {"status": state, "model": public_name(s.generators[name]) if name in s.generators else None}
            if state == "ready":
                gens[name]["fits_tokenizer"] = name not in unfit
                cfg = self.generator(name).cfg
                gens[name].update(max_frames=self.max_gen_frames(cfg), guidance=cfg.guidance,
                                  temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p)
        return {"tokenizer": public_name(s.tokenizer), "device": str(tok.device),
                "dtype": str(tok.dtype).replace("torch.", ""), "n_tokens": tok.n_tokens,
                "codebook_size": tok.codebook_size, "fps": tok.fps, "size": tok.size,
                "chunk_frames": tok.chunk_frames, "ladder": tok.ladder(), "defaults": self.defaults(),
                "limits": vars(s.limits).copy(), "generators": sorted(self.generators), "generator_info": gens,
                "reranker": public_name(s.reranker) if self.reranker_ready() else None,
                "generate_defaults": self.generate_defaults()}

    def defaults(self) -> dict:
        """Default slider values: space.yaml's, else the model's."""
        cfg, s = self.tok.tokenizer.cfg, self.settings
        return {"k": min(s.k or self.tok.n_tokens, self.tok.n_tokens), "steps": s.steps or cfg.sample_steps,
                "guidance": cfg.guidance if s.guidance is None else s.guidance,
                "guidance_mode": s.guidance_mode or cfg.guidance_mode, "seed": s.seed}

    # ------------------------------------------------------------------ input checks
    def check_k(self, k) -> int:
        return _integer(k, "k (tokens per time step)", 1, self.tok.n_tokens)

    def sampler(self, steps=None, guidance=None, mode=None, seed=None) -> Sampler:
        """Validate decoder settings (None = default) into a Sampler."""
        d, lim = self.defaults(), self.settings.limits
        steps = _integer(d["steps"] if steps is None else steps, "steps", 1, lim.max_steps)
        guidance = _number(d["guidance"] if guidance is None else guidance, "guidance", 0.0, lim.max_guidance)
        mode = d["guidance_mode"] if mode in (None, "") else mode
        if mode not in ("cfg", "apg"):
            raise UserError(f"guidance mode must be 'cfg' or 'apg', got {mode!r}")
        seed = _integer(d["seed"] if seed is None else seed, "seed", 0, lim.max_seed)
        return Sampler(steps, guidance, mode, seed)

    def new_seed(self) -> int:
        return secrets.randbelow(self.settings.limits.max_seed + 1)

    # ------------------------------------------------------------------ clips
    def _read(self, path: str, name: str) -> tuple[np.ndarray, str, list[str], int]:
        """Decode a file into model frames (T, S, S, 3) at the model's fps, reading frame by frame so that
        memory stays small whatever the resolution: each kept frame is downscaled at once."""
        tok, lim = self.tok, self.settings.limits

        def clean(msg: str) -> str:  # show the upload's name, not the server's temporary path
            return msg.replace(repr(str(path)), repr(name))

        try:  # the checks: missing, empty, too large, not a video, corrupt, no frame
            video_io.read_video(path, max_frames=1, max_bytes=int(lim.max_upload_mb * 2**20))
        except VideoError as e:
            raise UserError(clean(str(e))) from None
        cap = cv2.VideoCapture(path)
        try:
            timing, aspect = video_io.source_timing(cap, path), video_io.pixel_aspect(cap)
            src_fps = timing.fps
            w, h = video_io.display_size(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                                         int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), aspect)
            max_src = max(1, math.ceil(lim.max_seconds * src_fps))
            out, n, j, more = [], 0, 0, False
            # source frames on a constant grid at src_fps by their timestamps: a variable rate keeps its speed
            counts: dict = {}
            for frame in video_io.constant_rate_frames(cap, counts=counts, **timing._asdict()):
                if n >= max_src or len(out) >= lim.max_frames:
                    more = True
                    break
                # nearest-frame resampling as video_io.resample_fps: output j shows source round(j * src / dst)
                while len(out) < lim.max_frames and math.floor(j * src_fps / tok.fps + 0.5 + 1e-9) == n:
                    out.append(video_io.resize_center_crop(video_io.to_rgb(frame, aspect)[None], tok.size)[0])
                    j += 1
                n += 1
        finally:
            cap.release()
        if not out:
            raise UserError(f"could not read video: no frames could be decoded: {name!r}")
        # as resample_fps: the frames that start inside the clip, the last source frame held to its end (the
        # grid above stops at round(j * src / dst) = n, half a source frame early)
        want = min(max(1, math.floor(n * tok.fps / src_fps + 1e-9)), lim.max_frames)
        out = out[:want] + [out[-1]] * (want - len(out))
        frames = video_io.prepare_video(np.stack(out), tok.fps, target_fps=tok.fps, size=tok.size,
                                        max_frames=lim.max_frames)
        kept_s = len(frames) / tok.fps  # (a valid length, 1 + 4n, may be shorter than max_frames)
        source = f"{w}x{h} at {src_fps:g} fps, {n} frame{'s' if n != 1 else ''} read ({n / src_fps:.2f} s)"
        if counts["repeated"] or counts["dropped"]:  # its timestamps, laid on a constant grid
            source = (f"{w}x{h} at a variable frame rate, read at {src_fps:g} fps: {n} frames ({n / src_fps:.2f} s; "
                      f"{counts['repeated']} repeated over gaps, {counts['dropped']} dropped in bursts)")
        cut_short = video_io.ended_early(counts, path)
        notes = [cut_short] if cut_short else []
        more = more or n / src_fps > lim.max_seconds + 1e-6  # a last frame held past the limit
        if len(frames) == 1 and not notes and not more:  # (one frame held for seconds is no still image)
            notes.append("a single frame (a still image?): tokenized as a one-frame clip")
        if more:
            notes.append(f"trimmed to the first {min(kept_s, n / src_fps):.2f} s (limits: {lim.max_seconds:g} s, "
                         f"{lim.max_frames} frames at {tok.fps:g} fps)")
        if (w, h) != (tok.size, tok.size):
            notes.append(f"resized and centre-cropped to {tok.size}x{tok.size}")
        own = min(len(out), len(frames))
        if own < len(frames):
            notes.append(f"padded from {own} to {len(frames)} frames (1 + 4n) with its last frame; the videos, PSNR "
                         f"and SSIM are of its own {own}")
        return frames, source, notes, own

    def add_clip(self, path, name: str | None = None) -> Clip:
        """Read and tokenize a video file once: the same file (by content) with the same settings is a
        cache hit and does no model work."""
        if path is None or (isinstance(path, str) and not path.strip()):
            raise UserError("no clip: upload a video file or pick an example")
        if not isinstance(path, (str, os.PathLike)):
            raise UserError(f"expected a video file path, got {type(path).__name__}")
        path = str(path)
        if name is not None and not isinstance(name, str):
            raise UserError(f"name must be a string (the clip's file name), got {type(name).__name__}")
        # a name is shown and goes into output file names: its last part, at most NAME_BYTES bytes
        given = os.path.basename((name or "").strip().replace("\\", "/")) or os.path.basename(path)
        name = short_name(given)
        if not os.path.isfile(path):
            raise UserError(f"could not read video: file not found: {name!r}")
        if os.path.getsize(path) > self.settings.limits.max_upload_mb * 2**20:
            raise UserError(f"video file is too large: {os.path.getsize(path)} bytes exceeds the limit of "
                            f"{self.settings.limits.max_upload_mb:g} MB: {name!r}")
        tok, lim = self.tok, self.settings.limits
        digest = _file_hash(path)
        with self._lock:  # the playable copy of an upload (playable_preview) is that upload's clip
            upload = self._previews.get(digest)
        if upload is not None:  # the copy, under its own name, goes by the upload's (x.avi's copy is x.avi.mp4)
            digest, names = upload
            name = names.get(given, name)
        key = f"{digest}|{self.settings.tokenizer}|{tok.size}|{tok.fps}|{lim.max_frames}|{lim.max_seconds}"
        content = hashlib.sha256(key.encode()).hexdigest()[:16]
        # the name is part of the clip: another page's upload of the same file under another name must not
        # show that name (its summary, its downloads); the tokens and decodes are shared through `content`
        clip_id = hashlib.sha256(f"{key}|{name}".encode()).hexdigest()[:16]
        with self._lock:  # a cache hit waits for nobody (the clip's lock may be held by a decode waiting for the model)
            if clip_id in self._clips:
                self._clips.move_to_end(clip_id)
                return self._clips[clip_id]
        with self._clip_lock(content):
            with self._lock:
                if clip_id in self._clips:
                    self._clips.move_to_end(clip_id)
                    return self._clips[clip_id]
                same = next((c for c in self._clips.values() if c.content == content), None)
            if same is not None:  # read and tokenized already, under another name: no model work
                frames, tokens, source, notes, own = same.frames, same.tokens, same.source, same.notes, same.own
            else:
                frames, source, notes, own = self._read(path, name)
                with self.model_slot():
                    tokens = tok.tokenize(video_io.to_model(frames))[0]
                    with self._lock:
                        self.stats["tokenize"] += 1
            clip = Clip(clip_id, name, frames, tokens, tok.fps, source, notes, content, own)
            folder = self.out_dir / clip_id
            folder.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._clips[clip_id] = clip
                while len(self._clips) > self.settings.cache_clips:
                    old, gone = self._clips.popitem(last=False)
                    if all(c.content != gone.content for c in self._clips.values()):
                        self._clip_locks.pop(gone.content, None)
                        self._decodes = OrderedDict((k, v) for k, v in self._decodes.items() if k[0] != gone.content)
                    self._views = OrderedDict((k, v) for k, v in self._views.items() if k[0] != old)
                    shutil.rmtree(self.out_dir / old, ignore_errors=True)
            return clip

    def playable_preview(self, path) -> str | None:
        """For an upload that a browser cannot play as it is (OpenCV's mp4v, most avi and mov): an H.264 mp4
        of what add_clip reads from it (its first max_seconds; at most PREVIEW_SIDE px a side, its own frame
        rate, no audio) to show in its place. The copy counts as the upload: add_clip of either gives the
        same clip, tokenized once. None where the upload plays as it is, or is no readable video (add_clip
        says why)."""
        if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
            return None
        path = str(path)
        if os.path.getsize(path) > self.settings.limits.max_upload_mb * 2**20 or video_io.browser_playable(path):
            return None
        digest = _file_hash(path)
        out = self._preview_path(path, digest)
        try:
            video_io.write_playable(path, out, max_side=PREVIEW_SIDE, max_seconds=self.settings.limits.max_seconds)
        except ValueError as e:  # VideoError included: not a video; add_clip reports it
            log.info("no playable preview of %s: %s", os.path.basename(path), e)
            return None
        key = _file_hash(str(out))
        with self._lock:
            names = self._previews[key][1] if key in self._previews else {}
            self._previews[key] = (digest, {**names, out.name: short_name(os.path.basename(path))})
            self._previews.move_to_end(key)  # an upload made again is the newest, not the next to go
            while len(self._previews) > 4 * self.settings.cache_clips:  # gradio keeps its own copy
                _, (old, _) = self._previews.popitem(last=False)
                if old != digest:
                    shutil.rmtree(self.out_dir / "previews" / old[:16], ignore_errors=True)
        return str(out)

    def _preview_path(self, path: str, digest: str | None = None) -> Path:
        """Where the playable copy of the upload at path goes: named as the upload (the clip's name, shown on
        the page and in its downloads), in a folder of its content."""
        folder = self.out_dir / "previews" / (digest or _file_hash(path))[:16]
        return folder / _copy_name(short_name(os.path.basename(path)))

    def preview_of(self, path) -> str | None:
        """The playable copy that playable_preview made of this file (by content), or None: no copy (yet), a
        file that plays as it is, or no file."""
        if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
            return None
        out = self._preview_path(str(path))
        return str(out) if out.is_file() else None

    def clip(self, clip_id) -> Clip:
        if isinstance(clip_id, Clip):
            raise UserError("expected a clip id (add_clip(...).id), got a Clip")
        if not isinstance(clip_id, str) or not clip_id:
            raise UserError("no clip: upload a video file or pick an example first")
        with self._lock:
            if clip_id not in self._clips:
                shown = repr(clip_id[:40]) + (f" ({len(clip_id):,} characters)" if len(clip_id) > 40 else "")
                raise UnknownClip(f"unknown clip {shown} (the server forgets old clips): upload it again")
            self._clips.move_to_end(clip_id)
            return self._clips[clip_id]

    def has_clip(self, clip_id) -> bool:
        with self._lock:
            return isinstance(clip_id, str) and clip_id in self._clips

    def _clip_lock(self, clip_id: str) -> threading.Lock:
        with self._lock:
            return self._clip_locks.setdefault(clip_id, threading.Lock())

    # ------------------------------------------------------------------ decoding
    def decode(self, clip: Clip, ks, sampler: Sampler, progress: Progress | None = None) -> dict[int, Decoded]:
        """Decodes of clip at every k in ks. Cached ones cost nothing; the missing ones are decoded in
        ONE batched detokenize call (the same noise for every k, as in VideoFlexTok.reconstruct)."""
        ks = sorted({self.check_k(k) for k in ks})
        key = lambda k: (clip.content, k, sampler.steps, sampler.guidance, sampler.mode, sampler.seed)  # noqa: E731
        with self._lock:  # all cached: no lock to wait for (another request may hold the clip's, waiting for the model)
            if all(key(k) in self._decodes for k in ks):
                for k in ks:
                    self._decodes.move_to_end(key(k))
                return {k: self._decodes[key(k)] for k in ks}
        with self._clip_lock(clip.content):
            with self._lock:
                have = {k: self._decodes[key(k)] for k in ks if key(k) in self._decodes}
                for k in have:
                    self._decodes.move_to_end(key(k))
            missing = [k for k in ks if k not in have]
            if missing:
                with self.model_slot():
                    videos = self.tok.detokenize([clip.tokens] * len(missing), k=missing, steps=sampler.steps,
                                                 guidance=sampler.guidance, guidance_mode=sampler.mode,
                                                 seed=[sampler.seed] * len(missing), callback=progress)
                with self._lock:
                    self.stats["detokenize"] += 1
                    self.stats["decoded_videos"] += len(missing)
                for k, v in zip(missing, videos):
                    u8 = video_io.from_model(v)
                    n = clip.own  # the clip's own frames, not the padding to 1 + 4n
                    have[k] = Decoded(u8, psnr(clip.frames[:n], u8[:n]), ssim(clip.frames[:n], u8[:n]))
                with self._lock:
                    for k in missing:
                        self._decodes[key(k)] = have[k]
                    while len(self._decodes) > self.settings.cache_decodes:
                        self._decodes.popitem(last=False)
            return {k: have[k] for k in ks}

    # ------------------------------------------------------------------ rendering
    def display_scale(self) -> int:
        """Nearest-neighbour upscale of the written mp4s: 64 px clips show at 256 px."""
        return max(1, 256 // self.tok.size)

    def _shown_at(self) -> str:
        """' (shown at 256x256)' where the written mp4s are upscaled (a caption's model size is not the file's)."""
        side = self.tok.size * self.display_scale()
        return f" (shown at {side}x{side})" if side != self.tok.size else ""

    def decoded(self, clip: Clip, sampler: Sampler) -> dict[int, Decoded]:
        """{k: Decoded} of every k of clip still in the decode cache for these decoder settings."""
        settings = (sampler.steps, sampler.guidance, sampler.mode, sampler.seed)
        with self._lock:
            return dict(sorted((key[1], d) for key, d in self._decodes.items()
                               if key[0] == clip.content and key[2:] == settings))

    def metrics_csv(self, clip: Clip, metrics: dict[int, Decoded], path: Path) -> str:
        """k, tokens, bits, PSNR and SSIM of every decoded k, for a researcher's own plots (rewritten as more
        k are decoded)."""
        t = clip.tokens.shape[0]
        rows = ["k,tokens,bits,psnr_db,ssim"]
        for j, m in sorted(metrics.items()):
            bits = bits_and_bitrate(j, t, self.tok.codebook_size, clip.duration)[0]
            rows.append(f"{j},{j * t},{bits:.0f},{m.psnr:.4f},{'' if m.ssim is None else f'{m.ssim:.5f}'}")
        tmp = path.with_name(f".{path.stem}.{threading.get_ident()}.tmp.csv")
        tmp.write_text("\n".join(rows) + "\n")
        os.replace(tmp, path)
        return str(path)

    def tokens_npz(self, clip: Clip) -> str:
        path = self.out_dir / clip.id / f"tokens_{Path(clip.name).stem}_{clip.id}.npz"  # named as the clip's mp4s
        if not path.exists():
            tmp = path.with_name(f".tokens.{threading.get_ident()}.tmp.npz")
            np.savez(tmp, tokens=clip.tokens.numpy(), shape=np.array(clip.tokens.shape),
                     codebook_size=self.tok.codebook_size, n_tokens=self.tok.n_tokens, fps=clip.fps,
                     frames=len(clip.frames), own_frames=clip.own,
                     dtype=str(self.tok.dtype).replace("torch.", ""))  # bf16 and fp32 may round a token apart
            os.replace(tmp, path)
        return str(path)

    def token_caption(self, clip: Clip, k: int) -> str:
        t, K = clip.tokens.shape
        bits, rate = bits_and_bitrate(k, t, self.tok.codebook_size, clip.duration)
        return (f"**{k} of {K}** tokens per step x **{t}** step{'s' if t != 1 else ''} = **{k * t}** tokens; "
                f"{k * t} x log2({self.tok.codebook_size}) = **{bits:,.0f} bits** "
                f"for {clip.duration:.2f} s = **{rate:,.0f} bit/s**")

    def view(self, clip_id, k=None, steps=None, guidance=None, mode=None, seed=None,
             progress: Progress | None = None) -> View:
        """Decode (cached) and render the Reconstruct tab for a clip at k with these decoder settings.
        The ladder 1, 2, 4, ..., K and k are decoded together in one batched call."""
        _check_progress(progress)
        clip = self.clip(clip_id)
        k = self.defaults()["k"] if k is None else self.check_k(k)
        sampler = self.sampler(steps, guidance, mode, seed)
        ladder = self.tok.ladder()
        metrics = self.decode(clip, sorted(set(ladder) | {k}), sampler, progress)
        folder, fps, up = self.out_dir / clip.id, clip.fps, self.display_scale()
        tag = sampler.tag()
        seen = self.decoded(clip, sampler)  # every k decoded so far with these settings: the chart and the csv
        own = clip.own  # the videos show the clip's own frames, not the padding to 1 + 4n (its last frame repeated)
        orig = upscale(clip.frames[:own], up)
        rec = metrics[k].video[:own]
        stem = Path(clip.name).stem  # every file a download button saves says which clip it is
        compare = _atomic_write_video(folder / f"compare_k{k}_{stem}_{tag}.mp4",
                                      video_io.side_by_side([label(orig, "original"),
                                                             label(upscale(rec, up), f"k = {k}")]), fps)
        heat = _atomic_write_video(folder / f"error_k{k}_{stem}_{tag}.mp4",
                                   label(upscale(error_heatmap(clip.frames[:own], rec), up), f"error, k = {k}"), fps)
        half = max(1, up // 2)
        cells = [label(upscale(clip.frames[:own], half), "original")] + \
                [label(upscale(metrics[j].video[:own], half), f"k = {j}") for j in ladder]
        rows = math.ceil(len(cells) / 4)
        ladder_mp4 = _atomic_write_video(folder / f"ladder_{stem}_{tag}.mp4",
                                         video_io.grid(cells, cols=math.ceil(len(cells) / rows)), fps)
        width = len(str(self.tok.n_tokens))  # k first and zero-padded: a narrow list still tells them apart
        downloads = [_atomic_write_video(folder / f"k{j:0{width}d}_{Path(clip.name).stem}_{tag}.mp4",
                                         metrics[j].video[:own], fps) for j in sorted(metrics)]  # the model's size
        table = self.metrics_csv(clip, seen, folder / f"metrics_{Path(clip.name).stem}_{tag}.csv")
        downloads += [table, self.tokens_npz(clip)]
        grid_image = token_image(clip.tokens, k, self.tok.codebook_size)
        grid_file = _atomic_write_png(folder / f"tokens_k{k:0{width}d}_{stem}.png", grid_image)  # saved under its name
        self._keep_view((clip.id, k, tag), [compare, heat, ladder_mp4, grid_file, *downloads[:-1]])
        m = metrics[k]
        ssim_text = f", SSIM {m.ssim:.3f}" if m.ssim is not None else ""
        n = len(clip.frames)
        notes = "; ".join(clip.notes)
        summary = (f"**{clip.name}**: {clip.source} -> {n} frame{'s' if n != 1 else ''} "
                   f"{self.tok.size}x{self.tok.size}{self._shown_at()} at {fps:g} fps, tokens {tuple(clip.tokens.shape)}. "
                   f"{notes[:1].upper() + notes[1:] + '. ' if notes else ''}"
                   f"k = {k}: PSNR {m.psnr:.2f} dB{ssim_text} (decoder {sampler.steps} sampling "
                   f"step{'s' if sampler.steps != 1 else ''}, guidance "
                   f"{sampler.guidance:g} {sampler.mode}, seed {sampler.seed}).")
        fig = metrics_figure(seen, k, title=f"reconstruction quality vs k<br>decoder {sampler.steps} step"  # 2 lines:
                                            f"{'s' if sampler.steps != 1 else ''}, guidance {sampler.guidance:g} "
                                            f"{sampler.mode}, seed {sampler.seed}")  # one was cut on a phone
        return View(clip.id, k, sampler, compare, heat, ladder_mp4, grid_image, self.token_caption(clip, k), summary,
                    fig, downloads, metrics, grid_file)

    def _keep_view(self, key: tuple, files: list[str]) -> None:
        """Remember a view's files; delete those of views beyond the newest RENDERED_VIEWS that no kept
        view shares (the ladder and the downloads are shared by every k of one sampler setting)."""
        with self._lock:
            self._views.pop(key, None)
            self._views[key] = [str(f) for f in files]
            gone = []
            while len(self._views) > RENDERED_VIEWS:
                gone += self._views.popitem(last=False)[1]
            if gone:
                kept = {f for fs in self._views.values() for f in fs}
                for f in set(gone) - kept:
                    with contextlib.suppress(OSError):
                        os.remove(f)

    # ------------------------------------------------------------------ generation
    def max_gen_frames(self, cfg) -> int:
        """The longest clip a generator with config cfg may make here (1 + 4n frames)."""
        return min(self.settings.limits.max_gen_frames, 1 + 4 * (cfg.max_t - 1))

    def generate_defaults(self) -> dict:
        """Default Generate-tab values: the first ready generator's sampling settings (text, then class),
        the class model's own guidance as class_guidance, the decoder's steps, k = the Reconstruct default,
        the shortest clip. Loads nothing."""
        from .generator import GeneratorConfig

        status = self.generator_status()
        ready = [n for n in GENERATOR_NAMES if status.get(n) == "ready"]
        cfg = self.generator(ready[0]).cfg if ready else GeneratorConfig()
        class_cfg = self.generator("class").cfg if "class" in ready else cfg
        d, lim = self.defaults(), self.settings.limits
        return {"k": d["k"], "frames": GEN_MIN_FRAMES, "max_frames": max(GEN_MIN_FRAMES, self.max_gen_frames(cfg)),
                "steps": d["steps"], "guidance": min(cfg.guidance, lim.max_guidance),
                "class_guidance": min(class_cfg.guidance, lim.max_guidance),
                "temperature": min(max(cfg.temperature, MIN_TEMPERATURE), lim.max_temperature), "seed": d["seed"],
                # the slider starts at plain samples where the generators have no reranker folder to load
                "best_of": self.settings.best_of if not ready or all(
                    self.generator(n).reranker_path and (Path(self.generator(n).reranker_path) / "config.json").is_file()
                    for n in ready) else 1}

    def check_prompt(self, prompt) -> str:
        """A non-empty prompt of at most limits.max_prompt_chars characters, whitespace normalised."""
        limit = self.settings.limits.max_prompt_chars
        from .text import visible
        if prompt is None or (isinstance(prompt, str) and not visible(prompt)):
            raise UserError("the prompt is empty: describe a clip, e.g. 'a large red circle moving left'")
        if not isinstance(prompt, str):
            raise UserError(f"the prompt must be text, got {type(prompt).__name__}")
        if len(prompt) > limit:
            raise UserError(f"the prompt is too long: {len(prompt):,} characters, at most {limit} are allowed")
        try:  # JSON's "\ud800": no text the encoder can read
            prompt.encode("utf-8")
        except UnicodeEncodeError as e:
            raise UserError(f"the prompt is not valid Unicode text: character {e.start + 1} is a lone surrogate") \
                from None
        return " ".join(prompt.split())

    @staticmethod
    def check_class(label) -> int:
        """A class label: 0..89, or "colour shape motion" (e.g. "red circle left")."""
        from .generate import parse_label

        if isinstance(label, str) and len(label) > 100:
            raise UserError(f"class label too long ({len(label)} characters): give 0-{shapes.NUM_CLASSES - 1} "
                            f"or 'colour shape motion'")
        try:
            return parse_label(label)
        except ValueError as e:
            raise UserError(str(e)) from None

    def gen_request(self, kind, condition, frames=None, steps=None, guidance=None, temperature=None,
                    seed=None, best_of=None) -> GenRequest:
        """Validate a generation request (None = default) into a GenRequest; UserError for a generator that
        is not configured and for any value out of range, before any model work."""
        if kind not in GENERATOR_NAMES:
            raise UserError(f"kind must be one of {GENERATOR_NAMES}, got {kind!r}")
        cfg, lim, d = self.generator(kind).cfg, self.settings.limits, self.defaults()
        condition = self.check_prompt(condition) if kind == "text" else self.check_class(condition)
        max_frames = self.max_gen_frames(cfg)
        frames = _integer(GEN_MIN_FRAMES if frames is None else frames, "clip length (frames)", GEN_MIN_FRAMES,
                          max_frames)
        if (frames - 1) % 4:
            raise UserError(f"clip length must be 1 + 4n frames ({GEN_MIN_FRAMES}, {GEN_MIN_FRAMES + 4}, ..., "
                            f"{max_frames}), got {frames}")
        steps = _integer(d["steps"] if steps is None else steps, "decoder steps", 1, lim.max_steps)
        guidance = _number(cfg.guidance if guidance is None else guidance, "guidance", 0.0, lim.max_guidance)
        temperature = _number(cfg.temperature if temperature is None else temperature, "temperature",
                              MIN_TEMPERATURE, lim.max_temperature)
        seed = _integer(d["seed"] if seed is None else seed, "seed", 0, lim.max_seed)
        asked = best_of is not None
        best_of = _integer(best_of if asked else self.settings.best_of, "best of (candidates)", 1, lim.max_best_of)
        if best_of > 1:
            try:
                _ = self.generator(kind).reranker
            except ValueError as e:
                if asked:  # (the server's paths stay in its log)
                    log.warning("best of %d asked for, but no reranker: %s", best_of, e)
                    raise UserError(f"best of {best_of} needs the reranker, and none is loaded here: ask for best "
                                    "of 1 (plain samples)") from None
                # the Space's default, not the caller's request: plain samples rather than no video
                log.warning("no reranker (%s): generations fall back from the default best of %d to 1", e, best_of)
                best_of = 1
        return GenRequest(kind, condition, frames, steps, guidance, temperature, seed, best_of)

    def _generation_lock(self, kind: str) -> threading.Lock:
        with self._lock:
            return self._generation_locks.setdefault(kind, threading.Lock())

    def _gen_dir(self) -> Path:
        folder = self.out_dir / "generated"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _gen_paths(self, req: GenRequest, k: int) -> tuple[Path, Path]:
        """The mp4 of req at k, and of req's ladder."""
        folder = self._gen_dir()
        return folder / f"{req.kind}_k{k}_{req.tag()}.mp4", folder / f"{req.kind}_ladder_{req.tag()}.mp4"

    def _generate(self, req: GenRequest, ks, progress: GenProgress | None = None) -> tuple[dict[int, Generated], bool]:
        """req's videos at every k in ks and whether all came from the cache. The missing ones are sampled
        one k at a time (a budget sets the token layout, so budgets do not batch), then decoded in ONE
        batched detokenize call with the same noise for every k: candidate j of best_of decodes with
        seed + j, as in VideoGenerator.generate, which gives the same video for a single k."""
        keys = {k: req.key(k) for k in ks}
        with self._lock:  # all cached: no lock to wait for (another request may hold the generator's for minutes)
            if all(keys[k] in self._generated for k in ks):
                for k in ks:
                    self._generated.move_to_end(keys[k])
                return {k: self._generated[keys[k]] for k in ks}, True
        # one request per generator at a time: its KV cache is state of the model, and an identical
        # request waiting here finds the result in the cache
        with self._generation_lock(req.kind):
            with self._lock:
                have = {k: self._generated[keys[k]] for k in ks if keys[k] in self._generated}
                for k in have:
                    self._generated.move_to_end(keys[k])
            missing = [k for k in ks if k not in have]
            if missing:
                from .generate import frames_to_steps

                gen, d = self.generator(req.kind), self.defaults()
                t, n = frames_to_steps(req.frames, gen.cfg.max_t), req.best_of
                total, offset, grids = t * sum(missing), 0, []
                with self.model_slot():
                    for k in missing:  # n candidates per k, sampled in one batch
                        cb = None if progress is None else (lambda i, m, o=offset: progress("tokens", o + i, total))
                        grids += gen.sample_tokens([req.condition] * n, k=k, frames=req.frames,
                                                   temperature=req.temperature, guidance=req.guidance, seed=req.seed,
                                                   callback=cb)
                        offset += t * k
                    dg = gen.decode_guidance()
                    ks_all = [k for k in missing for _ in range(n)]
                    videos = self.tok.detokenize(grids, k=ks_all, steps=req.steps,
                                                 guidance=d["guidance"] if dg is None else dg,
                                                 guidance_mode=d["guidance_mode"],
                                                 seed=[req.seed + j for _ in missing for j in range(n)],
                                                 callback=None if progress is None else
                                                 (lambda i, m: progress("decode", i, m)))
                    if n > 1:  # keep, per k, the candidate the reranker scores best
                        scores = gen.reranker.score(videos, [req.condition] * len(videos), req.kind).view(-1, n)
                        best = [i * n + j for i, j in enumerate(scores.argmax(1).tolist())]
                        grids, videos = [grids[i] for i in best], [videos[i] for i in best]
                for k, grid, v in zip(missing, grids, videos):
                    have[k] = Generated(video_io.from_model(v), grid)
                with self._lock:
                    self.stats["sample_tokens"] += len(missing)
                    self.stats["detokenize"] += 1
                    self.stats["generated_videos"] += len(missing)
                    for k in missing:
                        self._generated[keys[k]] = have[k]
                    while len(self._generated) > self.settings.cache_generations:
                        old, _ = self._generated.popitem(last=False)
                        for path in self._gen_paths(GenRequest.from_key(old), old[2]):
                            path.unlink(missing_ok=True)
            return {k: have[k] for k in ks}, not missing

    def generate(self, kind, condition, k=None, frames=None, steps=None, guidance=None, temperature=None, seed=None,
                 progress: GenProgress | None = None, best_of=None) -> Generation:
        """One clip from a prompt (kind "text") or a class (kind "class": 0..89 or "red circle left") with a
        budget of k tokens per time step (None = the default). Cached; progress(stage, done, total)."""
        _check_progress(progress)
        req = self.gen_request(kind, condition, frames, steps, guidance, temperature, seed, best_of)
        k = self.defaults()["k"] if k is None else self.check_k(k)
        results, cached = self._generate(req, [k], progress)
        path = _atomic_write_video(self._gen_paths(req, k)[0], results[k].video, self.tok.fps, self.display_scale())
        t, K = results[k].tokens.shape
        duration = req.frames / self.tok.fps
        bits, rate = bits_and_bitrate(k, t, self.tok.codebook_size, duration)
        summary = (f"{req.describe()} at **k = {k} of {K}** tokens per time step: {t} time steps x {k} = "
                   f"**{t * k} tokens**, {bits:,.0f} bits ({rate:,.0f} bit/s) for {req.frames} frames ({duration:.2f} s) at "
                   f"{self.tok.size}x{self.tok.size}{self._shown_at()}. Guidance {req.guidance:g}, temperature "
                   f"{req.temperature:g}, "
                   f"seed {req.seed}, decoder {req.steps} sampling steps"
                   f"{f', best of {req.best_of} by the reranker' if req.best_of > 1 else ''}"
                   f"{' (from the cache)' if cached else ''}.")
        return Generation(req, [k], path, summary + self._prompt_notes(req), results, cached)

    def _prompt_notes(self, req: GenRequest) -> str:
        """What a text prompt asks that the generator cannot read as asked: words no training caption used, and
        the end of a prompt longer than the word pieces it reads. '' for a class or a prompt it reads whole."""
        if req.kind != "text":
            return ""
        from .train_generator import unseen_words
        notes = ""
        unseen = unseen_words(req.condition)
        if unseen:  # a visitor typing "a cat on the moon" learns why the clip shows coloured shapes
            notes += (f"\n\nWords no training caption used: **{', '.join(unseen)}**. The generators know the "
                      f"shapes world ({SHAPES_WORDS}); other words reach them only through the text encoder, "
                      "which may or may not place them near one of those.")
        encoder = self.generator(req.kind).text_encoder
        try:  # a note: whatever a text model's tokenizer does, it never fails the request it comes with
            read, unread = encoder.unread(req.condition) if encoder is not None else (0, "")
        except Exception:  # noqa: BLE001
            log.exception("flexvid app: no note on the prompt's unread words")
            read, unread = 0, ""
        if unread:  # "the the the ... a red circle moving left": the words that matter come too late
            shown = unread if len(unread) <= 60 else unread[:57].rstrip() + "..."
            notes += (f"\n\nThe generator reads the first {read} word pieces of a prompt: from **{shown}** on, "
                      "the prompt reaches it only through the context it gives the words before; put what matters "
                      "first.")
        return notes

    def generate_ladder(self, kind, condition, frames=None, steps=None, guidance=None, temperature=None, seed=None,
                        progress: GenProgress | None = None, best_of=None) -> Generation:
        """The same request at every budget k = 1, 2, 4, ..., K with the same seed, as one labelled grid
        video: what a few tokens buy. Budgets already generated (e.g. by generate) are cache hits."""
        _check_progress(progress)
        req = self.gen_request(kind, condition, frames, steps, guidance, temperature, seed, best_of)
        ks = self.tok.ladder()
        results, cached = self._generate(req, ks, progress)
        half = max(1, self.display_scale() // 2)
        cells = [label(upscale(results[j].video, half), f"k = {j}") for j in ks]
        rows = math.ceil(len(cells) / 4)
        path = _atomic_write_video(self._gen_paths(req, ks[-1])[1],
                                   video_io.grid(cells, cols=math.ceil(len(cells) / rows)), self.tok.fps)
        t = results[ks[0]].tokens.shape[0]
        bits = lambda j: bits_and_bitrate(j, t, self.tok.codebook_size, req.frames / self.tok.fps)[0]  # noqa: E731
        rows_md = "\n".join(f"| {j} | {j * t} | {bits(j):,.0f} |" for j in ks)
        summary = (f"{req.describe()}, seed {req.seed}, {req.frames} frames: the same seed at every budget; the "
                   f"sampler draws exactly k tokens per time step and stops.{' (from the cache)' if cached else ''}"
                   f"\n\n| k | tokens | bits |\n|---:|---:|---:|\n{rows_md}")
        return Generation(req, ks, path, summary + self._prompt_notes(req), results, cached)
