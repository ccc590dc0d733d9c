"""Stage 1: the VideoFlexTok resampler (encoder -> FSQ -> nested dropout -> rectified-flow decoder).

VideoFlexTok (arXiv 2604.12887) gives each latent time step an ordered list of K tokens. The encoder
writes K registers per step, FSQ turns them into integer tokens, nested dropout during training keeps
only the first k of every step, and a rectified-flow decoder generates the latents from any prefix.

Letters: B batch, C latent channels, t time steps, h w latent size, K registers per step, k kept,
d FSQ dims, D width.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .decoder import FlowDecoder
from .encoder import Encoder
from .flow import apg_combine, cfg_combine, interpolate
from .quantizer import FSQuantizer, nested_dropout

# FSQ keeps every code as a buffer (codebook_size x len(levels) floats), built even on the meta device;
# the paper's largest codebook has 64,000 codes
MAX_CODEBOOK = 2 ** 20


def _int_in(v, lo: int, hi: int = 2**20) -> bool:
    """An int (not a bool) in [lo, hi]: a size from a config file bounded before anything is built from it."""
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


@dataclass
class TokenizerConfig:
    z_channels: int = 16  # VAE latent channels
    latent_size: int = 8  # latent height = width (video size / VAE spatial factor)
    patch: int = 2  # latent patch size: 2x2 as in FlexTok
    max_t: int = 5  # latent steps per chunk: 17 frames
    n_registers: int = 32  # K, tokens per time step
    levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ levels: 1000 codes
    enc_dim: int = 192
    enc_layers: int = 4
    enc_heads: int = 3
    dec_dim: int = 192
    dec_layers: int = 6
    dec_heads: int = 3
    register_causal: bool = True  # registers of a step see only earlier registers of the step
    nested_dropout: str = "pow2"  # k drawn from 1, 2, 4, ..., K ("pow2") or 1..K ("uniform")
    nested_decay: float = 1.0  # < 1 draws short prefixes more often: P(i-th k) proportional to decay ** i
    p_null: float = 0.1  # training clips whose registers become the null condition (for guidance)
    p_prefix: float = 0.25  # training clips whose first step stays clean (chunked long-video decoding)
    # logit-normal flow times (SD3): mean > 0 trains more at high noise, where only the tokens tell the
    # decoder what the clip is, so the encoder gets its learning signal there
    time_mean: float = 1.0
    time_std: float = 1.0
    # anti-collapse (VICReg's variance term, arXiv 2105.04906): every FSQ dimension of every token
    # position must spread across the clips of a batch by at least var_target (in code units, where
    # FSQ's rounding step is 2 / (levels - 1)); without it the encoder learns constant codes that the
    # decoder can ignore
    var_weight: float = 1.0
    var_target: float = 0.5
    # > 0 weights the flow loss towards detailed latent positions (flow.detail_weights): small objects
    # on a smooth background weigh more than their area; 0 is the plain mean squared error
    detail_weight: float = 0.0
    # > 0 adds the error measured in pixels: the decoder's estimate of the clean latents (x_s - s v) and
    # the true ones are both decoded by the frozen stage-0 VAE, and their mean squared difference (in
    # [-1, 1] pixel units) is added with this weight, for the first pixel_clips clips of each batch. A
    # squared error on the normalised latents counts a clip's smooth background 2.6 times more than its
    # pixels do (scripts/latent_variance.py), and no fixed weighting of the latent channels undoes that
    pixel_weight: float = 0.0
    pixel_clips: int = 4
    # > 0 adds an attribute loss on the first token of every step: a training-only head reads the
    # token's FSQ code and must name each labelled attribute of the clip (attr_classes: classes per
    # attribute, e.g. the shapes world's colour, shape, size and motion); time-dependent attributes
    # (attr_temporal) are asked only from the second step on, since the first step is one frame
    attr_weight: float = 0.0
    attr_classes: tuple[int, ...] = ()
    attr_temporal: tuple[bool, ...] = ()
    repa_layer: int = 2  # decoder block whose patch features REPA aligns
    repa_dim: int = 0  # feature size of the frozen REPA model; 0 turns REPA off
    # default sampler settings, measured on the shapes world for the tiny preset
    sample_steps: int = 25
    guidance: float = 1.0
    guidance_mode: str = "cfg"  # "cfg" or "apg"
    # scale of the sampler's starting noise: 1 samples the decoder's distribution; below 1 trades
    # diversity for fidelity (closer to the mean reconstruction, higher PSNR, softer at small k)
    noise_scale: float = 1.0

    def __post_init__(self):
        self.levels = tuple(self.levels)
        self.attr_classes, self.attr_temporal = tuple(self.attr_classes), tuple(self.attr_temporal)
        for name in ("z_channels", "latent_size", "patch", "max_t", "n_registers", "enc_dim", "enc_layers",
                     "enc_heads", "dec_dim", "dec_layers", "dec_heads", "sample_steps"):
            hi = 1024 if name.endswith(("_layers", "_heads")) else 2**16
            if not _int_in(getattr(self, name), 1, hi):
                raise ValueError(f"{name} must be an integer in [1, {hi}], got {getattr(self, name)!r}")
        if self.max_t < 2:  # chunks overlap by one frame, so a chunk of one frame would never move on
            raise ValueError(f"max_t must be at least 2 (a chunk holds 1 + 4 (max_t - 1) frames), got {self.max_t}")
        for name in ("pixel_clips", "repa_layer", "repa_dim"):
            if not _int_in(getattr(self, name), 0):
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        # the FSQ library takes a level of 2 only with preserve_symmetry, which we do not use
        if not self.levels or not all(_int_in(n, 3) for n in self.levels):
            raise ValueError(f"FSQ levels must be integers >= 3, got {list(self.levels)}")
        if not all(_int_in(n, 1) for n in self.attr_classes):
            raise ValueError(f"attr_classes must be positive integers, got {list(self.attr_classes)}")
        if self.nested_dropout not in ("pow2", "uniform"):
            raise ValueError(f"nested_dropout must be 'pow2' or 'uniform', got {self.nested_dropout!r}")
        if self.guidance_mode not in ("cfg", "apg"):
            raise ValueError(f"guidance_mode must be 'cfg' or 'apg', got {self.guidance_mode!r}")
        # the ranges the pipeline's sampler arguments take (VideoFlexTok._check_sampler)
        for name, lo, hi in (("sample_steps", 1, 1000), ("guidance", 0.0, 100.0), ("noise_scale", 0.0, 2.0),
                             ("p_null", 0.0, 1.0), ("p_prefix", 0.0, 1.0)):
            if not lo <= getattr(self, name) <= hi:  # NaN fails too
                raise ValueError(f"{name} must lie in [{lo}, {hi}], got {getattr(self, name)!r}")
        if not 0.0 < self.nested_decay <= 1.0:
            raise ValueError(f"nested_decay must lie in (0, 1], got {self.nested_decay!r}")
        if self.attr_weight > 0 and not self.attr_classes:
            raise ValueError("attr_weight > 0 needs attr_classes (classes per attribute)")
        if self.attr_temporal and len(self.attr_temporal) != len(self.attr_classes):
            raise ValueError(f"attr_temporal has {len(self.attr_temporal)} entries for {len(self.attr_classes)} attributes")
        for part in ("enc", "dec"):
            dim, heads = getattr(self, f"{part}_dim"), getattr(self, f"{part}_heads")
            if dim % heads:
                raise ValueError(f"{part}_dim {dim} is not divisible by {part}_heads {heads}")
        if self.latent_size % self.patch:
            raise ValueError(f"latent_size {self.latent_size} is not divisible by patch {self.patch}")
        self.codebook_size = 1
        for level in self.levels:
            self.codebook_size *= level
        if self.codebook_size > MAX_CODEBOOK:
            raise ValueError(f"FSQ levels {list(self.levels)} give {self.codebook_size} codes; at most {MAX_CODEBOOK}")


TOKENIZER_CONFIGS = {
    # 64 px shapes world on a CPU: 4 + 6 layers at width 192, 32 tokens per step
    "tiny": TokenizerConfig(),
    # the paper's 128 px Kinetics-600 size: 18 + 18 layers at width 64 x 18 = 1152, 256 tokens per step
    "d18-d18": TokenizerConfig(latent_size=16, n_registers=256, levels=(8, 8, 8, 5, 5, 5), enc_dim=1152,
                               enc_layers=18, enc_heads=18, dec_dim=1152, dec_layers=18, dec_heads=18,
                               repa_layer=1, sample_steps=30, guidance=20.0, guidance_mode="apg"),
    # the paper's 256 px size: 18-layer encoder, 28-layer decoder at width 64 x 28 = 1792
    "d18-d28": TokenizerConfig(latent_size=32, n_registers=256, levels=(8, 8, 8, 5, 5, 5), enc_dim=1152,
                               enc_layers=18, enc_heads=18, dec_dim=1792, dec_layers=28, dec_heads=28,
                               repa_layer=1, sample_steps=30, guidance=20.0, guidance_mode="apg"),
}


class FlexTokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig, verbose: bool = True):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.z_channels, cfg.latent_size, cfg.patch, cfg.max_t, cfg.n_registers,
                               cfg.enc_dim, cfg.enc_layers, cfg.enc_heads, cfg.register_causal)
        self.quantizer = FSQuantizer(cfg.enc_dim, list(cfg.levels), cfg.dec_dim, cfg.max_t, cfg.n_registers)
        self.mask_token = nn.Parameter(torch.zeros(cfg.dec_dim))  # registers beyond k
        self.null_token = nn.Parameter(torch.zeros(cfg.dec_dim))  # no condition at all (guidance)
        self.decoder = FlowDecoder(cfg.z_channels, cfg.latent_size, cfg.patch, cfg.max_t, cfg.n_registers,
                                   cfg.dec_dim, cfg.dec_layers, cfg.dec_heads, cfg.repa_layer)
        self.repa_head = None
        if cfg.repa_dim:
            self.repa_head = nn.Sequential(nn.Linear(cfg.dec_dim, 2 * cfg.dec_dim), nn.SiLU(),
                                           nn.Linear(2 * cfg.dec_dim, cfg.repa_dim))
        self.attr_head = None
        if cfg.attr_classes:  # training only: what the first token of a step must say (attr_weight)
            self.attr_head = nn.Sequential(nn.Linear(len(cfg.levels), 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(),
                                           nn.Linear(256, sum(cfg.attr_classes)))
        self.initialize_weights()
        if verbose:
            print(f"FlexTokenizer: {sum(p.numel() for p in self.parameters()) / 1e6:.2f}M parameters")

    def initialize_weights(self):
        def basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.apply(basic)
        for p in (self.encoder.pos_embed, self.encoder.time_embed, self.decoder.pos_embed,
                  self.decoder.time_embed, self.decoder.reg_pos_embed, self.mask_token, self.null_token):
            nn.init.normal_(p, std=0.02)
        # Registers start small, so that at step 0 what they carry out of the encoder is what they
        # attended to, not their own (shared) embedding: different clips must round to different codes.
        nn.init.normal_(self.encoder.registers, std=0.02)
        # adaLN-zero: every decoder block starts as the identity, the output layer at zero (DiT)
        for blk in self.decoder.blocks:
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.decoder.final_adaLN[-1].weight)
        nn.init.zeros_(self.decoder.final_adaLN[-1].bias)
        nn.init.zeros_(self.decoder.final_linear.weight)
        nn.init.zeros_(self.decoder.final_linear.bias)

    # ------------------------------------------------------------------ encoder side
    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, C, t, h, w) normalised VAE latents -> codes (B, t, K, d) in [-1, 1], tokens (B, t, K)."""
        return self.quantizer.quantize(self.encoder(z))

    def condition(self, codes: torch.Tensor, k: torch.Tensor, null: torch.Tensor | None = None,
                  clean: torch.Tensor | None = None) -> torch.Tensor:
        """Register embeddings for the decoder (B, t, K, D): the first k codes of each step, the mask
        token after them; the null token where null (B,) is True and at clean prefix steps (B, t)."""
        regs = nested_dropout(self.quantizer.proj_out(codes.to(self.null_token.dtype)), k, self.mask_token)
        if null is not None:
            regs = torch.where(null[:, None, None, None], self.null_token.to(regs.dtype), regs)
        if clean is not None:
            regs = torch.where(clean[:, :, None, None], self.null_token.to(regs.dtype), regs)
        return regs

    # ------------------------------------------------------------------ training forward
    def forward(self, z0: torch.Tensor, noise: torch.Tensor, s: torch.Tensor, k: torch.Tensor,
                null: torch.Tensor, clean: torch.Tensor | None = None, return_features: bool = False):
        """One training pass: encode z0 (B, C, t, h, w), keep k (B,) tokens per step, decode the
        latents noised to flow times s (B, t); steps where clean (B, t) is True stay clean (s = 0) and
        get null registers. Returns (v_pred, codes[, features])."""
        codes, _ = self.encode(z0)
        if clean is not None:
            s = torch.where(clean, torch.zeros_like(s), s)
        regs = self.condition(codes, k, null, clean)
        out = self.decoder(interpolate(z0, noise, s), s, regs, return_features)
        if return_features:
            return out[0], codes, out[1]
        return out, codes

    # ------------------------------------------------------------------ guided velocity
    def velocity(self, x_s: torch.Tensor, s: torch.Tensor, regs: torch.Tensor, guidance: float = 1.0,
                 mode: str = "cfg", null_regs: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity at (x_s, s) given register embeddings; with guidance != 1 the conditional and the
        null-conditioned halves run as one batch (DiT's forward_with_cfg)."""
        if guidance == 1.0:
            return self.decoder(x_s, s, regs)
        if null_regs is None:
            null_regs = self.null_token.to(regs.dtype).expand_as(regs)
        v = self.decoder(torch.cat([x_s, x_s]), torch.cat([s, s]), torch.cat([regs, null_regs]))
        v_c, v_u = v.float().chunk(2)
        if mode == "cfg":
            return cfg_combine(v_c, v_u, guidance)
        if mode == "apg":
            return apg_combine(x_s.float(), s.float(), v_c, v_u, guidance)
        raise ValueError(f"guidance mode must be 'cfg' or 'apg', got {mode!r}")
