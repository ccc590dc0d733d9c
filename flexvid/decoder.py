"""Stage 1 decoder: a rectified-flow transformer conditioned on the (prefix-masked) registers.

Self-attention over, per time step, the noised latent patches and that step's registers, with the
same time-block-causal structure as the encoder (a step sees steps <= its own). The flow time s is
per step, so a clean prefix (s = 0) can condition chunked decoding of long videos. Timestep
conditioning by adaLN-zero (DiT, arXiv 2212.09748). Returns the velocity v = noise - x0.

Letters: B batch, C latent channels, t time steps, h w latent size, p patch, N patches per step,
K registers per step, D width.
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
from einops import rearrange

from .layers import AdaLNBlock, RMSNorm, TimestepEmbedder, modulate


@functools.lru_cache(maxsize=32)
def decoder_mask(t: int, per_step: int, device: str = "cpu") -> torch.Tensor:
    """(L, L) bool block-causal over time steps, L = t * per_step."""
    step = torch.arange(t * per_step) // per_step
    return (step[None, :] <= step[:, None]).to(device)


class FlowDecoder(nn.Module):
    def __init__(self, z_channels: int, latent_size: int, patch: int, max_t: int, n_registers: int,
                 dim: int, n_layers: int, n_heads: int, repa_layer: int = 0):
        super().__init__()
        self.patch, self.latent_size, self.repa_layer = patch, latent_size, repa_layer
        self.n_patches = (latent_size // patch) ** 2
        self.x_embedder = nn.Linear(z_channels * patch * patch, dim)
        self.pos_embed = nn.Parameter(torch.zeros(self.n_patches, dim))
        self.time_embed = nn.Parameter(torch.zeros(max_t, dim))
        self.reg_pos_embed = nn.Parameter(torch.zeros(n_registers, dim))
        self.t_embedder = TimestepEmbedder(dim)
        self.blocks = nn.ModuleList(AdaLNBlock(dim, n_heads) for _ in range(n_layers))
        self.final_norm = RMSNorm(dim, affine=False)
        self.final_adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.final_linear = nn.Linear(dim, z_channels * patch * patch)

    def forward(self, x_s: torch.Tensor, s: torch.Tensor, regs: torch.Tensor, return_features: bool = False):
        """x_s (B, C, t, h, w) noised latents, s (B, t) flow time per step, regs (B, t, K, D) register
        embeddings (already quantized, prefix-masked or nulled). Returns v (B, C, t, h, w), and the
        patch features of block `repa_layer` (B, t, N, D) when return_features."""
        B, C, t, h, w = x_s.shape
        p, N, K = self.patch, self.n_patches, regs.shape[2]
        x = rearrange(x_s, "b c t (h p1) (w p2) -> b t (h w) (c p1 p2)", p1=p, p2=p)
        x = self.x_embedder(x) + self.pos_embed + self.time_embed[:t, None]  # (B, t, N, D)
        r = regs + self.reg_pos_embed + self.time_embed[:t, None]  # (B, t, K, D)
        seq = torch.cat([x, r], dim=2).flatten(1, 2)  # (B, t*(N+K), D)
        c = self.t_embedder(s)  # (B, t, D)
        mask = decoder_mask(t, N + K, str(x_s.device))
        feats = None
        for i, blk in enumerate(self.blocks):
            seq = blk(seq, c, N + K, mask)
            if return_features and i + 1 == self.repa_layer:
                feats = seq.unflatten(1, (t, N + K))[:, :, :N]
        shift, scale = self.final_adaLN(c).repeat_interleave(N + K, dim=1).chunk(2, dim=-1)
        out = self.final_linear(modulate(self.final_norm(seq), shift, scale))
        out = out.unflatten(1, (t, N + K))[:, :, :N]  # (B, t, N, C p p)
        v = rearrange(out, "b t (h w) (c p1 p2) -> b c t (h p1) (w p2)", h=h // p, p1=p, p2=p)
        return (v, feats) if return_features else v
