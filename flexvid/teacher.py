"""A frozen perception model of the shapes world: the REPA teacher for the embedded tokenizer.

FlexTok aligns an early decoder layer with DINOv2 features (REPA). Here the point of that pull is the
order of the tokens: at high noise the decoder can only match semantic features through its tokens, and
with nested dropout through its first few, so the encoder is pushed to put what the clip shows (the
objects) into the first tokens rather than its average colour. No pretrained model can be downloaded
here, and none has seen the shapes world, so this module trains a small one: a fully convolutional
network that labels every 4 x 4 pixel cell of every frame with the colour, shape, size and current
direction of motion of the object covering it (or background), from the frame and two neighbours on
each side. The labels are rendered from each clip's metadata; the tokenizer never sees them, only the
frozen network's features (`ShapesFeatures`, pooled to the decoder's patch grid per latent time step).

    flexvid train-teacher --out-dir runs/teacher --steps 1000
    flexvid train-tokenizer --init assets/tokenizer --repa runs/teacher/export ...
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from . import shapes
from .cli import HelpFormatter
from .hub import config_dict, read_json, save_weights, write_json
from .training import TrainConfig, announce, fit

# label heads: 0 is background, value i + 1 is the i-th name of the world's list
HEADS = {"color": len(shapes.COLOR_NAMES), "shape": len(shapes.SHAPES), "size": len(shapes.SIZE_NAMES),
         "motion": len(shapes.MOTIONS)}
CELL = 4  # labels and features on a 16 x 16 grid of 4 x 4 pixel cells


@dataclass
class TeacherConfig:
    dims: tuple = (32, 64, 96)
    cell: int = CELL
    window: int = 2  # frames on each side stacked with each frame (motion shows as moving edges)


def _direction(v: np.ndarray) -> str:
    if abs(v[0]) < 1e-6 and abs(v[1]) < 1e-6:
        return "still"
    if abs(v[0]) >= abs(v[1]):
        return "left" if v[0] < 0 else "right"
    return "up" if v[1] < 0 else "down"


def render_labels(objects: list[shapes.ShapeObject], T: int) -> np.ndarray:
    """(4, T, 64, 64) uint8 label maps (colour, shape, size, motion; 0 = background), drawn exactly as
    `shapes.render` draws the objects, in the same order, so a later object covers an earlier one.
    Motion is the direction the object moves on from that frame (bounces flip it)."""
    out = np.zeros((4, T, shapes.SIZE, shapes.SIZE), np.uint8)
    for o in objects:
        track, vel = shapes.object_track(o, T)
        values = [shapes.COLOR_NAMES.index(o.color) + 1, shapes.SHAPES.index(o.shape) + 1,
                  shapes.SIZE_NAMES.index(o.size) + 1]
        for f in range(T):
            mask = np.zeros((shapes.SIZE, shapes.SIZE), np.uint8)
            shapes.draw_object(mask, o.shape, (1,), track[f, 0], track[f, 1], shapes.SIZES[o.size])
            m = mask.astype(bool)
            for h, v in enumerate(values + [shapes.MOTIONS.index(_direction(vel[f])) + 1]):
                out[h, f][m] = v
    return out


class ShapesTeacher(nn.Module):
    """(B, 3, T, 64, 64) in [-1, 1] -> features (B, F, T, 16, 16) and per-cell logits of the four heads."""

    def __init__(self, cfg: TeacherConfig = TeacherConfig()):
        super().__init__()
        self.cfg = cfg
        d1, d2, d3 = cfg.dims
        w = 3 * (2 * cfg.window + 1)
        self.net = nn.Sequential(  # 2D convolutions on each frame stacked with its neighbours; the dilated
            nn.Conv2d(w, d1, 3, padding=1), nn.GELU(),  # ones reach the edges of a large object (motion
            nn.Conv2d(d1, d2, 3, stride=2, padding=1), nn.GELU(),  # is only visible there)
            nn.Conv2d(d2, d2, 3, padding=1), nn.GELU(),
            nn.Conv2d(d2, d3, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(d3, d3, 3, padding=2, dilation=2), nn.GELU(),
            nn.Conv2d(d3, d3, 3, padding=4, dilation=4), nn.GELU(),
            nn.Conv2d(d3, d3, 3, padding=1))
        self.heads = nn.Conv2d(d3, sum(n + 1 for n in HEADS.values()), 1)
        self.dim = d3
        # per-dimension statistics of the features on training clips (`calibrate`): REPA targets are
        # standardised with them, since raw features share one large direction (background everywhere)
        self.register_buffer("feature_mean", torch.zeros(d3))
        self.register_buffer("feature_std", torch.ones(d3))

    def _frames(self, video: torch.Tensor) -> torch.Tensor:  # (B, 3, T, H, W) -> (B * T, 3 (2w + 1), H, W)
        w, T = self.cfg.window, video.shape[2]
        idx = (torch.arange(T)[:, None] + torch.arange(-w, w + 1)[None]).clamp(0, T - 1)  # (T, 2w + 1)
        return rearrange(video[:, :, idx], "b c t n h w -> (b t) (n c) h w")

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, F, T, 16, 16)"""
        h = self.net(self._frames(video))
        return rearrange(h, "(b t) f h w -> b f t h w", b=video.shape[0])

    def forward(self, video: torch.Tensor) -> dict:
        logits = rearrange(self.heads(F.gelu(self.net(self._frames(video)))), "(b t) f h w -> b f t h w",
                           b=video.shape[0])
        return dict(zip(HEADS, logits.split([n + 1 for n in HEADS.values()], dim=1)))


