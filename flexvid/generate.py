"""Class-to-video and text-to-video with a token budget: a generator writes token grids, VideoFlexTok decodes them.

    gen = VideoGenerator.from_pretrained("assets/generator-text")         # or a Hugging Face repo id
    videos = gen.generate("a large red circle moving left", k=8, frames=17, seed=0)
    cls = VideoGenerator.from_pretrained("assets/generator-class")
    grids = cls.sample_tokens([3, 41], k=2, frames=81)                   # class model: labels

    flexvid generate "a small blue square moving up" --k 8 --frames 17 --out clip.mp4
    flexvid generate --class-label "red circle left" --k 4 --out clip.mp4

The budget is k tokens per latent time step (1 <= k <= K), chosen per call: the generator draws t * k
tokens and stops, and the decoder reads the first k tokens of each step (VideoFlexTok, arXiv 2604.12887).
Long clips (up to 81 frames, 21 steps) are more time steps under the same budget.

Letters: B batch, t time steps, K tokens per step, k kept.
"""
from __future__ import annotations

import argparse
import numbers
import os
import re
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from . import sampling, shapes
from .cli import HelpFormatter
from .generator import Generator, GeneratorConfig
from .hub import (check_output, config_dict, config_from_dict, float32_default, load_model, missing_weights,
                  read_json, resolve, save_weights, warn_caller, warn_unread, write_json)
from .text import DEFAULT_TEXT_MODEL, TextEncoder
from .training import (add_dtype_argument, add_threads_argument, check_seed, is_int, pick_device, resolve_dtype,
                       set_threads)

FORMAT = "flexvid-generator"
ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_TOKENIZER = str(ASSETS / "tokenizer")
DEFAULT_MODELS = {"text": str(ASSETS / "generator-text"), "class": str(ASSETS / "generator-class")}
TEMPORAL_FACTOR = 4  # frames per latent time step after the first (the causal VAE's 4x)
MAX_BATCH = 64


def frames_to_steps(frames: int, max_t: int) -> int:
    """T = 1 + 4n frames -> t = 1 + n time steps; ValueError outside [1, 1 + 4 (max_t - 1)]."""
    max_frames = 1 + TEMPORAL_FACTOR * (max_t - 1)
    if not is_int(frames) or not 1 <= frames <= max_frames or (frames - 1) % TEMPORAL_FACTOR:
        raise ValueError(f"frames must be 1 + 4n in [1, {max_frames}] (1, 5, 9, ..., 17, ..., 81), got {frames!r}")
    return 1 + (int(frames) - 1) // TEMPORAL_FACTOR


def _check_callback(callback, signature: str = "callback(done, total)") -> None:
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be a function {signature} or None, got {type(callback).__name__}")


def _seed_list(seed) -> list[int] | None:
    """None for one seed; the checked seeds of a list or tuple of them."""
    if isinstance(seed, (list, tuple)):
        if not seed:
            raise ValueError("seed: an empty list")
        return [check_seed(s) for s in seed]
    return None


def parse_label(label) -> int:
    """A class label: an integer in [0, 90), or its attributes "red circle left" / "red-circle-still" /
    "red circle moving left" / "red circle standing still"."""
    if isinstance(label, str):
        s = label.strip()
        if s.isascii() and re.fullmatch(r"-?\d{1,9}", s):  # "٣" and "²" are digits to Python, not labels here
            return parse_label(int(s))
        parts = s.replace("-", " ").replace(",", " ").split()
        if len(parts) == 4 and ((parts[2] == "moving" and parts[3] != "still") or parts[2:] == ["standing", "still"]):
            parts = parts[:2] + parts[3:]  # "red circle moving left", "red circle standing still", as captions say
        if len(parts) != 3 or parts[0] not in shapes.COLOR_NAMES or parts[1] not in shapes.SHAPES \
                or parts[2] not in shapes.MOTIONS:
            shown = label if len(label) <= 40 else label[:40] + "..."
            raise ValueError(f"class label {shown!r}: give an integer in [0, {shapes.NUM_CLASSES}) or 'colour shape "
                             f"motion' with colour in {shapes.COLOR_NAMES}, shape in {shapes.SHAPES}, "
                             f"motion in {shapes.MOTIONS}")
        return shapes.class_index(*parts)
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not 0 <= label < shapes.NUM_CLASSES:
        raise ValueError(f"class label must be an integer in [0, {shapes.NUM_CLASSES}), got {label!r}")
    return int(label)


