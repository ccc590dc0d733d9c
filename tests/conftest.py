import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from flexvid import shapes  # noqa: E402
from flexvid.pipeline import VideoFlexTok  # noqa: E402
from flexvid.quantizer import calibrate  # noqa: E402
from flexvid.tokenizer import FlexTokenizer, TokenizerConfig  # noqa: E402
from flexvid.vae import VAEConfig, VideoVAE  # noqa: E402

SMALL_VAE = dict(z_channels=8, dims=(16, 24, 32), spatial_down=(False, False, False), patch=4, n_res=1)
SMALL_TOK = dict(z_channels=8, latent_size=16, patch=4, max_t=5, n_registers=8, levels=(8, 5, 5, 5),
                 enc_dim=64, enc_layers=2, enc_heads=2, dec_dim=64, dec_layers=2, dec_heads=2, sample_steps=3)


def small_pipeline(seed: int = 0, **tok_overrides) -> VideoFlexTok:
    """A random, small but complete tokenizer (VAE + resampler) for fast tests."""
    torch.manual_seed(seed)
    vae = VideoVAE(VAEConfig(**SMALL_VAE))
    tok = FlexTokenizer(TokenizerConfig(**{**SMALL_TOK, **tok_overrides}))
    # non-zero decoder output layers, so that decoding depends on the tokens
    for p in tok.decoder.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.05)
    # data-dependent FSQ init, so that different clips give different tokens
    x = torch.stack([shapes.to_tensor(shapes.make_clip(0, i, 17).video) for i in range(16)])
    with torch.no_grad():
        vae.set_latent_stats([0.0] * 8, [0.2] * 8)
        calibrate(tok.quantizer, tok.encoder(vae.encode(x)))
    # frozen, as from_pretrained returns them (VideoFlexTok itself leaves requires_grad alone)
    return VideoFlexTok(vae.eval().requires_grad_(False), tok.eval().requires_grad_(False), device="cpu")


@pytest.fixture
def pipe():
    return small_pipeline()