class ShapesFeatures(nn.Module):
    """REPA feature model: the frozen teacher's features, averaged over each latent time step (the first
    frame alone, then groups of `temporal` frames, as the causal VAE compresses time) and over each
    decoder patch: (B, 3, T, H, W) -> (B, t, N, F)."""

    def __init__(self, teacher: ShapesTeacher, grid: int, temporal: int = 4):
        super().__init__()
        self.teacher, self.grid, self.temporal = teacher.eval().requires_grad_(False), grid, temporal
        self.dim = teacher.dim

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        h = self.teacher.features(video.float())  # (B, F, T, 16, 16)
        h = F.adaptive_avg_pool3d(h, (h.shape[2], self.grid, self.grid))
        h = (h - self.teacher.feature_mean[:, None, None, None]) / self.teacher.feature_std[:, None, None, None]
        first, rest = h[:, :, :1], h[:, :, 1:]
        if rest.shape[2]:
            rest = rearrange(rest, "b f (t k) h w -> b f t k h w", k=self.temporal).mean(3)
            h = torch.cat([first, rest], dim=2)
        else:
            h = first
        return rearrange(h, "b f t h w -> b t (h w) f")


def load_teacher(path: str) -> ShapesTeacher:
    from safetensors.torch import load_file
    cfg = read_json(os.path.join(path, "config.json"))
    if cfg.get("format") != "flexvid-shapes-teacher":
        raise ValueError(f"{path} is not a shapes teacher (config format {cfg.get('format')!r})")
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: the caller's RNG is kept
        model = ShapesTeacher(TeacherConfig(dims=tuple(cfg["dims"]), cell=cfg["cell"], window=cfg["window"]))
    model.load_state_dict(load_file(os.path.join(path, "model.safetensors")))
    return model.eval().requires_grad_(False)


@torch.no_grad()
def calibrate(model: ShapesTeacher, n: int = 64, T: int = 17) -> ShapesTeacher:
    """Measure the features' per-dimension mean and std over every cell of n training clips (indices
    apart from the teacher's own training clips)."""
    video, _ = next(batch_stream("train", n, T, start=60_000_000))
    h = model.features(video.to(model.feature_mean.device)).float().transpose(0, 1).flatten(1)  # (F, cells)
    model.feature_mean.copy_(h.mean(1))
    model.feature_std.copy_(h.std(1).clamp_min(1e-4))
    return model


def save_teacher(model: ShapesTeacher, path: str) -> None:
    write_json(os.path.join(path, "config.json"), {"format": "flexvid-shapes-teacher", **config_dict(model.cfg)})
    save_weights(model, os.path.join(path, "model.safetensors"))