def save_generator(model: Generator, folder: str, text_model: str = DEFAULT_TEXT_MODEL,
                   tokenizer_fingerprint: str | None = None, measured_with: dict | None = None,
                   tokenizer: str | None = None) -> None:
    """config.json + model.safetensors of a Generator (training exports its EMA copy with this).
    tokenizer_fingerprint: train_generator.fingerprint of the tokenizer whose tokens it was trained on.
    measured_with: {fingerprint: what was measured} for other tokenizers whose decoders its grids were
    evaluated with and found to serve (a tokenizer retrained after it, before the generator is).
    tokenizer: where that tokenizer is, a folder or a repo id; a folder is kept relative to `folder`
    (assets/generator-text -> ../tokenizer), so that from_pretrained finds it wherever the two travel together."""
    if not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():  # "" would be the working folder
        raise ValueError(f"folder must be a non-empty path to a folder, got {folder!r}")
    folder = str(check_output(folder, folder=True, name="folder"))
    meta = {"format": FORMAT, "generator": config_dict(model.cfg),
            "text_model": text_model if model.cfg.cond == "text" else None}
    if tokenizer_fingerprint:
        meta["tokenizer_fingerprint"] = tokenizer_fingerprint
    if tokenizer and os.path.isdir(tokenizer):
        rel = os.path.relpath(os.path.abspath(tokenizer), os.path.abspath(folder))
        meta["tokenizer"] = rel if rel.startswith(".") else f"./{rel}"  # a folder, never read as a repo id
    elif tokenizer:
        meta["tokenizer"] = tokenizer
    if measured_with:
        meta["measured_with"] = dict(measured_with)
    write_json(os.path.join(folder, "config.json"), meta)
    save_weights(model, os.path.join(folder, "model.safetensors"))


def _trained_with(folder: str, where) -> str | None:
    """The tokenizer a generator's config names (save_generator's `tokenizer`): a folder relative to the
    generator's that exists here, or a Hugging Face repo id; None where it names neither."""
    if where is None:
        return None
    if not isinstance(where, str) or not where:
        raise ValueError(f"{folder}: config.json's tokenizer must be a folder or a repo id, got {where!r}")
    local = os.path.normpath(os.path.join(folder, where))
    if os.path.isdir(local):
        return local
    is_repo_id = where.count("/") == 1 and not where.startswith((".", "/", "~"))
    return where if is_repo_id else None


