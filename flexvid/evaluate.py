"""Tokenizer evaluation: rate-distortion over the prefix ladder, coarse-to-fine semantics, long videos.

    flexvid eval-tokenizer --model assets/tokenizer --n 64 --out eval/tokenizer

On the shapes world's test split (shared design note "shapes-world.md"):
1. Rate-distortion: n clips are tokenized once, every k of the ladder is decoded (batched, same noise
   for every k) with the model's sampler settings, and scored by PSNR (dB, per clip over all frames)
   and SSIM (Wang et al. 2004, Gaussian window 11 / sigma 1.5, per frame on RGB in [0, 1], through
   pytorch-msssim). The VAE round trip (stage 0 alone) is the ceiling. PSNR should not drop as k grows.
2. Semantics: flexvid.probe reads colour, shape, size and motion back from every reconstruction; the
   probe on the ground truth is its own ceiling. A coarse-to-fine tokenizer gets semantics right at
   small k (VideoFlexTok, arXiv 2604.12887).
3. Long video: 81-frame clips go through 17-frame chunks (21 latent steps). Per-frame PSNR shows
   whether chunk borders leave seams, and the peak memory of an 81-frame round trip against a 17-frame
   one (each in a fresh process) shows that memory is bounded by one chunk.
Writes DIR/eval.json and DIR/eval.html (plotly, works offline) and prints a table.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import multiprocessing as mp
import os
import resource
import sys
import time
import warnings
from html import escape

import numpy as np
import torch
from pytorch_msssim import ssim as _ssim

from . import probe, shapes
from .cli import HelpFormatter
from .hub import command_line, display_name
from .pipeline import OUT_OF_RANGE, VideoFlexTok, chunk_bounds
from .training import add_dtype_argument, add_threads_argument, set_threads
from .video_io import check_output, from_model

MONOTONE_TOL_DB = 0.2  # PSNR may wobble this much between k values (sampling noise) and still count as monotone
PSNR_CAP_DB = 100.0  # identical videos: MSE clamped at 1e-10, as in train_vae.psnr
ATTRS = (*probe.ATTRS, "all")
SSIM_WINDOW = 11  # pytorch-msssim's default Gaussian window


def _plotly():
    """plotly's figure module and palette, imported when a report is drawn: the numbers need no plotly
    (so an evaluation runs where only the training stack is installed, e.g. a lent GPU machine)."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    return go, qualitative.Plotly


