"""Stage 0 training: the causal video VAE on the shapes world (or on the videos under a folder, --data).

Loss: MSE + L1 on pixels plus a small KL. Trains on short clips (the network is fully convolutional
and causal, so it runs on any 1 + 4n frames later), then measures per-channel latent statistics so the
tokenizer sees zero-mean, unit-std latents, and exports safetensors + config.json.

    flexvid train-vae --out-dir runs/vae --steps 3000
"""
from __future__ import annotations

import argparse
import math
import os

import torch

from . import shapes
from .cli import HelpFormatter
from .hub import config_dict, save_safetensors, save_weights, write_json
from .training import TrainConfig, announce, check_resume, data_identity, fit
from .video_data import ShapesClips, training_source
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


# ----------------------------------------------------------------------------- fitting the decoder to the resampler
RESAMPLED_BASE = 20_000_000  # train-split clip indices of the resampler-latent cache: the same clips as the FSQ
# calibration's (video_data's "calib"), both training-side; kept, as a resumed run's cache file does not record it


@torch.no_grad()
def resampler_latents(tokenizer, n: int, frames: int = 17, ks=None, batch: int = 16, seed: int = 0) -> dict:
    """What the tokenizer's resampler makes of n training clips: {"latents" (n, C, t, h, w) normalised,
    "k" (n,)}, clip i being train-split clip RESAMPLED_BASE + i, sampled with k = ks[i % len(ks)] (default
    K) tokens per step and seed seed + i, under the tokenizer's default sampler. A decoder trained to
    turn these into the clips learns to undo the resampler's systematic errors."""
    ks = list(ks) if ks else [tokenizer.n_tokens]
    out, kk = [], []
    for i in range(0, n, batch):
        idx = list(range(i, min(n, i + batch)))
        x = [shapes.to_tensor(shapes.make_clip(shapes.SPLIT_SEEDS["train"], RESAMPLED_BASE + j, frames).video) for j in idx]
        grids = tokenizer.tokenize(x)
        for k in sorted(set(ks)):
            part = [p for p, j in enumerate(idx) if ks[j % len(ks)] == k]
            if part:
                z = tokenizer.sample_latents([grids[p] for p in part], k=k, seed=[seed + idx[p] for p in part])
                out += list(zip([idx[p] for p in part], z))
                kk += [(idx[p], k) for p in part]
    out.sort(key=lambda r: r[0])
    kk.sort()
    return {"latents": torch.stack([z for _, z in out]).half(), "k": torch.tensor([k for _, k in kk])}


def resampled_loss(model, batch):
    """Pixel loss of the decoder on cached resampler latents: batch (clips (B, 3, T, H, W), latents)."""
    x, z = batch
    vae = model.module if hasattr(model, "module") else model
    x, z = x.to(vae.latent_std.device), z.to(vae.latent_std.device).float()
    err = vae.decode_raw(z * vae.latent_std + vae.latent_mean).float() - x
    loss = err.pow(2).mean() + 0.1 * err.abs().mean()
    return loss, {"mse_resampled": err.pow(2).mean().item()}


@torch.no_grad()
def latent_stats(vae: VideoVAE, n: int = 128, T: int = 17, batch: int = 16, source=None) -> tuple[list, list]:
    """Per-channel mean and std of the latents of n training clips of `source` (default: the shapes world)."""
    zs = []
    for x in (source or ShapesClips()).batches("stats", n, T, batch):
        mean, _ = vae.encode_moments(x.to(next(vae.parameters()).device))
        zs.append(mean.float().cpu())
    z = torch.cat(zs).transpose(0, 1).flatten(1)  # (z, N)
    return z.mean(1).tolist(), z.std(1).clamp_min(1e-3).tolist()


@torch.no_grad()
def eval_vae(vae: VideoVAE, n: int = 16, source=None) -> dict:
    x = (source or ShapesClips()).fixed("val", n, 17).to(next(vae.parameters()).device)
    recon, _ = vae(x)
    return {"psnr": psnr(recon.clamp(-1, 1), x).mean().item()}


def freeze_encoder(vae: VideoVAE) -> None:
    """Fix the encoder side (enc_in, encoder, enc_out): every clip keeps its latents, so a tokenizer
    trained on them, its tokens and the generators trained on those stay valid; the decoder trains."""
    for part in (vae.enc_in, vae.encoder, vae.enc_out):
        part.requires_grad_(False)


