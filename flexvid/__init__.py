"""flexvid: VideoFlexTok (arXiv 2604.12887) video tokenization, coarse to fine, with training code."""
from .pipeline import VideoFlexTok
from .tokenizer import TOKENIZER_CONFIGS, FlexTokenizer, TokenizerConfig
from .vae import VAE_CONFIGS, VAEConfig, VideoVAE

__version__ = "0.1.0"
__all__ = ["VideoFlexTok", "FlexTokenizer", "TokenizerConfig", "TOKENIZER_CONFIGS", "VideoVAE", "VAEConfig",
           "VAE_CONFIGS"]