# ----------------------------------------------------------------------------- metrics
def _float_video(v) -> torch.Tensor:
    """(3, T, H, W) float in [-1, 1], or (T, H, W, 3) uint8 -> (3, T, H, W) float32 clamped to [-1, 1]."""
    if isinstance(v, np.ndarray):
        if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3:
            raise ValueError(f"numpy videos must be uint8 (T, H, W, 3), got {v.dtype} {v.shape}")
        return shapes.to_tensor(v)
    if not isinstance(v, torch.Tensor) or v.ndim != 4 or v.shape[0] != 3:
        raise ValueError(f"videos must be tensors (3, T, H, W), got {getattr(v, 'shape', type(v).__name__)}")
    if not v.is_floating_point():  # uint8 frames as a tensor: clamped, they would score as if nearly black
        raise ValueError(f"video tensors must be float in [-1, 1], got {v.dtype}: convert uint8 frames with "
                         "video_io.to_model, or pass them as a (T, H, W, 3) uint8 NumPy array")
    v = v.detach().float().cpu()
    if v.numel() == 0:
        raise ValueError(f"videos must have at least one frame and pixel, got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError("a video holds NaN or infinite values")
    lo, hi = torch.aminmax(v)
    if lo < -OUT_OF_RANGE or hi > OUT_OF_RANGE:  # e.g. 0..255 values as floats
        raise ValueError(f"video values must lie in [-1, 1], got [{float(lo):.3g}, {float(hi):.3g}]: convert uint8 "
                         "frames with video_io.to_model")
    return v.clamp(-1.0, 1.0)  # (a decode may overshoot [-1, 1] a little, as its frames written to a file do not)


def _pair(a, b) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _float_video(a), _float_video(b)
    if a.shape != b.shape:
        raise ValueError(f"videos differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b


def _db(mse: torch.Tensor) -> torch.Tensor:
    return -10 * torch.log10(mse.clamp_min(10 ** (-PSNR_CAP_DB / 10)))


def psnr_frames(a, b) -> torch.Tensor:
    """PSNR in dB of every frame (T,) of two videos in [-1, 1] (peak-to-peak 2)."""
    a, b = _pair(a, b)
    return _db(((a - b) / 2).pow(2).mean(dim=(0, 2, 3)))


def psnr_video(a, b) -> float:
    """PSNR in dB of a clip: the MSE over all frames and pixels (capped at 100 dB for identical clips)."""
    a, b = _pair(a, b)
    return float(_db(((a - b) / 2).pow(2).mean()))


def ssim_frames(a, b) -> torch.Tensor:
    """SSIM of every frame (T,): Gaussian window 11, sigma 1.5, on RGB in [0, 1], mean over channels. NaN
    for frames under 11 px a side, where the window does not fit (the app says no SSIM for them)."""
    a, b = _pair(a, b)
    if min(a.shape[-2:]) < SSIM_WINDOW:  # pytorch-msssim would skip the smoothing and score noise as alike
        return torch.full((a.shape[1],), float("nan"))
    x, y = (a.transpose(0, 1) + 1) / 2, (b.transpose(0, 1) + 1) / 2  # (T, 3, H, W)
    return _ssim(x, y, data_range=1.0, size_average=False)


def ssim_video(a, b) -> float:
    """Mean per-frame SSIM of a clip (1.0 for identical clips)."""
    return float(ssim_frames(a, b).mean())


def _refs(clips) -> list[torch.Tensor]:
    """The clips as (3, T, H, W) tensors in [-1, 1]: shapes Clips (their .video) or tensors already."""
    return [c if isinstance(c, torch.Tensor) else shapes.to_tensor(c.video) for c in clips]


def _labelled(clips) -> bool:
    """Shapes-world clips, which the attribute probe can score (a video folder's clips are plain tensors)."""
    return len(clips) > 0 and not isinstance(clips[0], torch.Tensor)


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def _sampler(**kw) -> dict:
    """detokenize keywords without the unset ones (None = the model's default)."""
    return {k: v for k, v in kw.items() if v is not None}


# ----------------------------------------------------------------------------- 1. rate-distortion
def rate_distortion(tok: VideoFlexTok, clips, ks=None, tokens=None, keep_videos: bool = False, **sampler) -> dict:
    """Decode every clip at every k of `ks` (default the ladder) and score it against the clip.

    clips: shapes Clips, or (3, T, H, W) tensors in [-1, 1]. tokens: their grids, if already tokenized.
    sampler: steps, guidance,
    guidance_mode, seed for detokenize (None = model default). Each detokenize call holds about
    tok.max_batch (grid, k) pairs, all k of a clip together. Returns {"ks", "psnr", "ssim" (means per k),
    "psnr_clips", "ssim_clips" (per k, per clip)} and with keep_videos "videos": {k: [uint8 (T, H, W, 3)]}."""
    ks = sorted(set(int(k) for k in ks)) if ks else tok.ladder()
    sampler = _sampler(**sampler)
    refs = _refs(clips)
    tokens = tok.tokenize(refs) if tokens is None else tokens
    psnr = {k: [] for k in ks}
    ssim = {k: [] for k in ks}
    videos = {k: [] for k in ks}
    per_call = max(1, tok.max_batch // len(ks))
    for j in range(0, len(clips), per_call):
        pairs = [(i, k) for i in range(j, min(j + per_call, len(clips))) for k in ks]
        out = tok.detokenize([tokens[i] for i, _ in pairs], k=[k for _, k in pairs], **sampler)
        for (i, k), y in zip(pairs, out):
            psnr[k].append(psnr_video(y, refs[i]))
            ssim[k].append(ssim_video(y, refs[i]))
            if keep_videos:
                videos[k].append(from_model(y))
    res = {"ks": ks, "psnr": [float(np.mean(psnr[k])) for k in ks], "ssim": [float(np.mean(ssim[k])) for k in ks],
           "psnr_clips": [psnr[k] for k in ks], "ssim_clips": [ssim[k] for k in ks]}
    if keep_videos:
        res["videos"] = videos
    return res


def vae_ceiling(tok: VideoFlexTok, clips) -> dict:
    """PSNR / SSIM of the VAE round trip alone, and the attribute probe on it (`semantics`: {attr: rate}):
    no token-based reconstruction can beat it, so a gap to it is stage 1's and the rest is stage 0's."""
    refs = _refs(clips)
    out = tok.autoencode(refs)
    res = {"psnr": float(np.mean([psnr_video(y, x) for y, x in zip(out, refs)])),
           "ssim": float(np.mean([ssim_video(y, x) for y, x in zip(out, refs)]))}
    if _labelled(clips):  # the probe knows the shapes world only
        rates = probe.score_videos(out, clips)
        res["semantics"] = {a: rates[a] for a in ATTRS}
    return res


def monotone_check(ks, psnr, tol: float = MONOTONE_TOL_DB) -> dict:
    """Does PSNR never fall more than tol dB below its best at any smaller k? Lists the drops."""
    order = sorted(range(len(ks)), key=lambda i: ks[i])
    drops, best_i = [], None
    for i in order:
        if best_i is not None and psnr[i] < psnr[best_i] - tol:
            drops.append({"k_best": ks[best_i], "k": ks[i], "drop_db": float(psnr[best_i] - psnr[i])})
        if best_i is None or psnr[i] > psnr[best_i]:
            best_i = i
    return {"monotone": not drops, "tolerance_db": tol, "drops": drops}


# ----------------------------------------------------------------------------- 2. semantics
def semantics(videos_by_k: dict, clips) -> dict:
    """Probe accuracy per attribute for the reconstructions at every k ({k: [videos]}, paired with
    clips) and for the clips themselves (the probe's ceiling). Returns {"ks", "rates": {attr: [per k]},
    "ground_truth": {attr: rate}}."""
    ks = sorted(videos_by_k)
    per_k = [probe.score_videos(videos_by_k[k], clips) for k in ks]
    truth = probe.score_videos([c.video for c in clips], clips)
    return {"ks": ks, "rates": {a: [r[a] for r in per_k] for a in ATTRS},
            "ground_truth": {a: truth[a] for a in ATTRS}}


# ----------------------------------------------------------------------------- 3. long video
def seam_frames(T: int, chunk: int) -> list[int]:
    """Frames next to chunk borders: the last frame of each chunk but the last, and the frame after it."""
    out = []
    for _, b in chunk_bounds(T, chunk)[:-1]:
        out += [b, b + 1]
    return out


def long_video(tok: VideoFlexTok, clips, **sampler) -> dict:
    """Tokenize long clips, decode them at full K, and compare the PSNR of the frames at chunk borders
    with that of all other frames (a seam shows as a dip at the borders), averaged over the clips."""
    refs = _refs(clips)
    T = refs[0].shape[1]
    tokens = tok.tokenize(refs)
    out = tok.detokenize(tokens, k=tok.n_tokens, **_sampler(**sampler))
    vae = tok.autoencode(refs)
    frames = torch.stack([psnr_frames(y, x) for y, x in zip(out, refs)]).mean(0)  # (T,)
    vae_frames = torch.stack([psnr_frames(y, x) for y, x in zip(vae, refs)]).mean(0)
    seams = seam_frames(T, tok.chunk_frames)
    other = [f for f in range(T) if f not in seams]

    def split(p):  # (seam, other) mean PSNR; no seams in a single-chunk clip
        return float(p[seams].mean()) if seams else None, float(p[other].mean())

    seam_psnr, other_psnr = split(frames)
    vae_seam, vae_other = split(vae_frames)
    steps = [int(g.shape[0]) for g in tokens]
    return {"frames": T, "n": len(clips), "time_steps": steps, "expected_time_steps": tok.num_steps(T),
            "time_steps_ok": all(s == tok.num_steps(T) for s in steps), "k": tok.n_tokens,
            "psnr": float(np.mean([psnr_video(y, x) for y, x in zip(out, refs)])),
            "psnr_frames": frames.tolist(), "vae_psnr_frames": vae_frames.tolist(),
            "borders": [b for _, b in chunk_bounds(T, tok.chunk_frames)[:-1]], "seam_frames": seams,
            "seam_psnr": seam_psnr, "other_psnr": other_psnr,
            "seam_gap_db": None if seam_psnr is None else other_psnr - seam_psnr,
            "vae_seam_psnr": vae_seam, "vae_other_psnr": vae_other}


def _peak_rss_kib() -> int:
    """Peak resident memory in KiB. On Linux VmHWM, which is ru_maxrss of this process alone: ru_maxrss
    of a spawned process also remembers the RSS of the process that spawned it."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB elsewhere


def _reset_peak_rss() -> None:
    """Set the peak RSS to the current RSS (Linux >= 4.0), so loading transients do not hide growth."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _round_trip_memory(conn, model: str, T: int, device: str, dtype, threads: int, max_batch: int, sampler: dict):
    """In a fresh process: load the model, warm up on one frame, then send the peak memory increase (MiB)
    of tokenize + detokenize (full K) of one T-frame test clip, or the error."""
    try:
        torch.set_num_threads(threads)
        tok = VideoFlexTok.from_pretrained(model, device=device, dtype=dtype)
        tok.max_batch = max_batch
        def clip(frames):  # a test clip, or for a model of another size a fixed random one (memory is the same)
            if tok.size == shapes.SIZE:
                return shapes.to_tensor(shapes.fixed_split("test", 1, frames)[0].video)
            return torch.rand(3, frames, tok.size, tok.size, generator=torch.Generator().manual_seed(0)) * 2 - 1

        tok.detokenize(tok.tokenize(clip(1)), steps=1)  # first-call allocations are not per-frame memory
        video = clip(T)
        if tok.device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            tok.detokenize(tok.tokenize(video), **sampler)
            torch.cuda.synchronize()
            conn.send(("ok", (torch.cuda.max_memory_allocated() - base) / 2**20))
        else:
            _reset_peak_rss()
            base = _peak_rss_kib()
            tok.detokenize(tok.tokenize(video), **sampler)
            conn.send(("ok", (_peak_rss_kib() - base) / 1024))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def peak_memory(model: str, T: int, device: str = "auto", dtype=None, max_batch: int = 16, **sampler) -> float:
    """Peak memory increase (MiB) of a T-frame tokenize + detokenize, measured in a fresh spawned process
    (CUDA: max_memory_allocated; CPU: peak RSS). max_batch: the pipeline's batch of chunks / videos."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_round_trip_memory, daemon=True,
                       args=(send, model, T, device, dtype, torch.get_num_threads(), max_batch, _sampler(**sampler)))
    proc.start()
    send.close()  # only the child holds the sending end now: recv() fails if the child dies
    try:
        status, value = recv.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"memory measurement process died (exit code {proc.exitcode})") from None
    proc.join()
    if status != "ok":
        raise RuntimeError(f"memory measurement failed for {T} frames: {value}")
    return value


def memory_scaling(model: str, device: str = "auto", dtype=None, short: int = 17, long: int = 81,
                   max_batch: int = 16, repeats: int = 3, **sampler) -> dict:
    """Peak memory of a long round trip against a short one; chunking should keep the ratio <= 1.5.
    Each length is measured `repeats` times, alternating, each in a fresh process, and the medians are
    compared: a CPU peak RSS of some 70 MiB moves by 10-30 MiB from run to run with the allocator's
    arenas (one ratio, measured once, came out anywhere from 0.84 to 1.55 for the same model)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    runs = {short: [], long: []}
    for _ in range(repeats):
        for T in (short, long):
            runs[T].append(peak_memory(model, T, device, dtype, max_batch, **sampler))
    a, b = float(np.median(runs[short])), float(np.median(runs[long]))
    return {"short_frames": short, "long_frames": long, "short_mib": a, "long_mib": b, "max_batch": max_batch,
            "repeats": repeats, "short_runs_mib": runs[short], "long_runs_mib": runs[long],
            "ratio": b / a if a > 0 else None, "target_ratio": 1.5}


# ----------------------------------------------------------------------------- report
# ----------------------------------------------------------------------------- what the tokens carry
def _attribute_labels(clips) -> dict[str, torch.Tensor]:
    """Main-object attributes as class indices, in the order of the world's specification."""
    return {a: torch.tensor([names.index(getattr(c.objects[0], a)) for c in clips])
            for a, names in shapes.ATTRIBUTES.items()}


def _linear_probe(x_train, y_train, x_test, y_test, n_classes: int, l2: float = 1e-3) -> float:
    """Accuracy of a multinomial logistic regression (L-BFGS, L2) fitted on standardised features."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-4
    x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    w = torch.zeros(x_train.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x_train @ w + b, y_train) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return ((x_test @ w + b).argmax(1) == y_test).float().mean().item()


@torch.no_grad()
def token_probe(tok: VideoFlexTok, n_train: int = 1024, n_test: int = 256, ks=None, frames: int = 17) -> dict:
    """How much of each attribute the first k tokens of every step carry, read without the decoder: a
    linear probe (logistic regression) on the FSQ code values of the first k tokens, fitted on n_train
    training clips and scored on n_test test clips. Chance is 1 / number of values (colour 1/6, motion
    1/5). A decoder cannot draw what this probe cannot find in the tokens."""
    ks = list(ks) if ks is not None else tok.ladder()
    train, test = shapes.fixed_split("train", n_train, frames), shapes.fixed_split("test", n_test, frames)
    codes = []
    for clips in (train, test):
        grids = []
        for i in range(0, len(clips), tok.max_batch):
            grids += tok.tokenize(torch.stack([shapes.to_tensor(c.video) for c in clips[i:i + tok.max_batch]]))
        codes.append(tok.tokenizer.quantizer.indices_to_codes(torch.stack(grids).to(tok.device)).float().cpu())
    y_train, y_test = _attribute_labels(train), _attribute_labels(test)
    rates = {a: [] for a in probe.ATTRS}
    for k in ks:
        x_train, x_test = codes[0][:, :, :k].flatten(1), codes[1][:, :, :k].flatten(1)
        for a in probe.ATTRS:
            n_classes = int(max(y_train[a].max(), y_test[a].max())) + 1
            rates[a].append(round(_linear_probe(x_train, y_train[a], x_test, y_test[a], n_classes), 4))
    chance = {a: round(1 / len(v), 4) for a, v in
              (("color", shapes.COLORS), ("shape", shapes.SHAPES), ("size", shapes.SIZES), ("motion", shapes.MOTIONS))}
    return {"ks": ks, "n_train": n_train, "n_test": n_test, "rates": rates, "chance": chance}


def _fig_vs_k(ks, series, title, ytitle, ceiling=None, ceiling_name="VAE ceiling"):
    go, COLORS = _plotly()
    fig = go.Figure()
    for (name, ys), color in zip(series.items(), COLORS):
        fig.add_trace(go.Scatter(x=ks, y=ys, mode="lines+markers", name=name, line={"color": color}))
    if ceiling is not None:
        fig.add_trace(go.Scatter(x=[ks[0], ks[-1]], y=[ceiling, ceiling], mode="lines", name=ceiling_name,
                                 line={"dash": "dash", "color": "gray"}))
    fig.update_xaxes(type="log", tickvals=ks, ticktext=[str(k) for k in ks], title="k (tokens per step, log2)")
    fig.update_layout(title=title, yaxis_title=ytitle, height=420, width=720)
    return fig


def _figures(results: dict) -> list:
    go, COLORS = _plotly()
    rd, vae, sem = results["rate_distortion"], results["vae"], results.get("semantics")
    ks = rd["ks"]
    figs = [_fig_vs_k(ks, {"PSNR": rd["psnr"]}, "PSNR vs k", "PSNR (dB)", vae["psnr"]),
            _fig_vs_k(ks, {"SSIM": rd["ssim"]}, "SSIM vs k", "SSIM", vae["ssim"])]
    if sem:  # the attribute probe: shapes-world clips only
        vae_sem = vae.get("semantics")
        fig = _fig_vs_k(ks, sem["rates"], "Probe accuracy vs k (dotted: on the ground truth"
                        + ("; dashed: on the VAE round trip)" if vae_sem else ")"), "accuracy")
        for i, a in enumerate(ATTRS):
            fig.add_hline(y=sem["ground_truth"][a], line_dash="dot", line_color=COLORS[i], opacity=0.6)
            if vae_sem:
                fig.add_hline(y=vae_sem[a], line_dash="dash", line_color=COLORS[i], opacity=0.6)
        figs.append(fig)
    lv = results.get("long_video")
    if lv:
        x = list(range(lv["frames"]))
        fig = go.Figure([go.Scatter(x=x, y=lv["psnr_frames"], mode="lines+markers", name=f"k = {lv['k']}"),
                         go.Scatter(x=x, y=lv["vae_psnr_frames"], mode="lines", name="VAE ceiling",
                                    line={"dash": "dash", "color": "gray"})])
        for b in lv["borders"]:
            fig.add_vline(x=b + 0.5, line_dash="dot", line_color="red")
        fig.update_layout(title=f"Per-frame PSNR of {lv['n']} long clip{'s' if lv['n'] != 1 else ''} ({lv['frames']} frames, chunk borders red)",
                          xaxis_title="frame", yaxis_title="PSNR (dB)", height=420, width=720)
        figs.append(fig)
    tp = results.get("token_probe")
    if tp:
        fig = _fig_vs_k(tp["ks"], tp["rates"], "Linear probe on the first k tokens (dotted: chance)", "accuracy")
        for i, a in enumerate(probe.ATTRS):
            fig.add_hline(y=tp["chance"][a], line_dash="dot", line_color=COLORS[i], opacity=0.6)
        figs.append(fig)
    return figs


def table(results: dict) -> str:
    """A compact text table of the results."""
    rd, sem, vae = results["rate_distortion"], results.get("semantics"), results["vae"]
    head = f"{'k':>5} {'PSNR':>7} {'SSIM':>6} " + (" ".join(f"{a:>6}" for a in ATTRS) if sem else "")
    lines = [head.rstrip(), "-" * len(head.rstrip())]
    for i, k in enumerate(rd["ks"]):
        probe_cols = " ".join(f"{sem['rates'][a][i]:6.2f}" for a in ATTRS) if sem else ""
        lines.append(f"{k:>5} {rd['psnr'][i]:7.2f} {rd['ssim'][i]:6.3f} {probe_cols}".rstrip())
    vae_cols = " ".join(f"{vae['semantics'][a]:6.2f}" for a in ATTRS) if vae.get("semantics") else ""
    lines.append(f"{'VAE':>5} {vae['psnr']:7.2f} {vae['ssim']:6.3f} {vae_cols}".rstrip())
    if sem:
        lines.append(f"{'truth':>5} {'':>7} {'':>6} " + " ".join(f"{sem['ground_truth'][a]:6.2f}" for a in ATTRS))
    mono = results["monotone"]
    lines.append(f"PSNR monotone in k (tolerance {mono['tolerance_db']} dB): {'yes' if mono['monotone'] else 'NO'}"
                 + "".join(f"; k={d['k']} is {d['drop_db']:.2f} dB under k={d['k_best']}" for d in mono["drops"]))
    if results.get("psnr_full_k") is not None:
        lines.append(f"PSNR at full K = {results['settings']['K']}: {results['psnr_full_k']:.2f} dB")
    lv = results.get("long_video")
    if lv:
        line = (f"long video: {lv['frames']} frames -> {lv['time_steps'][0]} steps "
                f"({'ok' if lv['time_steps_ok'] else 'expected ' + str(lv['expected_time_steps'])}), "
                f"PSNR {lv['psnr']:.2f} dB at k = {lv['k']}")
        if lv["seam_psnr"] is not None:
            line += (f"; seam frames {lv['seam_psnr']:.2f} dB vs others {lv['other_psnr']:.2f} dB "
                     f"(gap {lv['seam_gap_db']:+.2f}; VAE gap {lv['vae_other_psnr'] - lv['vae_seam_psnr']:+.2f})")
        lines.append(line)
        mem = lv.get("memory")
        if mem:
            ratio = "n/a" if mem["ratio"] is None else f"{mem['ratio']:.2f}"
            lines.append(f"peak memory (median of {mem.get('repeats', 1)}): {mem['short_frames']} frames {mem['short_mib']:.1f} MiB, {mem['long_frames']} "
                         f"frames {mem['long_mib']:.1f} MiB, ratio {ratio} (target <= {mem['target_ratio']})")
    tp = results.get("token_probe")
    if tp:
        lines.append(f"linear probe on the tokens ({tp['n_train']} train / {tp['n_test']} test clips; chance "
                     + ", ".join(f"{a} {tp['chance'][a]:.2f}" for a in probe.ATTRS) + "):")
        for i, k in enumerate(tp["ks"]):
            lines.append(f"{k:>5} " + " ".join(f"{tp['rates'][a][i]:6.2f}" for a in probe.ATTRS))
    return "\n".join(lines)


def _rows_html(title: str, rows: list[dict] | None) -> str:
    """A list of dicts (the report's windows, its skipped files) as an HTML table; '' for none."""
    if not rows:
        return ""
    head = "".join(f"<th>{escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<h3>{escape(title)} ({len(rows)})</h3><table><tr>{head}</tr>{body}</table>"


def check_report(out: str) -> None:
    """Before any work: --out and the eval.json and eval.html that write_report will put in it."""
    check_output(out, folder=True, name="--out")
    for name in ("eval.json", "eval.html"):
        check_output(os.path.join(out, name), name="--out")


def _no_nan(value):
    """value with every NaN float, however deep in dicts and lists, as None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value


def write_report(results: dict, out: str, title: str | None = None, text: str | None = None,
                 figures: list | None = None) -> tuple[str, str]:
    """Write out/eval.json (all numbers) and out/eval.html (a table and plotly figures, library embedded)."""
    os.makedirs(out, exist_ok=True)
    json_path, html_path = os.path.join(out, "eval.json"), os.path.join(out, "eval.html")
    with open(json_path, "w") as f:  # strict JSON: a NaN (SSIM of frames under 11 px) is null
        json.dump(_no_nan(results), f, indent=1, allow_nan=False)
    title = title or f"Tokenizer evaluation: {results.get('model', '')}"
    figures = _figures(results) if figures is None else figures
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    settings = dict(results.get("settings", {}))
    command = settings.pop("command", None)
    what = {"model": results.get("model") or results.get("models"), "data": results.get("data"),
            "clips": results.get("n"), "frames": results.get("frames")}
    about = "; ".join(f"{k}: {v}" for k, v in what.items() if v is not None)
    html = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>flexvid: {escape(title)}</title></head>"
            f"<body><h2>{escape(title)}</h2><p>{escape(about)}</p>"
            + (f"<p>made by <code>{escape(command)}</code></p>" if command else "")
            + f"<pre>{escape(table(results) if text is None else text)}</pre>"
            f"<p>settings: {escape(json.dumps(settings))}</p>" + "".join(parts)
            + _rows_html("windows measured", results.get("windows"))
            + _rows_html("files skipped", results.get("skipped_files"))
            + _rows_html("files read only in part (kept)", results.get("partly_read_files")) + "</body></html>")
    with open(html_path, "w") as f:
        f.write(html)
    return json_path, html_path


# ----------------------------------------------------------------------------- command
def _folder_windows(data: str, frames: int, tok: VideoFlexTok, n: int):
    """The VideoFolder of `data` at the model's size and fps, and n distinct windows spread over its videos
    (fewer where it has fewer), said in one line."""
    from .video_data import TooShort, VideoFolder
    try:
        folder = VideoFolder(data, T=frames, size=tok.size, fps=tok.fps)
    except TooShort as e:  # say how to go on: the --frames (1 + 4n, at least 5) that the longest video gives
        top = min(frames - 4, 1 + 4 * ((e.longest - 1) // 4)) if e.longest else 0
        if top < 5:
            raise
        raise ValueError(f"{e}; give --frames {' or '.join(str(f) for f in range(top, 4, -4)[:3])}") from None
    picks = folder.spread(n)
    files = len({v for v, _ in picks})
    print(f"measuring on {len(picks)} distinct {frames}-frame windows from {files} of the {len(folder.files)} usable "
          f"videos under {data}" + (f" (asked for {n}; the folder has no more)" if len(picks) < n else "")
          + (f"; {len(folder.skipped)} files skipped (listed in the report)" if folder.skipped else "")
          + (f"; {len(folder.partial)} read only in part, cut short or damaged (listed in the report)"
             if folder.partial else ""), flush=True)
    return folder, picks


def evaluate(tok: VideoFlexTok, model: str, n: int = 64, n_long: int = 4, ks=None, long: bool = True,
             frames: int = 17, long_frames: int = 81, token_probe_clips: int = 0, data: str | None = None,
             **sampler) -> dict:
    """All three evaluations on one loaded model; `model` (its path) is needed for the memory runs.
    data: a folder of videos (flexvid.video_data.VideoFolder, read at the model's size and frame rate) to
    measure on instead of the shapes world's test split: n windows of `frames` frames drawn from its
    videos, rate-distortion and long video only (the attribute probes know the shapes world alone)."""
    t0 = time.time()
    cfg = tok.tokenizer.cfg
    if data is None:
        clips = shapes.fixed_split("test", n, frames)
    else:
        folder, picks = _folder_windows(data, frames, tok, n)
        clips = [folder.window(v, start) for v, start in picks]
    rd = rate_distortion(tok, clips, ks, keep_videos=data is None, **sampler)
    sem = semantics(rd.pop("videos"), clips) if data is None else None
    used = {"steps": cfg.sample_steps, "guidance": cfg.guidance, "guidance_mode": cfg.guidance_mode,
            "noise_scale": cfg.noise_scale,
            "seed": _default(tok.detokenize, "seed"), **_sampler(**sampler)}  # the model's defaults, then overrides
    res = {"model": display_name(model), "n": len(clips), "frames": frames,
           "data": display_name(data) if data else "shapes world test split",
           "settings": {"ks": rd["ks"], "K": tok.n_tokens, **used, "batch": tok.max_batch,
                        "dtype": str(tok.dtype).removeprefix("torch.")},
           "rate_distortion": rd, "vae": vae_ceiling(tok, clips),
           "monotone": monotone_check(rd["ks"], rd["psnr"]), "semantics": sem,
           "psnr_full_k": rd["psnr"][rd["ks"].index(tok.n_tokens)] if tok.n_tokens in rd["ks"] else None,
           "long_video": None}
    if data is not None:  # which windows of which files: a reader can find any clip's numbers again
        res["windows"] = [{"file": folder.files[v], "start_frame": start, "start_s": round(start / tok.fps, 3)}
                          for v, start in picks]
        res["skipped_files"] = [{"file": name, "why": why} for name, why in folder.skipped]
        res["partly_read_files"] = [{"file": name, "why": why} for name, why in folder.partial]
    long_clips = None
    if long and n_long > 0 and data is None:
        long_clips = shapes.fixed_split("test", n_long, long_frames)
    elif long and n_long > 0:
        if long_frames >= frames:  # the folder already read holds every video of long_frames frames or more
            long_folder = folder
        else:
            from .video_data import VideoFolder
            try:
                with warnings.catch_warnings():  # the files shorter than a long clip are not news: said below
                    warnings.simplefilter("ignore")
                    long_folder = VideoFolder(data, T=long_frames, size=tok.size, fps=tok.fps)
            except ValueError:
                long_folder = None
        long_picks = long_folder.spread(n_long, T=long_frames) if long_folder is not None else []
        if long_picks:
            long_clips = [long_folder.window(v, start, T=long_frames) for v, start in long_picks]
            n_files = sum(len(v) >= long_frames for v in long_folder.videos)
            print(f"long video: {n_files} of the videos under {data} {'has' if n_files == 1 else 'have'} {long_frames} frames "
                  f"at {tok.fps:g} fps", flush=True)
            res["long_windows"] = [{"file": long_folder.files[v], "start_frame": start} for v, start in long_picks]
        else:  # no video under the folder is that long
            print(f"long video: no video under {data} has {long_frames} frames at {tok.fps:g} fps; skipped", flush=True)
    if long_clips:
        lv = long_video(tok, long_clips, **sampler)
        lv["memory"] = memory_scaling(model, str(tok.device), tok.dtype, frames, long_frames, tok.max_batch, **sampler)
        res["long_video"] = lv
    if token_probe_clips > 0 and data is None:
        res["token_probe"] = token_probe(tok, token_probe_clips, n, rd["ks"], frames)
    res.update({"elapsed_s": time.time() - t0, "torch": torch.__version__, "device": str(tok.device),
                "threads": torch.get_num_threads()})
    return res


def main(argv=None):
    p = argparse.ArgumentParser(formatter_class=HelpFormatter, prog="flexvid eval-tokenizer",
                                description=__doc__.split("\n")[0])
    from .generate import DEFAULT_TOKENIZER
    p.add_argument("--model", default=DEFAULT_TOKENIZER,
                   help="tokenizer folder or Hugging Face repo id (default: the embedded assets/tokenizer)")
    p.add_argument("--n", type=int, default=64, help="test clips for rate-distortion and semantics")
    p.add_argument("--n-long", type=int, default=4, help="81-frame test clips for the long-video check")
    p.add_argument("--ks", type=int, nargs="+", default=None, help="k values (default the ladder 1, 2, 4, ..., K)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    p.add_argument("--guidance-mode", choices=["cfg", "apg"], default=None,
                   help="plain CFG or APG (default: the model's)")
    p.add_argument("--noise-scale", type=float, default=None, help="scale of the decoder's starting noise, in [0, 2] (1: sample; below 1: nearer the mean; default: the model's)")
    p.add_argument("--seed", type=int, default=None, help="noise seed for every clip and k (default: detokenize's, 0)")
    p.add_argument("--device", default="auto")
    add_dtype_argument(p)
    p.add_argument("--batch", type=int, default=16, help="videos per decoder batch")
    p.add_argument("--no-long", action="store_true", help="skip the long-video and memory checks")
    p.add_argument("--token-probe", type=int, default=1024, metavar="N",
                   help="training clips for the linear probe on the tokens (0: skip it)")
    p.add_argument("--frames", type=int, default=17,
                   help="frames per clip of a --data folder, 1 + 4n (17: one chunk, as the shapes world is measured)")
    p.add_argument("--data", default=None, metavar="FOLDER",
                   help="measure on windows of the videos under this folder instead of the shapes world's test split "
                        "(rate-distortion and long video; the attribute probes need the shapes world)")
    p.add_argument("--out", default="eval/tokenizer")
    add_threads_argument(p)
    args = p.parse_args(argv)
    set_threads(args.threads)
    # every error one line (flexvid.cli prints a ValueError so, with exit status 2), before any work
    if args.n < 1 or args.batch < 1 or args.n_long < 0 or args.token_probe < 0:
        raise ValueError(f"--n and --batch must be >= 1, --n-long and --token-probe >= 0, got {args.n}, {args.batch}, "
                         f"{args.n_long}, {args.token_probe}")
    check_report(args.out)  # before the evaluation, not after it
    if args.frames < 5 or (args.frames - 1) % 4:
        raise ValueError(f"--frames must be 1 + 4n and at least 5, got {args.frames}")
    if args.frames != 17 and args.data is None:
        raise ValueError("--frames is for --data folders: the shapes world's probes are validated on 17-frame clips")
    if args.data is not None and not os.path.isdir(args.data):
        raise ValueError(f"--data {args.data!r} is not a folder")
    tok = VideoFlexTok.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    tok.max_batch = args.batch
    if args.data is None and (tok.size != shapes.SIZE or tok.fps != shapes.FPS):
        raise ValueError(f"{args.model} takes {tok.size} px clips at {tok.fps:g} fps, the shapes world's test split "
                         f"is {shapes.SIZE} px at {shapes.FPS} fps: measure it on your own videos with --data FOLDER")
    if args.ks and not all(1 <= k <= tok.n_tokens for k in args.ks):
        raise ValueError(f"--ks must lie in [1, {tok.n_tokens}], got {args.ks}")
    tok._check_sampler(args.steps, args.guidance, args.guidance_mode, args.noise_scale)
    res = evaluate(tok, args.model, args.n, args.n_long, args.ks, not args.no_long,
                   token_probe_clips=args.token_probe, steps=args.steps,
                   guidance=args.guidance, guidance_mode=args.guidance_mode, seed=args.seed,
                   noise_scale=args.noise_scale, data=args.data, frames=args.frames)
    res["settings"]["command"] = command_line("eval-tokenizer", argv)
    print(table(res))
    json_path, html_path = write_report(res, args.out)
    print(f"wrote {json_path} and {html_path} ({res['elapsed_s']:.0f} s)")
    return res


if __name__ == "__main__":  # python -m / torchrun -m: errors in one line, as the flexvid command
    from flexvid.cli import run_module
    run_module("eval-tokenizer")