def cell_labels(labels: np.ndarray, cell: int = CELL) -> np.ndarray:
    """Label maps at each cell's centre pixel: (..., 64, 64) -> (..., 16, 16)."""
    return labels[..., cell // 2::cell, cell // 2::cell]


def degrade(video: torch.Tensor, gen: torch.Generator, max_sigma: float = 1.5, max_noise: float = 0.1) -> torch.Tensor:
    """Each clip of (B, 3, T, H, W) in [-1, 1] blurred by a Gaussian of a random width in [0, max_sigma]
    pixels and given Gaussian noise of a random std in [0, max_noise]: a perception model that also has
    to read decoded videos, which are softer than the world's renders, trains on these."""
    B = video.shape[0]
    sigma = torch.rand(B, generator=gen) * max_sigma
    noise = torch.rand(B, generator=gen) * max_noise
    x = torch.arange(-3, 4, dtype=torch.float32)
    out = []
    for v, s, n in zip(video, sigma.tolist(), noise.tolist()):
        if s > 0.2:
            k = torch.exp(-x ** 2 / (2 * s * s))
            k = (k / k.sum()).to(v)
            C, T, H, W = v.shape
            f = rearrange(v, "c t h w -> (c t) 1 h w")
            f = F.conv2d(F.pad(f, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7))
            f = F.conv2d(F.pad(f, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1))
            v = rearrange(f, "(c t) 1 h w -> c t h w", c=C)
        out.append((v + n * torch.randn(v.shape, generator=gen)).clamp(-1, 1))
    return torch.stack(out)


def batch_stream(split: str, batch_size: int, T: int, start: int = 0, rank: int = 0, world_size: int = 1,
                 augment: bool = False):
    """Batches of (video (B, 3, T, 64, 64), cell labels (B, 4, T, 16, 16) int64); augment: `degrade`d
    videos (the same for the same clips: the generator is seeded by the first clip's index)."""
    seed, j = shapes.SPLIT_SEEDS[split], 0
    while True:
        base = start + (j * world_size + rank) * batch_size
        clips = [shapes.make_clip(seed, base + i, T) for i in range(batch_size)]
        video = torch.stack([shapes.to_tensor(c.video) for c in clips])
        if augment:
            video = degrade(video, torch.Generator().manual_seed(base))
        labels = torch.from_numpy(np.stack([cell_labels(render_labels(c.objects, T)) for c in clips])).long()
        yield video, labels
        j += 1


def teacher_loss(model, batch, rand, object_weight: float = 10.0):
    device = next(model.parameters()).device
    video, labels = batch[0].to(device), batch[1].to(device)
    logits = model(video)
    weight = 1.0 + (object_weight - 1.0) * (labels[:, 0] > 0).float()  # objects are a few % of the cells
    loss, metrics = 0.0, {}
    for h, name in enumerate(HEADS):
        ce = F.cross_entropy(logits[name].float(), labels[:, h], reduction="none")
        loss = loss + (ce * weight).sum() / weight.sum()
        metrics[name] = ce.mean().item()
    return loss, metrics


@torch.no_grad()
def accuracy(model: ShapesTeacher, n: int = 16, T: int = 17, split: str = "val") -> dict:
    """Per-head accuracy on object cells of n clips (background cells: the share labelled background)."""
    video, labels = next(batch_stream(split, n, T))
    logits = model(video.to(next(model.parameters()).device))
    obj = labels[:, 0] > 0
    out = {f"{name}_acc": (logits[name].argmax(1).cpu() == labels[:, h])[obj].float().mean().item()
           for h, name in enumerate(HEADS)}
    out["background_acc"] = (logits["color"].argmax(1).cpu() == 0)[~obj].float().mean().item()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--augment", action="store_true",
                   help="train on blurred and noisy clips too (`degrade`), to read decoded videos (the reranker)")
    TrainConfig.add_args(p, out_dir="runs/teacher", steps=1000, batch_size=8, lr=2e-3, min_lr=1e-4,
                         warmup=50, ema_decay=0.99, ckpt_every=250, eval_every=250, bf16=False)
    args = p.parse_args(argv)
    cfg = TrainConfig.from_args(args)
    cfg.start()  # threads and the seed, before the model is built
    if not shapes.valid_length(args.frames):
        raise SystemExit(f"--frames must be 1 + 4n, got {args.frames}")
    model = ShapesTeacher()

    def batches(start, b, rank, world):  # clip indices far from the tokenizer's, same training seed
        return batch_stream("train", b, args.frames, start=50_000_000 + start * cfg.batch_size, rank=rank,
                            world_size=world, augment=args.augment)

    ema = fit(model, teacher_loss, batches, cfg, model_config=config_dict(model.cfg),
              eval_fn=lambda m, s: accuracy(m), on_checkpoint=lambda m, s: save_teacher(calibrate(m), os.path.join(cfg.out_dir, "export")))
    print(f"accuracy on 64 validation clips: {accuracy(ema, n=64)}", flush=True)
    announce(cfg.out_dir)
    return ema


if __name__ == "__main__":  # python -m / torchrun -m: errors in one line, as the flexvid command
    from flexvid.cli import run_module
    run_module("train-teacher")
