"""Transformer pieces shared by the encoder, the flow decoder and the generators.

Pre-norm blocks with RMSNorm, QK-norm, SDPA attention (any boolean mask) and a SwiGLU MLP; the flow
decoder's blocks add adaLN-zero modulation (DiT, arXiv 2212.09748).

Letters: B batch, L sequence length, D width, nh heads, hd head dim.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x):
        # fp32 statistics: bf16 sums of squares lose too much precision
        y = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        return y * self.weight if self.weight is not None else y


def swiglu_hidden(dim: int, mult: float = 8 / 3, multiple_of: int = 64) -> int:
    """SwiGLU width: 2/3 of 4*dim rounded up to a multiple of 64 (LLaMA, gpt-fast)."""
    h = int(dim * mult)
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


class Attention(nn.Module):
    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        self.q_norm, self.k_norm = RMSNorm(self.head_dim), RMSNorm(self.head_dim)

    def qkv(self, x):
        q, k, v = rearrange(self.wqkv(x), "b l (three nh hd) -> three b nh l hd", three=3, nh=self.n_heads)
        return self.q_norm(q), self.k_norm(k), v  # (B, nh, L, hd)

    def forward(self, x, mask: torch.Tensor | None = None):  # (B, L, D), mask (L, L) bool, True = attend
        q, k, v = self.qkv(x)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.wo(rearrange(y, "b nh l hd -> b l (nh hd)"))


class SwiGLU(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        hidden = swiglu_hidden(dim)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.norm1, self.attn = RMSNorm(dim), Attention(dim, n_heads)
        self.norm2, self.mlp = RMSNorm(dim), SwiGLU(dim)

    def forward(self, x, mask=None):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class AdaLNBlock(nn.Module):
    """DiT block with adaLN-zero: shift, scale and gate for attention and MLP from a condition c.

    c is per latent time step (B, t, D), so the steps of a clean prefix carry their own noise level;
    the modulation is computed per step and repeated over the step's `per_step` tokens.
    """

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.norm1, self.attn = RMSNorm(dim, affine=False), Attention(dim, n_heads)
        self.norm2, self.mlp = RMSNorm(dim, affine=False), SwiGLU(dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c, per_step: int, mask=None):  # x (B, L, D), c (B, t, D), L = t * per_step
        mod = self.adaLN_modulation(c).repeat_interleave(per_step, dim=1)  # (B, L, 6D)
        sh1, sc1, g1, sh2, sc2, g2 = mod.chunk(6, dim=-1)
        x = x + g1 * self.attn(modulate(self.norm1(x), sh1, sc1), mask)
        return x + g2 * self.mlp(modulate(self.norm2(x), sh2, sc2))


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of a flow time s in [0, 1], then an MLP (DiT's t_embedder)."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, s):  # (...) -> (..., D)
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=s.device, dtype=torch.float32) / half)
        args = (s.float() * 1000)[..., None] * freqs
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))