def export(vae: VideoVAE, out_dir: str, keep_stats: bool = False, source=None) -> None:
    """Write out_dir/{config.json, model.safetensors} with latent statistics measured now on `source`'s
    clips, or with the ones the VAE already has (keep_stats: a decoder-only fine-tune leaves the latents
    as they were)."""
    cfg = VAEConfig(**config_dict(vae.cfg))
    if not keep_stats:
        cfg.latent_mean, cfg.latent_std = latent_stats(vae, source=source)
    write_json(os.path.join(out_dir, "config.json"), config_dict(cfg))
    save_weights(vae, os.path.join(out_dir, "model.safetensors"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--preset", default="tiny", choices=list(VAE_CONFIGS))
    p.add_argument("--frames", type=int, default=9, help="training clip length (1 + 4n)")
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--latent-noise", type=float, default=0.0,
                   help="decode latents perturbed by noise of std up to this (normalised units; the resampler's "
                        "latents at full K are off by about 0.28 rms)")
    p.add_argument("--resampled", type=int, default=0, metavar="N",
                   help="with --freeze-encoder: also fit the decoder to what the tokenizer (--tokenizer) makes of N "
                        "training clips at full K, cached once, on every other step")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder for --resampled (default: --init)")
    p.add_argument("--init", default=None, help="start from the VAE of this folder (a VAE export or a tokenizer folder)")
    p.add_argument("--data", default=None, metavar="FOLDER",
                   help="train on the videos under this folder (default: the shapes world), each of at least 17 frames "
                        "(or --frames, if longer) at --fps; see flexvid.video_data")
    p.add_argument("--size", type=int, default=64, help="with --data: clips are resized and centre-cropped to this")
    p.add_argument("--fps", type=float, default=8.0, help="with --data: the frame rate clips are resampled to")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="train the decoder only (needs --init): every clip keeps its latents, so the tokenizer, its "
                        "tokens and the generators stay valid; the export keeps the init's latent statistics")
    TrainConfig.add_args(p, out_dir="runs/vae", steps=3000, batch_size=8, lr=1e-3, min_lr=5e-5,
                         warmup=100, ema_decay=0.998, ckpt_every=200, eval_every=200)
    args = p.parse_args(argv)
    if not (args.fps > 0 and math.isfinite(args.fps)):
        raise SystemExit(f"--fps must be a positive number, got {args.fps}")
    for name in ("kl_weight", "latent_noise"):  # NaN trained a NaN model; a negative weight rewards the loss
        if not (getattr(args, name) >= 0 and math.isfinite(getattr(args, name))):
            raise SystemExit(f"--{name.replace('_', '-')} must be a number >= 0, got {getattr(args, name)}")
    cfg = TrainConfig.from_args(args)
    cfg.start()  # threads (the caches and checks before fit() run at it too) and the seed
    if not shapes.valid_length(args.frames):
        raise SystemExit(f"--frames must be 1 + 4n, got {args.frames}")
    if args.freeze_encoder and not args.init:
        raise SystemExit("--freeze-encoder fine-tunes a trained VAE's decoder: give it --init")
    if args.resampled < 0 or (args.resampled and not args.freeze_encoder):
        raise SystemExit("--resampled N (N >= 0) fits the decoder to a tokenizer's latents: it needs --freeze-encoder")
    if args.resampled and args.data:
        raise SystemExit("--resampled fits the decoder to the resampler's latents of shapes-world clips; not with --data")
    if args.data:
        from .video_data import check_folder
        check_folder(args.data)  # no folder, no videos: said before any model is built
    run = data_identity(args.data, args.size, args.fps)
    check_resume(cfg.out_dir, run, cfg)  # before a --data folder is decoded
    vae = VideoVAE(VAEConfig(**config_dict(VAE_CONFIGS[args.preset])))
    if args.init:
        from .train_tokenizer import load_vae
        vae = load_vae(args.init).train().requires_grad_(True)
    if args.data and args.size % vae.cfg.spatial_factor:  # said before the folder is decoded
        raise SystemExit(f"--size {args.size} is not a multiple of the VAE's spatial factor {vae.cfg.spatial_factor} "
                         "(a tokenizer on it needs a multiple of that times its patch, 16 for the tiny presets)")
    source = training_source(args.data, args.frames, args.size, args.fps)
    if args.freeze_encoder:
        freeze_encoder(vae)

    cache = None
    if args.resampled:
        from safetensors.torch import load_file
        from .pipeline import VideoFlexTok
        path = os.path.join(cfg.out_dir, f"resampled_{args.resampled}.safetensors")
        if os.path.exists(path):  # made once per run folder (and tokenizer): a resumed run reuses it
            cache = load_file(path)
        else:
            tok = VideoFlexTok.from_pretrained(args.tokenizer or args.init, device=cfg.device)
            cache = resampler_latents(tok, args.resampled)
            save_safetensors(cache, path)
            del tok
        print(f"resampler latents: {tuple(cache['latents'].shape)} from {path}")

    def batches(start, b, rank, world):
        fresh = source.stream(b, args.frames, start * cfg.batch_size, rank, world)
        step = start
        while True:  # with a cache, odd steps decode the resampler's latents of cached clips
            if cache is not None and step % 2:
                g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                idx = torch.randint(len(cache["latents"]), (world * b,), generator=g)[rank * b:(rank + 1) * b]
                x = torch.stack([shapes.to_tensor(shapes.make_clip(shapes.SPLIT_SEEDS["train"], RESAMPLED_BASE + int(i),
                                                                   17).video) for i in idx])
                yield ("resampled", x, cache["latents"][idx])
            else:
                yield next(fresh)
            step += 1

    def loss_fn(m, batch, rand):
        if batch[0] == "resampled":
            return resampled_loss(m, batch[1:])
        return vae_loss(m, batch, rand, args.kl_weight, args.latent_noise)

    ema = fit(vae, loss_fn, batches, cfg,
              model_config=config_dict(vae.cfg), eval_fn=lambda m, s: eval_vae(m, source=source),
              on_checkpoint=lambda m, s: export(m, os.path.join(cfg.out_dir, "export"), keep_stats=args.freeze_encoder,
                                                source=source), run=run)
    announce(cfg.out_dir)
    return ema


if __name__ == "__main__":  # python -m / torchrun -m: errors in one line, as the flexvid command
    from flexvid.cli import run_module
    run_module("train-vae")
