"""The VideoFlexTok pipeline: the loaded stages and the verbs users want.

    tok = VideoFlexTok.from_pretrained("assets/tokenizer")       # or a Hugging Face repo id
    tokens = tok.tokenize(video)                                  # list of (t, K) integer grids
    videos = tok.detokenize(tokens, k=4, steps=25, seed=0)        # any prefix decodes
    ladder = tok.reconstruct(video, ks=[1, 2, 4, 8, 16, 32])      # the prefix ladder in one batch

Videos are float tensors (3, T, H, W) in [-1, 1] at the model's frame rate and size, T = 1 + 4n of any
length: clips longer than one chunk (17 frames) are encoded chunk by chunk, and decoded chunk by chunk
with the last decoded frame as a clean prefix, so memory stays bounded by one chunk
(VideoFlexTok, arXiv 2604.12887, long-video decoding). flexvid.video_io turns files into such tensors.

Letters: B batch, C latent channels, T frames, t time steps, K tokens per step, k kept.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
from contextlib import nullcontext
from typing import Callable, Sequence

import numpy as np
import torch

from .flow import euler_sample
from .hub import (check_output, config_dict, config_from_dict, float32_default, load_model, missing_weights,
                  read_json, resolve, save_weights, warn_caller, warn_unread, write_json)
from .quantizer import prefix_ladder
from .tokenizer import FlexTokenizer, TokenizerConfig
from .training import check_seed, is_int, is_real, pick_device, resolve_dtype
from .vae import VAEConfig, VideoVAE

FORMAT = "flexvid-tokenizer"


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None (other C libraries, other systems)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_host_memory(device: torch.device) -> None:
    """Give freed CPU memory back to the system between chunks. glibc keeps freed blocks in per-thread
    arenas, so chunk after chunk of slightly different shapes grows the resident size although the live
    tensors stay bounded by one chunk; malloc_trim returns those pages (about 1 ms)."""
    trim = _malloc_trim() if device.type == "cpu" else None
    if trim is not None:
        trim(0)


def chunk_bounds(T: int, chunk: int) -> list[tuple[int, int]]:
    """Frame ranges [a, b] (inclusive) of chunks of `chunk` frames overlapping by one frame."""
    if chunk < 2:
        raise ValueError(f"chunks overlap by one frame, so they need at least 2 frames, got {chunk}")
    out, a = [], 0
    while True:
        b = min(a + chunk - 1, T - 1)
        out.append((a, b))
        if b == T - 1:
            return out
        a = b


INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32, torch.uint64)

# tokenize refuses values beyond this (a decoded video may overshoot [-1, 1] a little; 0..255 is a mistake)
OUT_OF_RANGE = 1.5
MAX_VIDEO_BYTES = 8 * 2**30  # the frames one call may take in or give out (as float32), all clips together


def _from_uint8(v: torch.Tensor, frames: int = 8) -> bool:
    """Whether every value of a clip v (3, T, H, W) is one video_io.to_model gives a uint8 level (k / 127.5 - 1,
    in float32): checked a few frames at a time (temporaries of that size), to the first that is not."""
    if v.dtype != torch.float32:
        return False
    for part in v.split(frames, dim=1):
        levels = torch.round((part + 1.0) * 127.5).clamp_(0, 255)
        if not torch.equal(levels.div_(127.5).sub_(1.0), part):
            return False
    return True


class VideoFlexTok:
    """A video VAE and a FlexTokenizer, on one device, with tokenize / detokenize / reconstruct.

    Every call runs under torch.no_grad. Wrapping modules moves them to `device` in place (as
    nn.Module.to does) and leaves their training mode and requires_grad alone, so a model being trained
    can be wrapped to look at its reconstructions and go on training. To change device or dtype, load
    again: from_pretrained(path, device=..., dtype=...); casting the modules by hand is not supported."""

    def __init__(self, vae: VideoVAE, tokenizer: FlexTokenizer, fps: float = 8.0, device: str | torch.device = "auto",
                 dtype: str | torch.dtype | None = None, max_batch: int = 16):
        self.device = pick_device(str(device))
        dtype = resolve_dtype(dtype, self.device)
        self.dtype = dtype
        if not is_real(fps) or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if not is_int(max_batch) or not 1 <= max_batch <= 4096:
            raise ValueError(f"max_batch must be an integer in [1, 4096], got {max_batch!r}")
        if vae.cfg.z_channels != tokenizer.cfg.z_channels:
            raise ValueError(f"VAE has {vae.cfg.z_channels} latent channels, tokenizer expects {tokenizer.cfg.z_channels}")
        self.fps, self.max_batch = float(fps), int(max_batch)
        self.vae, self.tokenizer = vae.to(self.device), tokenizer.to(self.device)  # checked first: moved only if taken

    # ------------------------------------------------------------------ properties
    @property
    def size(self) -> int:
        return self.tokenizer.cfg.latent_size * self.vae.cfg.spatial_factor

    @property
    def n_tokens(self) -> int:
        """K, tokens per latent time step."""
        return self.tokenizer.cfg.n_registers

    @property
    def codebook_size(self) -> int:
        return self.tokenizer.cfg.codebook_size

    @property
    def chunk_frames(self) -> int:
        return 1 + self.vae.cfg.temporal_factor * (self.tokenizer.cfg.max_t - 1)

    def ladder(self) -> list[int]:
        """The default prefix ladder 1, 2, 4, ..., K."""
        return prefix_ladder(self.n_tokens)

    def num_steps(self, T: int) -> int:
        """Latent time steps (token grid rows) for a clip of T = 1 + 4n frames, the lengths tokenize takes
        (video_io.prepare_video pads a clip to the next one)."""
        f = self.vae.cfg.temporal_factor
        if not is_int(T) or T < 1 or (T - 1) % f:
            fitted = 1 + f * -(-(int(T) - 1) // f) if is_int(T) and T >= 1 else None
            raise ValueError(f"T must be a number of frames 1 + {f}n (n >= 0), got {T!r}"
                             + (f": padded to {fitted} frames (its last frame repeated) it makes "
                                f"{1 + (fitted - 1) // f} steps" if fitted else ""))
        return 1 + (int(T) - 1) // f

    def num_frames(self, t: int) -> int:
        """Frames a grid of t >= 1 time steps decodes to (the first step is one frame)."""
        if not is_int(t) or t < 1:
            raise ValueError(f"t must be a number of time steps >= 1, got {t!r}")
        return 1 + (int(t) - 1) * self.vae.cfg.temporal_factor

    def _autocast(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    @float32_default
    def from_pretrained(cls, path_or_repo_id: str | None = None, device: str = "auto", dtype=None,
                        revision: str | None = None):
        """Load from a folder or Hugging Face repo holding config.json, vae.safetensors and
        tokenizer.safetensors (None: the embedded default, this checkout's assets/tokenizer, from any working
        directory). Only safetensors and plain JSON values are read."""
        resolve_dtype(dtype, pick_device(device))  # a device or dtype this machine lacks: before any loading
        if path_or_repo_id is None:
            from .generate import DEFAULT_TOKENIZER
            path_or_repo_id = DEFAULT_TOKENIZER
        folder = resolve(path_or_repo_id, revision)
        cfg = read_json(os.path.join(folder, "config.json"))
        if cfg.get("format") != FORMAT:
            raise ValueError(f"{path_or_repo_id!r} is not a flexvid tokenizer (config format {cfg.get('format')!r})")
        for key in ("vae", "tokenizer"):
            if key not in cfg:
                raise ValueError(f"{path_or_repo_id!r}: config.json has no {key!r} section")
        files = [os.path.join(folder, n) for n in ("vae.safetensors", "tokenizer.safetensors")]
        for f in files:  # before building anything (a paper-size model costs gigabytes to initialise)
            if not os.path.exists(f):
                raise missing_weights(f)
        fps = cfg.get("fps", 8.0)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
            raise ValueError(f"{path_or_repo_id!r}: config.json has fps {fps!r}; expected a number in (0, 1000]")
        try:
            vae_cfg = config_from_dict(VAEConfig, cfg["vae"])
            tok_cfg = config_from_dict(TokenizerConfig, cfg["tokenizer"])
        except ValueError as e:
            raise ValueError(f"{path_or_repo_id!r}: {e}") from None
        if not {"latent_mean", "latent_std"} <= set(cfg["vae"]):  # the tokens would be of other latents
            raise ValueError(f"{path_or_repo_id!r}: config.json's vae has no latent_mean / latent_std (the latent "
                             "statistics train-vae measures, [] where not measured); without them every token "
                             "is different")
        if vae_cfg.z_channels != tok_cfg.z_channels:
            raise ValueError(f"{path_or_repo_id!r}: the VAE has {vae_cfg.z_channels} latent channels, the "
                             f"tokenizer expects {tok_cfg.z_channels}")
        # size and chunk_frames are written for readers of the file; the model's sections decide them, so a
        # value edited by hand would change nothing: refused rather than ignored
        implied = {"size": tok_cfg.latent_size * vae_cfg.spatial_factor,
                   "chunk_frames": 1 + vae_cfg.temporal_factor * (tok_cfg.max_t - 1)}
        for key, value in implied.items():
            if key in cfg and (type(cfg[key]) is not int or cfg[key] != value):  # 64.0 or true is no size
                raise ValueError(f"{path_or_repo_id!r}: config.json says {key} {cfg[key]!r}, but its vae and tokenizer "
                                 f"sections make it {value} (size: latent_size x the VAE's spatial factor; "
                                 "chunk_frames: 1 + the temporal factor x (max_t - 1)); fix or remove the key")
        warn_unread(cfg, ("format", "fps", "size", "chunk_frames", "vae", "tokenizer"), repr(path_or_repo_id))
        # each checked against its file's header before it is built: a corrupt size costs nothing
        vae = load_model(VideoVAE, vae_cfg, files[0]).eval().requires_grad_(False)
        tok = load_model(FlexTokenizer, tok_cfg, files[1]).eval().requires_grad_(False)
        return cls(vae, tok, fps=fps, device=device, dtype=dtype)

    def save_pretrained(self, folder: str, half: bool = False) -> None:
        """Write config.json, vae.safetensors and tokenizer.safetensors (from_pretrained reads them);
        half stores the tokenizer's weights in fp16 (the embedded model's files stay under 20 MB)."""
        if not isinstance(half, bool):
            raise ValueError(f"half must be True or False, got {half!r}")
        if not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():
            raise ValueError(f"folder must be a non-empty path to a folder, got {folder!r}")
        folder = str(check_output(folder, folder=True, name="folder"))
        write_json(os.path.join(folder, "config.json"),
                   {"format": FORMAT, "fps": self.fps, "size": self.size, "chunk_frames": self.chunk_frames,
                    "vae": config_dict(self.vae.cfg), "tokenizer": config_dict(self.tokenizer.cfg)})
        save_weights(self.vae, os.path.join(folder, "vae.safetensors"))
        save_weights(self.tokenizer, os.path.join(folder, "tokenizer.safetensors"), half=half)

    # ------------------------------------------------------------------ input checks
    @property
    def max_frames(self) -> int:
        """The most frames one tokenize or detokenize call takes or gives, all clips together: MAX_VIDEO_BYTES
        of float32 frames at this model's size (174,762 at 64 px, 6 hours at 8 fps)."""
        return max(self.chunk_frames, MAX_VIDEO_BYTES // (3 * self.size * self.size * 4))

    def _check_length(self, frames: int, what: str) -> None:
        if frames > self.max_frames:
            raise ValueError(f"{what} {frames} frames, more than the {self.max_frames} one call takes "
                             f"(MAX_VIDEO_BYTES of float32 frames at {self.size} px): split it into several calls")

    @staticmethod
    def _check_callback(callback) -> None:
        if callback is not None and not callable(callback):
            raise ValueError(f"callback must be a function callback(done, total) or None, got {type(callback).__name__}")

    def _as_batch(self, video) -> list[torch.Tensor]:
        if isinstance(video, torch.Tensor):
            if video.ndim == 4:
                video = [video]
            elif video.ndim == 5:
                if not len(video):
                    raise ValueError(f"expected at least one video, got an empty batch of shape {tuple(video.shape)}")
                video = list(video)
            else:
                raise ValueError(f"expected a video (3, T, H, W) or a batch (B, 3, T, H, W), got shape {tuple(video.shape)}")
        frames_hint = ("; frames from video_io.read_video (a (T, H, W, 3) uint8 array) become one with "
                       "video_io.to_model(video_io.prepare_video(frames, fps, target_fps=tok.fps, size=tok.size))")
        if not isinstance(video, (list, tuple)) or not video:
            raise ValueError(f"expected a video tensor or a non-empty list of them, got "
                             f"{'an empty ' if isinstance(video, (list, tuple)) else ''}{type(video).__name__}"
                             + (frames_hint if isinstance(video, np.ndarray) else ""))
        out, dark_free = [], False
        for v in video:
            if not isinstance(v, torch.Tensor) or v.ndim != 4 or v.shape[0] != 3:
                what = f"shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
                raise ValueError(f"each video must be a torch tensor (3, T, H, W), got {what}"
                                 + (frames_hint if isinstance(v, np.ndarray) else ""))
            T, H, W = v.shape[1:]
            if (H, W) != (self.size, self.size):
                raise ValueError(f"video is {H}x{W}, the model takes {self.size}x{self.size}: use video_io.prepare_video")
            if (T - 1) % self.vae.cfg.temporal_factor:
                raise ValueError(f"video has {T} frames; need 1 + {self.vae.cfg.temporal_factor}n (video_io.fit_length)")
            self._check_length(T + sum(u.shape[1] for u in out), "the videos have")  # before a pass over values
            if v.device.type == "meta":
                raise ValueError("video is on the meta device: it has no values")
            if not v.is_floating_point():
                raise ValueError(f"video must be a float tensor in [-1, 1], got {v.dtype}: convert uint8 frames "
                                 "with video_io.to_model")
            if not torch.isfinite(v).all():
                raise ValueError("video must be a finite float tensor in [-1, 1]")
            lo, hi = torch.aminmax(v)
            if lo < -OUT_OF_RANGE or hi > OUT_OF_RANGE:  # e.g. pixel values 0..255: video_io.to_model maps them
                raise ValueError(f"video values must lie in [-1, 1], got [{float(lo):.3g}, {float(hi):.3g}]: "
                                 "convert uint8 frames with video_io.to_model")
            # (all zeros, mid-grey, is a common dummy clip; a bright clip from video_io.to_model has every value
            # on its grid of uint8 levels, k / 127.5 - 1, which frames in [0, 1] from uint8 / 255 are not)
            dark_free = dark_free or (lo >= 0 and hi > 0 and not _from_uint8(v))
            out.append(v)
        if dark_free:  # every pixel at mid-grey or brighter: most likely frames scaled to [0, 1]
            warn_caller("a video has no value below 0: the model takes [-1, 1] (black is -1), so frames in [0, 1] "
                        "give wrong tokens; map them with x * 2 - 1 (video_io.to_model does it for uint8 frames)")
        return out

    # ------------------------------------------------------------------ tokenize
    @torch.no_grad()
    @float32_default
    def tokenize(self, video) -> list[torch.Tensor]:
        """Videos (3, T, H, W) in [-1, 1] (one, a batch or a list) -> list of (t, K) int64 token grids,
        t = 1 + (T - 1) / 4. Clips longer than one chunk are encoded chunk by chunk."""
        return self._tokenize(self._as_batch(video))

    def _tokenize(self, videos: list[torch.Tensor]) -> list[torch.Tensor]:
        """tokenize of videos _as_batch has checked."""
        jobs = []  # (clip, chunk index, frames)
        for i, v in enumerate(videos):
            for c, (a, b) in enumerate(chunk_bounds(v.shape[1], self.chunk_frames)):
                jobs.append((i, c, v[:, a:b + 1]))
        pieces: dict[tuple[int, int], torch.Tensor] = {}
        by_len: dict[int, list] = {}
        for job in jobs:
            by_len.setdefault(job[2].shape[1], []).append(job)
        # At most one chunk per clip of the call at a time (and max_batch): a long clip costs the memory
        # of a short one, whatever its length.
        step = max(1, min(self.max_batch, len(videos)))
        for group in by_len.values():
            for j in range(0, len(group), step):
                part = group[j:j + step]
                x = torch.stack([p[2] for p in part]).to(self.device, torch.float32)
                with self._autocast():
                    z = self.vae.encode(x).float()
                    # NaN rounds to token -2**31 in FSQ: refuse instead of returning garbage ids
                    if not torch.isfinite(z).all():
                        raise ValueError(self._not_finite("the VAE's encoding"))
                    _, idx = self.tokenizer.encode(z)
                if idx.min() < 0 or idx.max() >= self.codebook_size:
                    raise ValueError(self._not_finite("the tokenizer's encoder output"))
                for (i, c, _), grid in zip(part, idx.cpu()):
                    pieces[(i, c)] = grid if c == 0 else grid[1:]  # later chunks repeat their first step
                del x, z, idx
                release_host_memory(self.device)
        out = []
        for i, v in enumerate(videos):
            n_chunks = len(chunk_bounds(v.shape[1], self.chunk_frames))
            out.append(torch.cat([pieces[(i, c)] for c in range(n_chunks)]))
        return out

    def _not_finite(self, what: str) -> str:
        hint = "" if self.dtype == torch.float32 else f", or {self.dtype} overflowed (try float32)"
        return f"{what} is not finite (NaN or infinity): the model's weights are corrupt{hint}"

    # ------------------------------------------------------------------ detokenize
    def _check_tokens(self, tokens) -> list[torch.Tensor]:
        if isinstance(tokens, (np.ndarray, torch.Tensor)) and tokens.ndim < 2:  # a scalar or one row: no grid
            raise ValueError(f"expected a (t, {self.n_tokens}) token grid or a batch of them, got shape "
                             f"{tuple(tokens.shape)}")
        given = type(tokens).__name__
        if isinstance(tokens, (np.ndarray, torch.Tensor)):  # (an array: e.g. "tokens" of reconstruct's tokens.npz)
            given = f"an empty batch of shape {tuple(tokens.shape)}"
            tokens = [tokens] if tokens.ndim == 2 else list(tokens)
        elif isinstance(tokens, (list, tuple)) and not tokens:
            given = f"an empty {given}"
        if not isinstance(tokens, (list, tuple)) or not tokens:
            raise ValueError("expected a (t, K) token grid, a (B, t, K) batch or a non-empty list of grids "
                             f"(tensors or NumPy arrays), got {given}")
        out = []
        if all(is_int(v) for v in tokens[:1]) or (isinstance(tokens[0], (list, tuple)) and tokens[0]
                                                 and all(is_int(v) for v in tokens[0][:1])):
            raise ValueError("tokens look like one grid as nested Python lists, but a list is read as a list of "
                             "grids: pass torch.tensor(tokens), or [tokens]")
        for g in tokens:
            try:
                # (a copy of an array: torch warns of a read-only one, e.g. np.load(..., mmap_mode="r"))
                g = torch.as_tensor(np.array(g) if not isinstance(g, torch.Tensor) else g)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"a token grid must be an integer array, got {type(g).__name__}") from None
            if g.ndim != 2 or g.shape[1] != self.n_tokens or g.shape[0] < 1:
                raise ValueError(f"token grid must be (t, {self.n_tokens}), got {tuple(g.shape)}")
            if g.device.type == "meta":
                raise ValueError("token grid is on the meta device: it has no values")
            frames = sum(self.num_frames(u.shape[0]) for u in out) + self.num_frames(g.shape[0])
            self._check_length(frames, "the token grids decode to")  # before a frame is decoded
            if g.dtype not in INT_DTYPES:
                raise ValueError(f"tokens must be integers in [0, {self.codebook_size}), got dtype {g.dtype}")
            g = g.long()  # a uint64 of 2 ** 63 or more wraps below 0: refused as out of range
            if g.min() < 0 or g.max() >= self.codebook_size:
                raise ValueError(f"tokens must be integers in [0, {self.codebook_size})")
            out.append(g)
        return out

    @staticmethod
    def check_steps_and_guidance(steps, guidance, names=("steps", "guidance")) -> None:
        """The bounds of any tokenizer's sampler (a command checks them before it loads one); None passes."""
        if steps is not None and (not is_int(steps) or not 1 <= steps <= 1000):
            raise ValueError(f"{names[0]} must be an integer in [1, 1000], got {steps!r}")
        if guidance is not None and (not is_real(guidance) or not 0.0 <= guidance <= 100.0):
            raise ValueError(f"{names[1]} must be a number in [0, 100], got {guidance!r}")

    def _check_sampler(self, steps, guidance, mode, noise_scale=None):
        cfg = self.tokenizer.cfg
        steps = cfg.sample_steps if steps is None else steps
        guidance = cfg.guidance if guidance is None else guidance
        mode = cfg.guidance_mode if mode is None else mode
        noise_scale = cfg.noise_scale if noise_scale is None else noise_scale
        if not is_real(noise_scale) or not 0.0 <= noise_scale <= 2.0:
            raise ValueError(f"noise_scale must be a number in [0, 2], got {noise_scale!r}")
        self.check_steps_and_guidance(steps, guidance)
        if mode not in ("cfg", "apg"):
            raise ValueError(f"guidance_mode must be 'cfg' or 'apg', got {mode!r}")
        return int(steps), float(guidance), mode, float(noise_scale)

    @torch.no_grad()
    @float32_default
    def detokenize(self, tokens, k: int | Sequence[int] | None = None, steps: int | None = None,
                   guidance: float | None = None, guidance_mode: str | None = None,
                   seed: int | Sequence[int] = 0, callback: Callable[[int, int], None] | None = None,
                   noise_scale: float | None = None) -> list[torch.Tensor]:
        """Token grids -> videos (3, T, H, W) in [-1, 1] on the CPU.

        k: tokens kept per step (one for all, or one per grid; default K). steps, guidance and
        guidance_mode default to the model's measured settings. seed: one per call or one per grid; the
        noise depends only on the seed and the grid's length, so equal seeds compare k values on the same
        noise (the noise is drawn per chunk of max_t steps: a time prefix of a grid decodes to the full
        decode's first frames only in whole chunks). A grid's video does not depend on the other grids of
        the call beyond float rounding (about 1e-5). Videos of one call may share storage. noise_scale
        (default the model's, 1) scales that noise: below 1 the decode leans to the mean reconstruction.
        callback(done, total) is called after each sampler step (progress bars)."""
        self._check_callback(callback)
        grids = self._check_tokens(tokens)
        ks = self._per_grid(k if k is not None else self.n_tokens, len(grids), "k")
        for kk in ks:
            if not is_int(kk) or not 1 <= kk <= self.n_tokens:
                raise ValueError(f"k must be an integer in [1, {self.n_tokens}], got {kk!r}")
        ks = [int(kk) for kk in ks]
        seeds = [check_seed(s) for s in self._per_grid(seed, len(grids), "seed")]
        steps, guidance, mode, noise_scale = self._check_sampler(steps, guidance, guidance_mode, noise_scale)
        out: list[torch.Tensor | None] = [None] * len(grids)
        by_t: dict[int, list[int]] = {}
        for i, g in enumerate(grids):
            by_t.setdefault(g.shape[0], []).append(i)
        total = sum(len(self._token_chunks(t)) * -(-len(ix) // self.max_batch) for t, ix in by_t.items()) * steps
        done = [0]

        def step_cb(i, n):
            done[0] += 1
            if callback is not None:
                callback(done[0], total)

        for t, idx in by_t.items():
            for j in range(0, len(idx), self.max_batch):
                part = idx[j:j + self.max_batch]
                videos = self._decode_group(torch.stack([grids[i] for i in part]), torch.tensor([ks[i] for i in part]),
                                            [seeds[i] for i in part], steps, guidance, mode, step_cb, noise_scale)
                for i, v in zip(part, videos):
                    out[i] = v
        return out

    @staticmethod
    def _per_grid(value, n, name):
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                raise ValueError(f"{name} has {len(value)} values for {n} token grids")
            return list(value)
        if isinstance(value, (torch.Tensor, np.ndarray)):  # to Python numbers, so that 2.9 is refused, not cut to 2
            value = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
            value = value.item() if value.ndim == 0 else value.ravel().tolist()
            return VideoFlexTok._per_grid(value, n, name)
        if not is_int(value):
            raise ValueError(f"{name} must be an integer or a list of integers, got {value!r}")
        return [int(value)] * n

    def _token_chunks(self, t: int) -> list[tuple[int, int]]:
        """Token step ranges [a, b) decoded per chunk: the first chunk max_t steps, then max_t - 1 new
        steps after a one-step clean prefix."""
        m = self.tokenizer.cfg.max_t
        out, a = [(0, min(m, t))], min(m, t)
        while a < t:
            out.append((a, min(a + m - 1, t)))
            a = out[-1][1]
        return out

    def _decode_group(self, tokens, k, seeds, steps, guidance, mode, step_cb, noise_scale=1.0) -> list[torch.Tensor]:
        """Decode grids of equal length chunk by chunk. tokens (B, t, K), k (B,)."""
        t = tokens.shape[1]
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        frames, last = [], None
        k = k.to(self.device)
        for a, b in self._token_chunks(t):
            grid = tokens[:, a:b].to(self.device)
            prefix = None
            if last is not None:  # clean prefix: the previous chunk's last decoded frame, re-encoded
                prefix = self.vae.encode(last[:, :, None]).float()  # (B, C, 1, h, w)
                grid = torch.cat([torch.zeros_like(grid[:, :1]), grid], dim=1)
            z = self._sample_chunk(grid, k, gens, prefix, steps, guidance, mode, step_cb, noise_scale)
            with self._autocast():
                x = self.vae.decode(z.to(self.dtype) if self.dtype != torch.float32 else z).float()
            frames.append(x if prefix is None else x[:, :, 1:])  # the prefix frame was decoded already
            last = x[:, :, -1]
            del x, z
            release_host_memory(self.device)
        return list(torch.cat(frames, dim=2).cpu())

    def _sample_chunk(self, grid, k, gens, prefix, steps, guidance, mode, step_cb, noise_scale) -> torch.Tensor:
        """One chunk's normalised latents (B, C, t, h, w) from its token grid (B, t, K): the flow sampler
        conditioned on the first k registers, from the generators' noise, with a clean prefix step if given."""
        tok, cfg = self.tokenizer, self.tokenizer.cfg
        B, tc = grid.shape[:2]
        h = cfg.latent_size
        noise = torch.stack([torch.randn(cfg.z_channels, tc, h, h, generator=g) for g in gens]).to(self.device)
        if noise_scale != 1.0:
            noise = noise * noise_scale
        codes = tok.quantizer.indices_to_codes(grid)
        clean = torch.zeros(B, tc, dtype=torch.bool, device=self.device)
        if prefix is not None:
            clean[:, 0] = True
        with self._autocast():
            regs = tok.condition(codes, k, None, clean)
            null_regs = tok.null_token.to(regs.dtype).expand_as(regs)

            def velocity(x_s, s):
                return tok.velocity(x_s.to(regs.dtype), s, regs, guidance, mode, null_regs)

            return euler_sample(velocity, noise, steps, prefix=prefix, callback=step_cb)

    @torch.no_grad()
    @float32_default
    def sample_latents(self, tokens, k: int | None = None, steps: int | None = None, guidance: float | None = None,
                       guidance_mode: str | None = None, seed: int | Sequence[int] = 0,
                       noise_scale: float | None = None) -> torch.Tensor:
        """The resampler's normalised latents (B, C, t, h, w) for token grids of one chunk at most
        (t <= max_t), before the VAE decodes them: the same noise and sampler as detokenize, so
        vae.decode(sample_latents(...)) is detokenize's video. Used to fit a VAE decoder to them."""
        grids = self._check_tokens(tokens)
        if len({g.shape[0] for g in grids}) != 1 or grids[0].shape[0] > self.tokenizer.cfg.max_t:
            raise ValueError(f"sample_latents takes grids of one length, at most {self.tokenizer.cfg.max_t} steps")
        k = self.n_tokens if k is None else k
        if not is_int(k) or not 1 <= k <= self.n_tokens:
            raise ValueError(f"k must be an integer in [1, {self.n_tokens}], got {k!r}")
        k = int(k)
        steps, guidance, mode, noise_scale = self._check_sampler(steps, guidance, guidance_mode, noise_scale)
        gens = [torch.Generator().manual_seed(check_seed(s)) for s in self._per_grid(seed, len(grids), "seed")]
        grid = torch.stack(grids).to(self.device)
        kk = torch.full((len(grids),), k, device=self.device)
        return self._sample_chunk(grid, kk, gens, None, steps, guidance, mode, None, noise_scale).float().cpu()

    # ------------------------------------------------------------------ convenience
    @torch.no_grad()
    @float32_default
    def reconstruct(self, video, ks: int | Sequence[int] | np.ndarray | None = None, steps: int | None = None,
                    guidance: float | None = None, guidance_mode: str | None = None, seed: int = 0,
                    tokens: torch.Tensor | np.ndarray | None = None, callback=None,
                    noise_scale: float | None = None) -> dict[int, torch.Tensor]:
        """The prefix ladder of one video in one batched decode: {k: video (3, T, H, W)}. Every k uses
        the same noise (the same seed), so the ladder shows what the extra tokens add; each video is
        detokenize's at that k and seed up to float rounding (about 1e-5). Pass tokens to
        skip re-tokenizing (video may then be None; a video given with them must be the clip they are of)."""
        if isinstance(ks, (torch.Tensor, np.ndarray)):  # as detokenize's k: an array of integers reads as a list
            if isinstance(ks, torch.Tensor):
                if ks.device.type == "meta":
                    raise ValueError("ks is on the meta device: it has no values")
                ks = ks.detach().cpu().numpy() if ks.dtype in INT_DTYPES else ks
            if ks.ndim > 1:
                raise ValueError(f"ks must be an integer or a list of integers, got an array of shape "
                                 f"{tuple(ks.shape)}")
            if not isinstance(ks, np.ndarray) or not np.issubdtype(ks.dtype, np.integer):
                raise ValueError(f"ks must be integers, got an array of {ks.dtype}")
            ks = np.unique(ks).tolist() if ks.size > self.n_tokens else ks.tolist()  # distinct first: the check below
        if ks is None:
            ks = self.ladder()
        elif is_int(ks):
            ks = [int(ks)]
        elif isinstance(ks, (list, tuple, range)):
            if len(ks) > self.n_tokens:  # a huge list is refused before each of its values is checked
                try:
                    distinct = len(ks) if isinstance(ks, range) else len(set(ks))
                except TypeError:  # unhashable values: not integers, said just below
                    distinct = 0
                if distinct > self.n_tokens:
                    raise ValueError(f"ks names {distinct} values; this model has {self.n_tokens} (k in [1, "
                                     f"{self.n_tokens}])")
            if not all(is_int(k) for k in ks):
                raise ValueError(f"ks must be integers, got {list(ks)[:8]!r}")
            ks = list(dict.fromkeys(int(k) for k in ks))  # each k once, in the order given
        else:
            raise ValueError(f"ks must be an integer or a list of integers, got {type(ks).__name__}")
        if not ks:
            raise ValueError("ks must name at least one k")
        bad = [k for k in ks if not 1 <= k <= self.n_tokens]
        if bad:  # before the clip is tokenized
            raise ValueError(f"ks must be integers in [1, {self.n_tokens}], got {bad[0]!r}")
        self._check_callback(callback)
        check_seed(seed)  # the decode's settings too, before the clip is tokenized
        self._check_sampler(steps, guidance, guidance_mode, noise_scale)
        videos = None if tokens is not None and video is None else self._as_batch(video)
        if videos is not None and len(videos) != 1:
            raise ValueError(f"reconstruct takes one video, got {len(videos)}: call it once per video")
        grid = None
        if tokens is not None:
            grid = self._check_tokens(tokens)
            if len(grid) != 1:
                raise ValueError(f"reconstruct takes the tokens of one video, got {len(grid)} grids")
            grid = grid[0]
            if videos is not None and self.num_steps(videos[0].shape[1]) != grid.shape[0]:
                raise ValueError(f"the tokens have {grid.shape[0]} time steps, the video's {videos[0].shape[1]} "
                                 f"frames make {self.num_steps(videos[0].shape[1])}: they are not its tokens")
        frames = videos[0].shape[1] if videos is not None else self.num_frames(grid.shape[0])
        if len(ks) * frames > self.max_frames:  # every k is a whole video: refused before the clip is tokenized
            raise ValueError(f"{len(ks)} k values of a {frames}-frame clip decode to {len(ks) * frames} frames, more "
                             f"than the {self.max_frames} one call gives (MAX_VIDEO_BYTES of float32 frames at "
                             f"{self.size} px): pass fewer ks per call")
        if grid is None:
            grid = self._tokenize(videos)[0]
        videos = self.detokenize([grid] * len(ks), k=ks, steps=steps, guidance=guidance,
                                 guidance_mode=guidance_mode, seed=[seed] * len(ks), callback=callback,
                                 noise_scale=noise_scale)
        return dict(zip(ks, videos))

    @torch.no_grad()
    @float32_default
    def autoencode(self, video) -> list[torch.Tensor]:
        """Stage 0 alone (the VAE round trip): the ceiling of any tokenizer reconstruction."""
        out = []
        for v in self._as_batch(video):
            frames, last = [], None
            for a, b in chunk_bounds(v.shape[1], self.chunk_frames):
                x = v[None, :, a:b + 1].to(self.device)
                with self._autocast():
                    y = self.vae.decode(self.vae.encode(x)).float().cpu()
                frames.append(y if last is None else y[:, :, 1:])
                last = y
            out.append(torch.cat(frames, dim=2)[0])
        return out
