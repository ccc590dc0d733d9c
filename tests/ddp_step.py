"""Run by test_training under torchrun (or alone): a few training steps of a small VAE (`vae`) or of a small
tokenizer on a frozen VAE (`tokenizer`: flow loss with clean prefixes, the code-spread term, guidance drop),
then save the weights. Usage: ddp_step.py OUT_DIR [vae|tokenizer]"""
import sys

import torch

from flexvid import shapes
from flexvid.training import TrainConfig, fit

if len(sys.argv) < 2 or sys.argv[1].startswith("-") or sys.argv[2:3] not in ([], ["vae"], ["tokenizer"]):
    print("usage: ddp_step.py OUT_DIR [vae|tokenizer]")  # (--help is no output folder)
    sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
out = sys.argv[1]
kind = sys.argv[2] if len(sys.argv) > 2 else "vae"
cfg = TrainConfig(out_dir=out, steps=2, batch_size=4, lr=1e-3, warmup=1, bf16=False, ckpt_every=2, log_every=1,
                  threads=1)

if kind == "vae":
    from flexvid.train_vae import vae_loss
    from flexvid.vae import VAEConfig, VideoVAE

    torch.manual_seed(0)
    model = VideoVAE(VAEConfig(z_channels=4, dims=(8, 16), spatial_down=(False, True), temporal_down=(False, True),
                               patch=2))
    loss_fn, frames = vae_loss, 5
else:
    from conftest import small_pipeline

    from flexvid.train_tokenizer import tokenizer_loss

    pipe = small_pipeline(p_prefix=0.5, var_weight=1.0, var_target=2.0)  # prefixes: a count that varies by rank
    model, vae = pipe.tokenizer.requires_grad_(True), pipe.vae

    def loss_fn(m, batch, rand):
        return tokenizer_loss(m, batch, rand, vae, model.cfg)

    frames = 9


def batches(start, b, rank, world):
    return shapes.batch_stream("train", b, frames, start=start * cfg.batch_size, rank=rank, world_size=world)


fit(model, loss_fn, batches, cfg)
