"""Stage 0 training: the causal video VAE on the shapes world.

Loss: MSE + L1 on pixels plus a small KL. Trains on short clips (the network is fully convolutional
and causal, so it runs on any 1 + 4n frames later), then measures per-channel latent statistics so the
tokenizer sees zero-mean, unit-std latents, and exports safetensors + config.json.

    flexvid train-vae --out-dir runs/vae --steps 3000
"""
from __future__ import annotations

import argparse
import os

import torch

from . import shapes
from .hub import config_dict, save_weights, write_json
from .training import TrainConfig, fit
from .vae import VAE_CONFIGS, VAEConfig, VideoVAE


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-clip PSNR in dB of videos in [-1, 1]: (B, ...) -> (B,)."""
    mse = ((x.float() - y.float()) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def vae_loss(model, batch, rand, kl_weight: float = 1e-6, latent_noise: float = 0.0):
    """latent_noise > 0 perturbs each clip's normalised latents by Gaussian noise of a standard deviation
    drawn uniformly from [0, latent_noise] before decoding."""
    x = batch[0].to(next(model.parameters()).device)
    vae = model.module if hasattr(model, "module") else model
    shape = vae.latent_shape(*x.shape[2:])
    extra = None
    if latent_noise > 0:
        extra = rand.randn(x.shape[0], *shape) * rand.rand(x.shape[0], 1, 1, 1, 1) * latent_noise
    recon, kl = model(x, rand.randn(x.shape[0], *shape), extra)
    err = recon.float() - x
    loss = err.pow(2).mean() + 0.1 * err.abs().mean() + kl_weight * kl.float()
    return loss, {"mse": err.pow(2).mean().item(), "kl": kl.item()}


@torch.no_grad()
def latent_stats(vae: VideoVAE, n: int = 128, T: int = 17, batch: int = 16) -> tuple[list, list]:
    zs = []
    for i in range(0, n, batch):
        x = torch.stack([shapes.to_tensor(shapes.make_clip(shapes.SPLIT_SEEDS["train"], 10_000_000 + j, T).video)
                         for j in range(i, i + batch)])
        mean, _ = vae.encode_moments(x.to(next(vae.parameters()).device))
        zs.append(mean.float().cpu())
    z = torch.cat(zs).transpose(0, 1).flatten(1)  # (z, N)
    return z.mean(1).tolist(), z.std(1).clamp_min(1e-3).tolist()


@torch.no_grad()
def eval_vae(vae: VideoVAE, n: int = 16) -> dict:
    clips = shapes.fixed_split("val", n, 17)
    x = torch.stack([shapes.to_tensor(c.video) for c in clips]).to(next(vae.parameters()).device)
    recon, _ = vae(x)
    return {"psnr": psnr(recon.clamp(-1, 1), x).mean().item()}


def freeze_encoder(vae: VideoVAE) -> None:
    """Fix the encoder side (enc_in, encoder, enc_out): every clip keeps its latents, so a tokenizer
    trained on them, its tokens and the generators trained on those stay valid; the decoder trains."""
    for part in (vae.enc_in, vae.encoder, vae.enc_out):
        part.requires_grad_(False)


def export(vae: VideoVAE, out_dir: str, keep_stats: bool = False) -> None:
    """Write out_dir/{config.json, model.safetensors} with latent statistics measured now, or with the
    ones the VAE already has (keep_stats: a decoder-only fine-tune leaves the latents as they were)."""
    cfg = VAEConfig(**config_dict(vae.cfg))
    if not keep_stats:
        cfg.latent_mean, cfg.latent_std = latent_stats(vae)
    write_json(os.path.join(out_dir, "config.json"), config_dict(cfg))
    save_weights(vae, os.path.join(out_dir, "model.safetensors"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=list(VAE_CONFIGS))
    p.add_argument("--frames", type=int, default=9, help="training clip length (1 + 4n)")
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--latent-noise", type=float, default=0.0,
                   help="decode latents perturbed by noise of std up to this (normalised units; the resampler's "
                        "latents at full K are off by about 0.28 rms)")
    p.add_argument("--init", default=None, help="start from the VAE of this folder (a VAE export or a tokenizer folder)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="train the decoder only (needs --init): every clip keeps its latents, so the tokenizer, its "
                        "tokens and the generators stay valid; the export keeps the init's latent statistics")
    TrainConfig.add_args(p, out_dir="runs/vae", steps=3000, batch_size=8, lr=1e-3, min_lr=5e-5,
                         warmup=100, ema_decay=0.998, ckpt_every=200, eval_every=200)
    args = p.parse_args(argv)
    cfg = TrainConfig.from_args(args)
    if not shapes.valid_length(args.frames):
        raise SystemExit(f"--frames must be 1 + 4n, got {args.frames}")
    if args.freeze_encoder and not args.init:
        raise SystemExit("--freeze-encoder fine-tunes a trained VAE's decoder: give it --init")
    vae = VideoVAE(VAEConfig(**config_dict(VAE_CONFIGS[args.preset])))
    if args.init:
        from .train_tokenizer import load_vae
        vae = load_vae(args.init).train().requires_grad_(True)
    if args.freeze_encoder:
        freeze_encoder(vae)

    def batches(start, b, rank, world):
        return shapes.batch_stream("train", b, args.frames, start=start * cfg.batch_size, rank=rank, world_size=world)

    ema = fit(vae, lambda m, batch, rand: vae_loss(m, batch, rand, args.kl_weight, args.latent_noise), batches, cfg,
              model_config=config_dict(vae.cfg), eval_fn=lambda m, s: eval_vae(m),
              on_checkpoint=lambda m, s: export(m, os.path.join(cfg.out_dir, "export"), keep_stats=args.freeze_encoder))
    return ema


if __name__ == "__main__":
    main()
