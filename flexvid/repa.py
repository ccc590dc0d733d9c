"""REPA: align an early decoder layer with a frozen pretrained feature model (arXiv 2410.06940).

The decoder's patch features at block `repa_layer` go through a small projection head and are pulled
towards the frozen model's features at the same patch positions by negative cosine similarity. Any
frozen model can serve: a feature model maps a video (B, 3, T, H, W) in [-1, 1] to features
(B, t, N, F) on the decoder's patch grid. The default needs no download: the trunk of the project's
own stage-0 VAE encoder. FlexTok used DINOv2; a deployment that has such a model can plug it in.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .vae import VideoVAE


class VAEFeatures(nn.Module):
    """Frozen features of the stage-0 VAE encoder trunk, pooled to the tokenizer's patch grid."""

    def __init__(self, vae: VideoVAE, patch: int):
        super().__init__()
        self.vae, self.patch = vae.eval().requires_grad_(False), patch
        self.dim = vae.cfg.dims[-1]

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:  # (B, 3, T, H, W) -> (B, t, N, F)
        p = self.vae.cfg.patch
        x = rearrange(video, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=p, p2=p)
        h = self.vae.encoder(self.vae.enc_in(x))  # (B, F, t, h, w)
        h = F.avg_pool3d(h.float(), (1, self.patch, self.patch))
        return rearrange(h, "b f t h w -> b t (h w) f")


FEATURE_MODELS = {"vae": VAEFeatures}


def repa_loss(projected: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
              mean=None) -> torch.Tensor:
    """1 - cosine similarity, averaged over patches (and over steps with weight 1); mean(total, count),
    optional: how the total is divided by the count (training.global_mean under DDP)."""
    cos = F.cosine_similarity(projected.float(), target.float(), dim=-1).mean(-1)  # (B, t)
    if weight is None:
        return 1 - cos.mean()
    total, count = ((1 - cos) * weight).sum(), weight.sum()
    return mean(total, count) if mean is not None else total / count.clamp_min(1.0)
