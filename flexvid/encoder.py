"""Stage 1 encoder: latent patches and per-time-step registers, interleaved, time-block-causal.

The sequence is [patches_0, registers_0, patches_1, registers_1, ...]. A token of step i sees the tokens
of steps <= i; patches see only patches; registers of a step see each other causally (register j sees
registers <= j), which suits the coarse-to-fine order. Only the registers leave the encoder.
(VideoFlexTok, arXiv 2604.12887; FlexTok, arXiv 2502.13967.)

Letters: B batch, C latent channels, t time steps, h w latent size, p patch, N patches per step,
K registers per step, D width.
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
from einops import rearrange

from .layers import Block, RMSNorm


@functools.lru_cache(maxsize=32)
def encoder_mask(t: int, N: int, K: int, register_causal: bool, device: str = "cpu") -> torch.Tensor:
    """(L, L) bool, True = may attend, L = t * (N + K)."""
    per = N + K
    idx = torch.arange(t * per)
    step, pos = idx // per, idx % per
    is_reg, reg = pos >= N, pos - N
    q, k = (slice(None), None), (None, slice(None))
    allowed = step[k] <= step[q]
    allowed &= is_reg[q] | ~is_reg[k]  # patches read only patches
    if register_causal:
        same_step_regs = (step[k] == step[q]) & is_reg[q] & is_reg[k]
        allowed &= ~same_step_regs | (reg[k] <= reg[q])
    return allowed.to(device)


class Encoder(nn.Module):
    def __init__(self, z_channels: int, latent_size: int, patch: int, max_t: int, n_registers: int,
                 dim: int, n_layers: int, n_heads: int, register_causal: bool = True):
        super().__init__()
        self.patch, self.n_registers, self.register_causal = patch, n_registers, register_causal
        self.n_patches = (latent_size // patch) ** 2
        self.x_embedder = nn.Linear(z_channels * patch * patch, dim)
        self.pos_embed = nn.Parameter(torch.zeros(self.n_patches, dim))
        self.time_embed = nn.Parameter(torch.zeros(max_t, dim))
        self.registers = nn.Parameter(torch.zeros(n_registers, dim))
        self.blocks = nn.ModuleList(Block(dim, n_heads) for _ in range(n_layers))
        self.norm = RMSNorm(dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, C, t, h, w) -> (B, t, K, D)
        B, _, t, _, _ = z.shape
        if t > self.time_embed.shape[0]:
            raise ValueError(f"{t} latent steps exceed the encoder's {self.time_embed.shape[0]}; use chunked tokenize")
        p, N, K = self.patch, self.n_patches, self.n_registers
        x = rearrange(z, "b c t (h p1) (w p2) -> b t (h w) (c p1 p2)", p1=p, p2=p)
        x = self.x_embedder(x) + self.pos_embed + self.time_embed[:t, None]  # (B, t, N, D)
        r = (self.registers + self.time_embed[:t, None]).expand(B, -1, -1, -1)  # (B, t, K, D)
        seq = torch.cat([x, r], dim=2).flatten(1, 2)  # (B, t*(N+K), D)
        mask = encoder_mask(t, N, K, self.register_causal, str(z.device))
        for blk in self.blocks:
            seq = blk(seq, mask)
        seq = self.norm(seq).unflatten(1, (t, N + K))
        return seq[:, :, N:]  # (B, t, K, D)
