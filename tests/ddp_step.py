"""Run by test_training under torchrun (or alone): a few VAE training steps, then save the weights."""
import sys

import torch

from flexvid import shapes
from flexvid.train_vae import vae_loss
from flexvid.training import TrainConfig, fit
from flexvid.vae import VAEConfig, VideoVAE

out = sys.argv[1]
torch.manual_seed(0)
vae = VideoVAE(VAEConfig(z_channels=4, dims=(8, 16), spatial_down=(False, True), temporal_down=(False, True), patch=2))
cfg = TrainConfig(out_dir=out, steps=2, batch_size=4, lr=1e-3, warmup=1, bf16=False, ckpt_every=2, log_every=1,
                  threads=1)


def batches(start, b, rank, world):
    return shapes.batch_stream("train", b, 5, start=start * cfg.batch_size, rank=rank, world_size=world)


fit(vae, vae_loss, batches, cfg)
