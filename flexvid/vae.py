"""Stage 0: a causal 3D convolutional video VAE.

Follows the role of VidTok (arXiv 2412.13061) in VideoFlexTok: 4x temporal compression with the first
frame coded alone, so T = 1 + 4n frames give t = 1 + n latent time steps, and a configurable spatial
factor. Causal in time: every convolution pads on the left only and every norm is per position, so a
latent step never depends on later frames. KL-regularised (a small weight keeps the latent smooth).

Letters: B batch, C channels, T frames, t latent time steps, H and W height and width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


@dataclass
class VAEConfig:
    in_channels: int = 3
    z_channels: int = 16
    dims: tuple[int, ...] = (48, 96, 128)  # width per level
    spatial_down: tuple[bool, ...] = (False, True, True)  # which levels halve H and W on entry
    temporal_down: tuple[bool, ...] = (False, True, True)  # which levels halve time on entry (4x in all)
    patch: int = 2  # pixel-unshuffle at the input: cheap first convolutions on CPU
    n_res: int = 1  # residual blocks per level
    # latent normalisation, measured after training (like Stable Diffusion's scaling factor)
    latent_mean: list[float] = field(default_factory=list)
    latent_std: list[float] = field(default_factory=list)

    def __post_init__(self):
        self.dims, self.temporal_down = tuple(self.dims), tuple(self.temporal_down)
        self.spatial_down = tuple(self.spatial_down)
        for name in ("in_channels", "z_channels", "patch", "n_res"):
            if not _positive_int(getattr(self, name)) or getattr(self, name) > 4096:
                raise ValueError(f"{name} must be an integer in [1, 4096], got {getattr(self, name)!r}")
        if not self.dims or len(self.dims) > 16 or not all(_positive_int(d) and d <= 65536 for d in self.dims):
            raise ValueError(f"dims must be 1 to 16 integers in [1, 65536], got {self.dims}")
        if not len(self.dims) == len(self.temporal_down) == len(self.spatial_down):
            raise ValueError(f"dims {self.dims}, spatial_down {self.spatial_down} and temporal_down "
                             f"{self.temporal_down} differ in length")
        if self.spatial_down[0] or self.temporal_down[0]:  # the first level has no downsampling layer
            raise ValueError(f"the first level cannot downsample: spatial_down {self.spatial_down}, "
                             f"temporal_down {self.temporal_down}")
        # empty: not measured yet (mean 0, std 1); otherwise one finite value per channel, stds above 0
        for name in ("latent_mean", "latent_std"):
            v = getattr(self, name)
            if v and len(v) != self.z_channels:
                raise ValueError(f"{name} has {len(v)} values for {self.z_channels} latent channels")
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
                raise ValueError(f"{name} must hold finite numbers, got {list(v)}")
        if not all(x > 0 for x in self.latent_std):
            raise ValueError(f"latent_std must be positive, got {list(self.latent_std)}")
        self.spatial_factor = self.patch * 2 ** sum(self.spatial_down)
        self.temporal_factor = 2 ** sum(self.temporal_down)


VAE_CONFIGS = {
    # 64 px shapes world on a CPU: 8x spatial (2 in the pixel-unshuffle), 4x temporal, 16 channels
    "tiny": VAEConfig(),
    # VidTok's compression (4x temporal, 8x8 spatial, 16 channels) at a GPU size
    "vidtok-like": VAEConfig(z_channels=16, dims=(128, 256, 512, 512), spatial_down=(False, True, True, False),
                             temporal_down=(False, True, True, False), patch=2, n_res=2),
}


class CausalConv3d(nn.Module):
    """3D convolution padded on the left in time (replicating the first frame) and symmetric in space."""

    def __init__(self, cin, cout, k=3, stride_t=1, stride_s=1):
        super().__init__()
        self.k, self.stride_t = k, stride_t
        self.conv = nn.Conv3d(cin, cout, k, stride=(stride_t, stride_s, stride_s), padding=(0, k // 2, k // 2))

    def forward(self, x):  # (B, C, T, H, W)
        x = torch.cat([x[:, :, :1].expand(-1, -1, self.k - 1, -1, -1), x], dim=2)  # causal pad
        return self.conv(x)


class ChannelNorm(nn.Module):
    """RMS norm over channels at each (t, h, w): per position, hence causal."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, 1, 1, 1))

    def forward(self, x):
        return x * torch.rsqrt(x.float().pow(2).mean(1, keepdim=True) + 1e-6).to(x.dtype) * self.weight


class ResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = ChannelNorm(cin), CausalConv3d(cin, cout)
        self.norm2, self.conv2 = ChannelNorm(cout), CausalConv3d(cout, cout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve H and W and/or T (kernel 3, stride 2, causal: output 0 sees only frame 0)."""

    def __init__(self, dim, cout, space: bool, time: bool):
        super().__init__()
        self.conv = CausalConv3d(dim, cout, 3, stride_t=2 if time else 1, stride_s=2 if space else 1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W (nearest + conv) and/or T (depth-to-time, dropping the first frame)."""

    def __init__(self, dim, cout, space: bool, time: bool):
        super().__init__()
        self.space, self.time = space, time
        self.conv = CausalConv3d(dim, cout * (2 if time else 1))

    def forward(self, x):  # (B, C, t, H, W)
        if self.space:
            x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        x = self.conv(x)
        if self.time:
            x = rearrange(x, "b (c two) t h w -> b c (t two) h w", two=2)[:, :, 1:]  # 1 + n -> 1 + 2n
        return x


class VideoVAE(nn.Module):
    """Causal video VAE. encode: (B, 3, T, H, W) in [-1, 1] -> (B, z, t, H/s, W/s); decode inverts."""

    def __init__(self, cfg: VAEConfig, verbose: bool = True):
        super().__init__()
        self.cfg = cfg
        p, d = cfg.patch, cfg.dims
        self.enc_in = CausalConv3d(cfg.in_channels * p * p, d[0])
        enc = []
        for i in range(len(d)):
            if i > 0:
                enc.append(Downsample(d[i - 1], d[i], cfg.spatial_down[i], cfg.temporal_down[i]))
            enc += [ResBlock(d[i], d[i]) for _ in range(cfg.n_res)]
        self.encoder = nn.Sequential(*enc)
        self.enc_out = nn.Sequential(ChannelNorm(d[-1]), nn.SiLU(), CausalConv3d(d[-1], 2 * cfg.z_channels))

        self.dec_in = CausalConv3d(cfg.z_channels, d[-1])
        dec = []
        for i in reversed(range(len(d))):
            dec += [ResBlock(d[i], d[i]) for _ in range(cfg.n_res)]
            if i > 0:
                dec.append(Upsample(d[i], d[i - 1], cfg.spatial_down[i], cfg.temporal_down[i]))
        self.decoder = nn.Sequential(*dec)
        self.dec_out = nn.Sequential(ChannelNorm(d[0]), nn.SiLU(), CausalConv3d(d[0], cfg.in_channels * p * p))
        nn.init.zeros_(self.dec_out[-1].conv.bias)
        # Start with a nearly deterministic posterior (std e^-3 = 0.05): with unit noise at init the
        # latents carry no signal and the decoder settles on the average clip.
        nn.init.constant_(self.enc_out[-1].conv.bias[cfg.z_channels:], -6.0)
        mean = torch.tensor(cfg.latent_mean or [0.0] * cfg.z_channels).view(1, -1, 1, 1, 1)
        std = torch.tensor(cfg.latent_std or [1.0] * cfg.z_channels).view(1, -1, 1, 1, 1)
        self.register_buffer("latent_mean", mean, persistent=False)
        self.register_buffer("latent_std", std, persistent=False)
        if verbose:
            print(f"VideoVAE: {sum(q.numel() for q in self.parameters()) / 1e6:.2f}M parameters")

    def set_latent_stats(self, mean: list[float], std: list[float]) -> None:
        """Per-channel latent statistics (config and buffers), measured after training."""
        if len(mean) != self.cfg.z_channels or len(std) != self.cfg.z_channels:
            raise ValueError(f"need {self.cfg.z_channels} means and stds, got {len(mean)} and {len(std)}")
        mean, std = list(map(float, mean)), list(map(float, std))
        if not all(math.isfinite(x) for x in mean + std) or min(std) <= 0:  # the saved config could not load
            raise ValueError(f"latent statistics must be finite with stds above 0, got mean {mean}, std {std}")
        self.cfg.latent_mean, self.cfg.latent_std = mean, std
        self.latent_mean.copy_(torch.tensor(self.cfg.latent_mean).view(1, -1, 1, 1, 1))
        self.latent_std.copy_(torch.tensor(self.cfg.latent_std).view(1, -1, 1, 1, 1))

    def latent_shape(self, T: int, H: int, W: int) -> tuple[int, int, int, int]:
        s, f = self.cfg.spatial_factor, self.cfg.temporal_factor
        return self.cfg.z_channels, 1 + (T - 1) // f, H // s, W // s

    def check_input(self, x: torch.Tensor):
        f, s = self.cfg.temporal_factor, self.cfg.spatial_factor
        if x.ndim != 5 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"expected video (B, {self.cfg.in_channels}, T, H, W), got {tuple(x.shape)}")
        T, H, W = x.shape[2:]
        if (T - 1) % f or H % s or W % s:
            raise ValueError(f"video of {T} frames at {H}x{W}: need T = 1 + {f}n and H, W multiples of {s}")

    def encode_moments(self, x):  # (B, 3, T, H, W) -> mean, logvar (B, z, t, h, w)
        self.check_input(x)
        p = self.cfg.patch
        x = rearrange(x, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=p, p2=p)
        h = self.enc_out(self.encoder(self.enc_in(x)))
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-20.0, 10.0)

    def decode_raw(self, z):  # (B, z, t, h, w) -> (B, 3, T, H, W)
        p = self.cfg.patch
        x = self.dec_out(self.decoder(self.dec_in(z)))
        return rearrange(x, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=p, p2=p)

    def forward(self, x, noise: torch.Tensor | None = None, latent_noise: torch.Tensor | None = None):
        """Reconstruction and KL for training: returns (recon, kl per element). noise (B, z, t, h, w)
        samples the posterior; without it the posterior mean is decoded. latent_noise (same shape, in units
        of the normalised latents) is added before decoding: a decoder that must also decode the resampler's
        inexact latents can be trained on perturbed ones."""
        mean, logvar = self.encode_moments(x)
        z = mean + noise.to(mean.dtype) * (0.5 * logvar).exp() if noise is not None else mean
        if latent_noise is not None:
            z = z + latent_noise.to(z.dtype) * self.latent_std
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return self.decode_raw(z), kl

    # Normalised latents: what the tokenizer sees (zero mean, unit std per channel).
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        mean, _ = self.encode_moments(x)
        return (mean - self.latent_mean) / self.latent_std

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_raw(z * self.latent_std + self.latent_mean).clamp(-1, 1)
