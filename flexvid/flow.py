"""Rectified flow: the decoder's objective, time schedule, Euler sampler and guidance.

Objective (rectified flow, Liu et al. arXiv 2209.03003; SD3, arXiv 2403.03206):
    x_s = s * noise + (1 - s) * x0,   target v = noise - x0,   s ~ logit-normal(m, sd).
SD3 draws s from logit-normal(0, 1); TokenizerConfig.time_mean / time_std (default (1, 1)) shift it towards noise.
Sampling: Euler from s = 1 to s = 0. Guidance replaces the registers with the null condition:
plain classifier-free guidance (Ho & Salimans, arXiv 2207.12598) or adaptive projected guidance
(APG, Sadat et al., arXiv 2410.02416), which keeps only the part of the guidance update orthogonal to
the conditional prediction and bounds its norm.

Letters: B batch, C channels, t time steps, h w latent size.
"""
from __future__ import annotations

from typing import Callable

import torch


def logit_normal(u: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Flow times from standard normal draws u (SD3's logit-normal sampling)."""
    return torch.sigmoid(mean + std * u)


def _bcast(s: torch.Tensor) -> torch.Tensor:  # (B, t) -> (B, 1, t, 1, 1)
    return s[:, None, :, None, None]


def interpolate(x0: torch.Tensor, noise: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return _bcast(s) * noise + (1 - _bcast(s)) * x0


def flow_loss(v_pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, step_weight: torch.Tensor,
              position_weight: torch.Tensor | None = None, mean=None) -> torch.Tensor:
    """Mean squared velocity error over the steps with weight 1 (a clean prefix has weight 0).
    position_weight (B, 1, t, h, w), optional: weights the error per latent position (detail_weights).
    mean(total, count), optional: how the total is divided by the count (training.global_mean under DDP)."""
    err = (v_pred.float() - (noise - x0).float()).pow(2)  # (B, C, t, h, w)
    if position_weight is not None:
        err = err * position_weight
    err = err.mean(dim=(1, 3, 4))  # (B, t)
    total, count = (err * step_weight).sum(), step_weight.sum()
    return mean(total, count) if mean is not None else total / count.clamp_min(1.0)


def clean_estimate(x_s: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The clean latents that a velocity prediction implies: x0 = x_s - s v (exact for the true v)."""
    return x_s - _bcast(s) * v


def detail_weights(x0: torch.Tensor, strength: float, cap: float = 20.0) -> torch.Tensor:
    """Per-position loss weights (B, 1, t, h, w) that favour detail over smooth regions of a clean latent.

    The detail energy of a position is its squared distance (over channels) from the 3 x 3 spatial
    average around it, relative to the clip's mean energy: a small object on a smooth background
    stands out; a wide gradient does not. weight = 1 + strength * min(energy / mean energy, cap), then
    divided by its mean over the clip, so the loss keeps its scale and only shifts where it looks.
    The mean squared error spends a tokenizer's bits on what covers the most area; a shape a few
    pixels wide costs little there, and this moves some of the loss onto such places."""
    B, C, t, h, w = x0.shape
    x = x0.float().transpose(1, 2).reshape(B * t, C, h, w)
    smooth = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    energy = (x - smooth).pow(2).mean(1, keepdim=True).view(B, t, 1, h, w).transpose(1, 2)  # (B, 1, t, h, w)
    rel = energy / energy.mean(dim=(2, 3, 4), keepdim=True).clamp_min(1e-8)
    weight = 1 + strength * rel.clamp(max=cap)
    return weight / weight.mean(dim=(2, 3, 4), keepdim=True)


def time_grid(steps: int, shift: float = 1.0, device=None) -> torch.Tensor:
    """steps + 1 times from 1 to 0; shift > 1 spends more steps at high noise (SD3's time shift)."""
    s = torch.linspace(1.0, 0.0, steps + 1, device=device)
    return shift * s / (1 + (shift - 1) * s)


def cfg_combine(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance; scale 1 is the conditional prediction."""
    return v_uncond + scale * (v_cond - v_uncond)


def apg_combine(x_s, s, v_cond, v_uncond, scale: float, eta: float = 0.0, norm_threshold: float = 0.0):
    """Adaptive projected guidance on the denoised predictions x0 = x_s - s v (APG, arXiv 2410.02416).

    The update x0_c - x0_u is (optionally) clipped to norm_threshold, split into parts parallel and
    orthogonal to x0_c, and the parallel part is scaled by eta. Returns the guided velocity. x_s and the
    velocities are (B, C, t, h, w): the paper's per-sample norms and projection are taken per time step
    (over C, h, w), so that guidance keeps the decoder's time-causality (a later step's tokens never change
    an earlier frame) and a clean prefix step (s = 0, chunked decoding) neither moves nor enters the
    projection of the steps being sampled.
    """
    sb = _bcast(s)
    x0_c, x0_u = x_s - sb * v_cond, x_s - sb * v_uncond
    diff = x0_c - x0_u
    dims = (1, 3, 4)  # per sample and time step

    def norm(x):
        return x.pow(2).sum(dim=dims, keepdim=True).sqrt().clamp_min(1e-8)

    if norm_threshold > 0:
        diff = diff * torch.clamp(norm_threshold / norm(diff), max=1.0)
    unit = x0_c / norm(x0_c)
    parallel = (diff * unit).sum(dim=dims, keepdim=True) * unit
    x0 = x0_c + (scale - 1) * (diff - parallel + eta * parallel)
    return (x_s - x0) / sb.clamp_min(1e-4)


@torch.no_grad()
def euler_sample(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
                 steps: int, prefix: torch.Tensor | None = None, shift: float = 1.0,
                 callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Integrate dx/ds = v from s = 1 (noise) to s = 0.

    velocity(x_s, s) -> v, with s of shape (B, t). prefix (B, C, n, h, w): clean latents of the first n
    steps, held fixed at s = 0 throughout (chunked decoding of long videos).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    B, _, t = noise.shape[:3]
    n = 0 if prefix is None else prefix.shape[2]
    x = noise.float().clone()
    grid = time_grid(steps, shift, noise.device)
    for i in range(steps):
        if n:
            x[:, :, :n] = prefix
        s = torch.full((B, t), float(grid[i]), device=noise.device)
        s[:, :n] = 0.0
        v = velocity(x, s).float()  # fp32 island: the Euler update accumulates over many steps
        x = x + (grid[i + 1] - grid[i]) * v
        if callback is not None:
            callback(i + 1, steps)
    if n:
        x[:, :, :n] = prefix
    return x