class VideoGenerator:
    """A class- or text-conditioned Generator, its text encoder, and (loaded on first use) the
    VideoFlexTok that decodes its tokens. Sampling runs under torch.no_grad; wrapping a model moves it to
    `device` and to float32 in place and leaves its training mode and requires_grad alone."""

    def __init__(self, model: Generator, tokenizer=None, text_model: str = DEFAULT_TEXT_MODEL,
                 device: str | torch.device = "auto", dtype: str | torch.dtype | None = None):
        self.device = pick_device(str(device))
        self._dtype_request = dtype  # what a lazily loaded tokenizer gets
        if dtype == "auto" and self.device.type != "cuda":
            # sampling is one token per model call: on a CPU bf16 autocast costs more than it saves (2.0 s ->
            # 3.5 s for 16 prompts at k = 32 on a CPU with bf16 kernels, docs/training-notes.md), while the decoder gains
            dtype = "fp32"
        self.dtype = resolve_dtype(dtype, self.device)  # compute dtype (autocast); weights, rotary tables, norms fp32
        self.model = model.to(self.device).float()  # in place; its training mode and requires_grad are left alone
        self.cfg: GeneratorConfig = model.cfg
        self.text_model = text_model
        self.text_encoder = TextEncoder(text_model, tokens=self.cfg.text_tokens) if self.cfg.cond == "text" else None
        if isinstance(tokenizer, os.PathLike):
            tokenizer = os.fspath(tokenizer)
        from .pipeline import VideoFlexTok
        if tokenizer is not None and not isinstance(tokenizer, (str, VideoFlexTok)):
            raise ValueError("tokenizer must be a VideoFlexTok, or its folder or repo id, got "
                             f"{type(tokenizer).__name__}")
        self._tokenizer = tokenizer if tokenizer is not None else DEFAULT_TOKENIZER
        self.tokenizer_fingerprint: str | None = None  # of the tokenizer it was trained on, when recorded
        self.trained_with: str | None = None  # where that tokenizer is (a folder here or a repo id), when known
        self.tokenizer_not_found: str | None = None  # the folder its config names where it is not here
        self.measured_with: dict[str, str] = {}  # other tokenizers its grids were measured with: {fingerprint: note}
        from .rerank import DEFAULT_RERANKER
        self.reranker_path = DEFAULT_RERANKER  # generate(best_of=N > 1) scores its candidates with this
        self.last_scores = None  # (B, best_of) scores of the last best-of call

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    @float32_default
    def from_pretrained(cls, path_or_repo_id: str | None = None, tokenizer=None, device: str = "auto", dtype=None,
                        revision: str | None = None) -> "VideoGenerator":
        """Load config.json + model.safetensors from a folder or Hugging Face repo (None: the embedded
        text-to-video model, DEFAULT_MODELS["text"], from any working folder). tokenizer: a
        VideoFlexTok, or its folder / repo id, loaded on first use (default: the one the generator was
        trained with, where its config names one that is here or a repo id; else the embedded assets/tokenizer)."""
        resolve_dtype(dtype, pick_device(str(device)))  # a device or dtype this machine lacks: before any loading
        if path_or_repo_id is None:
            path_or_repo_id = DEFAULT_MODELS["text"]
        folder = resolve(path_or_repo_id, revision)
        meta = read_json(os.path.join(folder, "config.json"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path_or_repo_id!r} is not a flexvid generator (config format {meta.get('format')!r})")
        if "generator" not in meta:
            raise ValueError(f"{path_or_repo_id!r}: config.json has no 'generator' section")
        trained_with = _trained_with(folder, meta.get("tokenizer"))
        weights = os.path.join(folder, "model.safetensors")
        if not os.path.exists(weights):  # before building the model
            raise missing_weights(weights)
        try:
            gcfg = config_from_dict(GeneratorConfig, meta["generator"])
        except ValueError as e:
            raise ValueError(f"{path_or_repo_id!r}: {e}") from None
        model = load_model(Generator, gcfg, weights).eval().requires_grad_(False)  # header checked before the build
        gen = cls(model, tokenizer if tokenizer is not None else trained_with,
                  text_model=meta.get("text_model") or DEFAULT_TEXT_MODEL, device=device, dtype=dtype)
        gen.tokenizer_fingerprint = meta.get("tokenizer_fingerprint")
        gen.trained_with = trained_with
        if trained_with is None and tokenizer is None and meta.get("tokenizer"):  # a copied or moved export
            gen.tokenizer_not_found = meta["tokenizer"]
        measured = meta.get("measured_with") or {}
        if not isinstance(measured, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in measured.items()):
            raise ValueError(f"{path_or_repo_id!r}: config.json's measured_with must map tokenizer fingerprints "
                             "to notes (strings)")
        gen.measured_with = dict(measured)
        warn_unread(meta, ("format", "generator", "text_model", "tokenizer_fingerprint", "tokenizer", "measured_with"),
                    repr(path_or_repo_id))
        return gen

    def save_pretrained(self, folder: str) -> None:
        """Write config.json and model.safetensors (from_pretrained reads them)."""
        save_generator(self.model, folder, self.text_model, self.tokenizer_fingerprint, self.measured_with,
                       self.trained_with)

    @property
    def tokenizer(self):
        """The VideoFlexTok that decodes the grids (loaded on first use), checked against the generator."""
        if isinstance(self._tokenizer, str):
            from .pipeline import VideoFlexTok
            self._tokenizer = VideoFlexTok.from_pretrained(self._tokenizer, device=str(self.device),
                                                           dtype=self._dtype_request)
        tok = self._tokenizer
        if getattr(self, "_checked", None) is not tok and not self.check_tokenizer(tok):
            lost = self._not_found_note()
            warn_caller("this generator was trained on the tokens of another tokenizer (fingerprint "
                        f"{self.tokenizer_fingerprint}, this one's {self._fits[1]}){lost}: its grids will decode to "
                        "something other than what it was trained to write; load it with the one it was trained "
                        "on (tokenizer=..., --tokenizer)")
        return tok

    def _not_found_note(self) -> str:
        """Why the generator's own tokenizer was not loaded by default, where its folder is gone (else ""): a
        message's tail."""
        if not self.tokenizer_not_found:
            return ""
        return (f"; the generator's config.json names its own as {self.tokenizer_not_found!r} from the generator's "
                "folder, which is not there (was the generator copied or moved without it?), so it was not loaded")

    def check_tokenizer(self, tok) -> bool:
        """A ValueError where `tok` cannot decode this generator's grids at all (another K or codebook);
        else fits(tok), without a warning (the caller says it its own way). `tokenizer` checks once per tok."""
        if tok.n_tokens != self.cfg.K or tok.codebook_size != self.cfg.codebook_size:
            raise ValueError(f"the tokenizer has K={tok.n_tokens} tokens per step and {tok.codebook_size} codes; "
                             f"the generator was trained for K={self.cfg.K} and {self.cfg.codebook_size}"
                             f"{self._not_found_note()}")
        self._checked = tok
        return self.fits(tok)

    def fits(self, tok=None) -> bool:
        """Whether this generator's grids mean what they should to `tok` (default: its own tokenizer): the
        tokenizer it was trained on, or one its grids were measured with (a decoder retrained on the same
        tokens). True where the generator records no tokenizer."""
        tok = self.tokenizer if tok is None else tok
        if not self.tokenizer_fingerprint:
            return True
        cached = getattr(self, "_fits", None)
        if cached is None or cached[0] is not tok:
            from .train_generator import fingerprint
            self._fits = (tok, fingerprint(tok))
        fp = self._fits[1]
        return fp == self.tokenizer_fingerprint or fp in self.measured_with

    # ------------------------------------------------------------------ conditions
    def condition(self, condition) -> torch.Tensor:
        """Prompts (text model) or class labels (class model) -> (B,) labels or (B, *text_shape) embeddings."""
        if isinstance(condition, str) or is_int(condition) or (isinstance(condition, torch.Tensor) and condition.ndim == 0):
            condition = [condition]
        if isinstance(condition, (torch.Tensor, np.ndarray)):  # one label (or prompt) per sample, as a list
            if condition.ndim > 1:
                raise ValueError(f"expected one prompt / label per sample, a 1-d array, got shape "
                                 f"{tuple(condition.shape)}")
            condition = [condition.item()] if condition.ndim == 0 else condition.tolist()
        if not isinstance(condition, (list, tuple)) or not condition:
            raise ValueError(f"expected a prompt / label or a non-empty list of them, got {type(condition).__name__}")
        if len(condition) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} prompts or labels per call, got {len(condition)}")
        if self.cfg.cond == "class":
            labels = []
            for c in condition:
                try:
                    labels.append(parse_label(c))
                except ValueError as e:
                    raise ValueError(f"this is a class-to-video model: {e}") from None
            return torch.tensor(labels, device=self.device)
        if not all(isinstance(c, str) for c in condition):
            raise ValueError("this is a text-to-video model: pass prompt strings, not class labels")
        emb = self.text_encoder(list(condition))
        if emb.shape[-1] != self.cfg.text_dim:
            raise ValueError(f"text model {self.text_model!r} gives {emb.shape[-1]}-d embeddings, the generator "
                             f"takes {self.cfg.text_dim}")
        return emb.to(self.device)

    # ------------------------------------------------------------------ sampling
    def _autocast(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def decode_guidance(self, guidance: float | None = None) -> float | None:
        """The decoder guidance for this model's grids: guidance if given, else the config's
        decode_guidance, else None (the tokenizer's default)."""
        return self.cfg.decode_guidance if guidance is None else guidance

    def _defaults(self, temperature, top_k, top_p, guidance):
        cfg = self.cfg
        return (cfg.temperature if temperature is None else temperature, cfg.top_k if top_k is None else top_k,
                cfg.top_p if top_p is None else top_p, cfg.guidance if guidance is None else guidance)

    @torch.no_grad()
    @float32_default
    def sample_tokens(self, condition, k: int | None = None, frames: int = 17, temperature: float | None = None,
                      top_k: int | None = None, top_p: float | None = None, guidance: float | None = None,
                      seed: int | Sequence[int] = 0, callback: Callable[[int, int], None] | None = None,
                      compile: bool = False) -> list[torch.Tensor]:
        """Sample token grids: a list of (t, K) int64 grids on the CPU, t = 1 + (frames - 1) / 4.

        k: tokens per step (default K); only the first k of each step are generated, the rest are 0 and
        ignored by a decode with the same k. temperature, top_k (0 = off), top_p (1 = off) and guidance
        (classifier-free, 1 = off) default to the model's settings. callback(done, total) per token.
        seed: one for the batch, or a list of G seeds for G equal groups of consecutive conditions, each
        group sampled as it would be alone with its seed (one grid per seed: what that seed gives alone)."""
        cfg = self.cfg
        k = cfg.K if k is None else k
        t = frames_to_steps(frames, cfg.max_t)
        seeds = _seed_list(seed)
        if not isinstance(compile, (bool, np.bool_)):  # "yes" would be true, and cost half a minute of compiling
            raise ValueError(f"compile must be True or False, got {compile!r}")
        _check_callback(callback)
        cond = self.condition(condition)
        if seeds is not None and cond.shape[0] % len(seeds):
            raise ValueError(f"{len(seeds)} seeds for {cond.shape[0]} conditions: give one seed, or one per equal "
                             "group of conditions")
        temperature, top_k, top_p, guidance = self._defaults(temperature, top_k, top_p, guidance)
        gen = torch.Generator(self.device).manual_seed(check_seed(seed)) if seeds is None else \
            [torch.Generator(self.device).manual_seed(s) for s in seeds]
        with self._autocast():
            grids = sampling.generate(self.model, cond, t, k, temperature, top_k, top_p, guidance, generator=gen,
                                      callback=callback, compile=compile)  # (B, t, k)
        full = torch.zeros(cond.shape[0], t, cfg.K, dtype=torch.long)
        full[:, :, :k] = grids.cpu()
        return list(full)

    @torch.no_grad()
    @float32_default
    def generate(self, condition, k: int | None = None, frames: int = 17, temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, guidance: float | None = None,
                 seed: int | Sequence[int] = 0, decode_steps: int | None = None, decode_guidance: float | None = None,
                 decode_guidance_mode: str | None = None,
                 callback: Callable[[str, int, int], None] | None = None, compile: bool = False,
                 best_of: int = 1, preview_steps: int | None = None) -> list[torch.Tensor]:
        """Prompts or class labels -> videos (3, frames, H, W) in [-1, 1] on the CPU, one per condition.

        Sampling arguments as in sample_tokens; decode_steps, decode_guidance and decode_guidance_mode
        go to VideoFlexTok.detokenize (defaults: the generator config's decode_guidance, else the
        tokenizer's). Grid i decodes with seed + i. seed may be a list, one per condition: condition i then
        samples and decodes (its best_of candidates too) as it would alone with seed[i].
        best_of = N > 1: N grids per condition (sampled and decoded in one batch, N times the work), of
        which the one the reranker (`self.reranker`, default assets/reranker) scores best is returned.
        preview_steps: with best_of > 1, rank the candidates from decodes of this many Euler steps, then
        decode only the kept ones with the full steps (the same noise: the video the full decode of that
        candidate gives); fewer steps than the full decode, or None to rank the full decodes. It is checked
        whatever best_of is, and changes nothing at best_of = 1.
        callback(stage, done, total), stage "tokens" then "decode" (then "final" with a preview)."""
        k = self.cfg.K if k is None else k
        frames_to_steps(frames, self.cfg.max_t)  # cheap checks before loading the tokenizer
        _check_callback(callback, "callback(stage, done, total)")
        if isinstance(best_of, bool) or not is_int(best_of) or not 1 <= int(best_of) <= MAX_BATCH:
            raise ValueError(f"best_of must be an integer in [1, {MAX_BATCH}], got {best_of!r}")
        best_of = int(best_of)
        cond = self.condition(condition)
        if len(cond) * best_of > MAX_BATCH:
            raise ValueError(f"{len(cond)} conditions x best_of {best_of} is more than {MAX_BATCH} samples per call")
        if best_of > 1:
            items = (condition.reshape(-1).tolist() if isinstance(condition, torch.Tensor) else
                     [condition] if isinstance(condition, str) or is_int(condition) else list(condition))
            condition = [c for c in items for _ in range(best_of)]
            cond = self.condition(condition)
        sampling.check_request(self.model, cond, 1, k, *self._defaults(temperature, top_k, top_p, guidance))
        seeds = _seed_list(seed)
        if seeds is None:
            check_seed(seed)
            check_seed(int(seed) + len(cond) - 1, f"seed + {len(cond) - 1} (grid i decodes with seed + i)")
        else:  # one per condition: condition i samples and decodes as it would alone with seeds[i]
            if len(seeds) * best_of != len(cond):
                raise ValueError(f"seed: give one, or one per condition ({len(cond) // best_of}), got {len(seeds)}")
            check_seed(max(seeds) + best_of - 1, f"seed + {best_of - 1} (candidate j decodes with seed + j)")
        tok = self.tokenizer
        try:  # said as the decode's: "steps" alone reads as the generator's
            full_steps = tok._check_sampler(decode_steps, self.decode_guidance(decode_guidance),
                                            decode_guidance_mode)[0]
        except ValueError as e:
            raise ValueError(f"decode {e}") from None
        if preview_steps is not None:
            if full_steps < 2:  # no shorter decode to preview with
                raise ValueError(f"preview_steps needs a decode of at least 2 steps (a preview takes fewer), the "
                                 f"decode has {full_steps}; leave preview_steps None, got {preview_steps!r}")
            if isinstance(preview_steps, bool) or not is_int(preview_steps) or not 1 <= int(preview_steps) < full_steps:
                raise ValueError(f"preview_steps must be an integer in [1, {full_steps - 1}] (under the decode's "
                                 f"{full_steps} steps) or None, got {preview_steps!r}")
            preview_steps = int(preview_steps) if best_of > 1 else None
        reranker = self.reranker if best_of > 1 else None  # loaded (and checked) before any sampling
        grids = self.sample_tokens(condition, k, frames, temperature, top_k, top_p, guidance, seed,
                                   (lambda d, n: callback("tokens", d, n)) if callback else None, compile)
        decode = dict(k=k, guidance=self.decode_guidance(decode_guidance), guidance_mode=decode_guidance_mode)
        seeds = [int(seed) + i for i in range(len(grids))] if seeds is None else \
            [s + j for s in seeds for j in range(best_of)]  # Python ints: no NumPy overflow
        videos = tok.detokenize(grids, steps=preview_steps or decode_steps, seed=seeds,
                                callback=(lambda d, n: callback("decode", d, n)) if callback else None, **decode)
        if reranker is None:
            return videos
        scores = reranker.score(videos, condition, self.cfg.cond).view(-1, best_of)
        self.last_scores = scores
        keep = [i * best_of + j for i, j in enumerate(scores.argmax(1).tolist())]
        if preview_steps is None:
            return [videos[i] for i in keep]
        return tok.detokenize([grids[i] for i in keep], steps=decode_steps, seed=[seeds[i] for i in keep],
                              callback=(lambda d, n: callback("final", d, n)) if callback else None, **decode)

    @property
    def reranker(self):
        """The best-of-N scorer (`flexvid.rerank.Reranker`), loaded on first use from `reranker_path`."""
        if getattr(self, "_reranker", None) is None:
            if not self.reranker_path:
                raise ValueError("no reranker is configured (it is turned off)")
            from .rerank import Reranker
            self._reranker = Reranker.from_pretrained(self.reranker_path)
        return self._reranker

    @reranker.setter
    def reranker(self, value):
        self._reranker = value


# ----------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    p = argparse.ArgumentParser(formatter_class=HelpFormatter, prog="flexvid generate",
                                description="Generate a clip from a text prompt or a "
                                "shapes-world class with a token budget of k tokens per time step.")
    p.add_argument("prompt", nargs="?", default=None, help="text prompt (text-to-video)")
    p.add_argument("--class-label", default=None, help="class-to-video: 0-89 or 'colour shape motion'")
    p.add_argument("--model", default=None, help="generator folder or repo id (default: the embedded one)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or repo id (default: the one the generator "
                   "was trained with, where its config.json names it, else the embedded assets/tokenizer)")
    p.add_argument("--k", type=int, default=None, help="tokens per time step (default: K, all)")
    p.add_argument("--frames", type=int, default=17, help="1 + 4n frames, at most 81")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--best-of", type=int, default=1,
                   help="sample N candidates per output and keep the one the reranker scores best (N times the work; "
                        "the app uses 4: prompts are followed more often, see the README; --best-of 4 --dtype auto "
                        "gives the app's clip for the same prompt and seed)")
    p.add_argument("--preview-steps", type=int, default=None,
                   help="with --best-of: rank the candidates from decodes of this many steps, then decode the kept "
                        "one in full (default: none, every candidate decoded in full)")
    p.add_argument("--reranker", default=None, metavar="FOLDER",
                   help="with --best-of: the scorer, a train-reranker folder (default: the embedded assets/reranker)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the model's)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k likeliest codes, 0 = all (default: the model's)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling, 1 = off (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="generator guidance (1 = none; default: the model's)")
    p.add_argument("--decode-steps", type=int, default=None, help="decoder Euler steps (default: the tokenizer's)")
    p.add_argument("--decode-guidance", type=float, default=None,
                   help="decoder guidance (default: the generator's, else the tokenizer's)")
    p.add_argument("--seed", type=int, default=0,
                   help="sample i of --num-samples draws the tokens that --seed SEED+i draws alone (one batch)")
    p.add_argument("--out", default="clip.mp4", help="output mp4 (several samples: clip_0.mp4, clip_1.mp4, ...)")
    p.add_argument("--upscale", type=int, default=4)
    p.add_argument("--device", default="auto")
    add_dtype_argument(p)
    p.add_argument("--compile", action="store_true", help="torch.compile the one-token decode step")
    add_threads_argument(p)
    args = p.parse_args(argv)

    from . import video_io
    try:
        if args.prompt is not None and args.class_label is not None:
            raise ValueError("give either a text prompt or --class-label, not both")
        if args.prompt is None and args.class_label is None:
            raise ValueError("give a text prompt or --class-label")
        if not 1 <= args.upscale <= 16:
            raise ValueError(f"--upscale must be in [1, 16], got {args.upscale}")
        if args.num_samples < 1 or args.num_samples > MAX_BATCH:
            raise ValueError(f"--num-samples must be in [1, {MAX_BATCH}], got {args.num_samples}")
        if not args.out.strip():
            raise ValueError("--out: the output path is empty")
        stem, ext = os.path.splitext(args.out)
        if ext.lower() != ".mp4":  # the file is an H.264 mp4 whatever its name says
            raise ValueError(f"--out must name an .mp4 file, got {args.out!r}")
        paths = [args.out] if args.num_samples == 1 else [f"{stem}_{i}{ext}" for i in range(args.num_samples)]
        for path in paths:  # every file this run writes, before any work
            video_io.check_output(path, name="--out")
        set_threads(args.threads)
        check_seed(args.seed)
        check_seed(args.seed + args.num_samples - 1, f"--seed + {args.num_samples - 1} (the last sample's seed)")
        from .runtime import Limits
        top, seed_note = Limits().max_seed, ""
        if not 0 <= args.seed <= args.seed + args.num_samples - 1 <= top:  # a rehearsal the app cannot replay:
            seed_note = (f"note: the app takes seeds 0 to {top} (its default limit): a clip made here with seed "  # said
                         f"{args.seed if not 0 <= args.seed <= top else args.seed + args.num_samples - 1} cannot "
                         "be made again there")  # with what was written, after every refusal
        from .pipeline import VideoFlexTok
        VideoFlexTok.check_steps_and_guidance(args.decode_steps, args.decode_guidance,  # before the models load
                                              ("--decode-steps", "--decode-guidance"))
        if args.preview_steps is not None and args.best_of == 1:
            raise ValueError("--preview-steps ranks best-of candidates: give --best-of N (N > 1) with it")
        if args.reranker is not None and args.best_of == 1:
            raise ValueError("--reranker scores best-of candidates: give --best-of N (N > 1) with it")
        cond = "text" if args.prompt is not None else "class"
        gen = VideoGenerator.from_pretrained(args.model or DEFAULT_MODELS[cond], tokenizer=args.tokenizer,
                                             device=args.device, dtype=args.dtype)
        if args.reranker is not None:
            gen.reranker_path = args.reranker
        condition = args.prompt if cond == "text" else parse_label(args.class_label)
        if gen.cfg.cond != cond:  # before anything is printed as if it would be made
            raise ValueError(f"--model is a {gen.cfg.cond}-to-video model: give "
                             + ("a text prompt, not --class-label" if gen.cfg.cond == "text" else
                                "--class-label, not a text prompt"))
        said = None  # the class made, printed with what was written (a refusal below prints nothing else first)
        if cond == "class":
            colour, shape, motion = shapes.class_attributes(condition)
            said = f"class {condition}: {colour} {shape} {'standing still' if motion == 'still' else 'moving ' + motion}"
        else:
            from .train_generator import unseen_words
            unseen = unseen_words(condition)
            if unseen and args.model is None:  # the embedded generator
                print(f"note: no training caption used {', '.join(map(repr, unseen))}; the embedded generators know "
                      "the shapes world's words only (sizes, colours, circle / square / triangle, moving left / right "
                      "/ up / down or standing still)", file=sys.stderr)
            read, unread = gen.text_encoder.unread(condition) if gen.text_encoder is not None else (0, "")
            if unread:
                print(f"note: the generator reads the first {read} word pieces of a prompt; "
                      f"from {unread if len(unread) <= 60 else unread[:57].rstrip() + '...'!r} on, the prompt reaches "
                      "it only through the context it gives the words before: put what matters first",
                      file=sys.stderr)
        from tqdm import tqdm
        bars = {}

        def progress(stage, done, total):
            if stage not in bars:  # one bar per stage (a default argument would build one per call)
                bars[stage] = tqdm(total=total, desc=stage, leave=False, disable=None)  # no bars when piped
            bars[stage].update(done - bars[stage].n)

        # one batch, a seed per sample: sample i draws the tokens --seed SEED+i draws alone (and decodes with
        # its noise; the batched decode may round a pixel differently)
        videos = gen.generate([condition] * args.num_samples, k=args.k, frames=args.frames,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              guidance=args.guidance, seed=[args.seed + i for i in range(args.num_samples)],
                              decode_steps=args.decode_steps, decode_guidance=args.decode_guidance,
                              callback=progress, compile=args.compile, best_of=args.best_of,
                              preview_steps=args.preview_steps)
        for bar in bars.values():
            bar.close()
    except ValueError as e:
        print(f"flexvid generate: {e}", file=sys.stderr)
        return 2
    replaced = [p for p in paths if os.path.exists(p)]  # said: a rehearsal's clip.mp4 is gone after a rerun
    for path, v in zip(paths, videos):
        video_io.write_video(path, video_io.from_model(v), fps=gen.tokenizer.fps, upscale=args.upscale)
    if said:
        print(said)
    if seed_note:
        print(seed_note, file=sys.stderr)
    k = gen.cfg.K if args.k is None else args.k
    seeds = "" if args.num_samples == 1 else f"; seeds {args.seed}..{args.seed + args.num_samples - 1} in order"
    best = f", best of {args.best_of}" if args.best_of > 1 else ""
    print(f"wrote {', '.join(paths)} ({args.frames} frame{'s' if args.frames != 1 else ''}, {k} token"
          f"{'s' if k != 1 else ''} per step{best}, seed {args.seed}{seeds})")
    if replaced:
        print(f"note: replaced the file{'s' if len(replaced) > 1 else ''} that {'were' if len(replaced) > 1 else 'was'}"
              f" there: {', '.join(replaced)}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # python -m / torchrun -m: errors in one line, as the flexvid command
    from flexvid.cli import run_module
    run_module("generate")
