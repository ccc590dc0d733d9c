"""Finite scalar quantization and nested dropout: what turns encoder registers into ordered tokens.

FSQ (Mentzer et al., arXiv 2309.15505) via vector-quantize-pytorch: each register is projected to
len(levels) dims, bounded and rounded with a straight-through estimator; no codebook to collapse.
Nested dropout (Rippel et al., arXiv 1402.0915; FlexTok, arXiv 2502.13967): keep the first k registers
of every time step and replace the rest with a learned mask token, k drawn per clip; this alone orders
the tokens from coarse to fine.

Letters: B batch, t latent time steps, K registers per step, k kept, d FSQ dims, D width.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from vector_quantize_pytorch import FSQ


class FSQuantizer(nn.Module):
    """Width D -> FSQ codes -> width D. Codes are the integer tokens."""

    def __init__(self, dim_in: int, levels: list[int], dim_out: int, max_t: int, n_registers: int):
        super().__init__()
        self.levels = list(levels)
        self.proj_in = nn.Linear(dim_in, len(levels))
        # a learned offset per (step, register) position, so positions need not share one centre
        self.offset = nn.Parameter(torch.zeros(max_t, n_registers, len(levels)))
        with torch.device("cpu"):  # the library reads its levels with .item(): never on the meta device
            self.fsq = FSQ(levels=self.levels)  # rounds in fp32 (force_quantization_f32)
        self.proj_out = nn.Linear(len(levels), dim_out)

    @property
    def codebook_size(self) -> int:
        return self.fsq.codebook_size

    def quantize(self, h):  # (B, t, K, D) -> codes (B, t, K, d) in [-1, 1], indices (B, t, K) int64
        pre = (self.proj_in(h) + self.offset[:h.shape[1]]).float()
        codes, idx = self.fsq(pre.flatten(1, 2))  # the library wants (B, n, d)
        return codes.unflatten(1, h.shape[1:3]), idx.long().unflatten(1, h.shape[1:3])

    def indices_to_codes(self, idx):  # (B, t, K) -> (B, t, K, d)
        if idx.min() < 0 or idx.max() >= self.codebook_size:
            raise ValueError(f"token ids must lie in [0, {self.codebook_size}), got [{int(idx.min())}, {int(idx.max())}]")
        return self.fsq.indices_to_codes(idx.flatten(1)).unflatten(1, idx.shape[1:])


@torch.no_grad()
def calibrate(quantizer: FSQuantizer, h: torch.Tensor, target_std: float = 1.0) -> None:
    """Data-dependent initialisation of proj_in from encoder outputs h (B, t, K, D) of real clips.

    At initialisation the registers of different clips differ by a small fraction of FSQ's rounding
    step, so every clip rounds to the same codes, the decoder learns to ignore them and the encoder
    gets no signal to escape (bottleneck collapse). Projecting onto the top principal directions of the
    between-clip variation, scaled to target_std, makes different clips give different tokens at step 0.
    """
    d = len(quantizer.levels)
    centred = (h - h.mean(0, keepdim=True)).flatten(0, 2).float()  # between-clip variation per position
    _, sv, vh = torch.linalg.svd(centred, full_matrices=False)
    std = sv[:d] / centred.shape[0] ** 0.5
    w = vh[:d] / std[:, None].clamp_min(1e-6) * target_std  # (d, D)
    quantizer.proj_in.weight.copy_(w)
    quantizer.proj_in.bias.zero_()
    quantizer.offset.zero_()
    quantizer.offset[:h.shape[1]] = -(h.float().mean(0) @ w.T)  # centre every position


def sample_k(rand_u: torch.Tensor, K: int, mode: str = "pow2", decay: float = 1.0) -> torch.Tensor:
    """Draw k per clip from uniform numbers u in [0, 1): powers of two up to K, or uniform 1..K.

    decay < 1 trains short prefixes more: the i-th value of the ladder (1, 2, 4, ... or 1, 2, 3, ...)
    is drawn with probability proportional to decay ** i; decay = 1 draws them all equally often.
    """
    if mode == "pow2":
        ladder = torch.tensor(prefix_ladder(K), device=rand_u.device)
    elif mode == "uniform":
        ladder = torch.arange(1, K + 1, device=rand_u.device)
    else:
        raise ValueError(f"nested dropout mode must be 'pow2' or 'uniform', got {mode!r}")
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"nested dropout decay must be in (0, 1], got {decay}")
    if decay == 1.0:
        return ladder[(rand_u * len(ladder)).long().clamp(max=len(ladder) - 1)]
    w = decay ** torch.arange(len(ladder), device=rand_u.device, dtype=torch.float64)
    cdf = (w.cumsum(0) / w.sum()).to(rand_u.dtype)
    return ladder[torch.searchsorted(cdf, rand_u.contiguous(), right=True).clamp(max=len(ladder) - 1)]


def prefix_ladder(K: int) -> list[int]:
    """1, 2, 4, ..., K (K itself included even when it is not a power of two)."""
    ks, k = [], 1
    while k < K:
        ks.append(k)
        k *= 2
    return ks + [K]


def nested_dropout(x: torch.Tensor, k: torch.Tensor, mask_token: torch.Tensor) -> torch.Tensor:
    """Replace registers at positions >= k with mask_token. x (B, t, K, D), k (B,) -> (B, t, K, D)."""
    keep = torch.arange(x.shape[2], device=x.device)[None, :] < k[:, None]  # (B, K)
    return torch.where(keep[:, None, :, None], x, mask_token.to(x.dtype))
