"""Stage 1 training: the VideoFlexTok resampler on frozen VAE latents of the shapes world (or of the videos
under a folder, --data).

Per step: encode clips with the frozen VAE, draw per clip a flow time s (logit-normal), k (nested
dropout), the null condition (guidance) and a clean first step (chunked decoding), and regress the
velocity. Token usage is logged from step 1: distinct codes in the batch, the spread of each FSQ
dimension, and at each evaluation the PSNR at k = 1 and k = K, because a tokenizer whose output
ignores its tokens has learned nothing, whatever its loss says.

    flexvid train-tokenizer --vae runs/vae/export --out-dir runs/tokenizer --steps 4000
"""
from __future__ import annotations

import argparse
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from . import shapes
from .cli import HelpFormatter
from .flow import clean_estimate, detail_weights, flow_loss, interpolate, logit_normal
from .hub import config_dict, config_from_dict, load_weights, read_json, save_safetensors
from .pipeline import VideoFlexTok
from .quantizer import calibrate, sample_k
from .repa import FEATURE_MODELS, repa_loss
from .tokenizer import TOKENIZER_CONFIGS, FlexTokenizer, TokenizerConfig
from .train_vae import psnr
from .training import (TrainConfig, announce, autocast, check_resume, data_identity, fit, global_batch,
                       global_mean, world_size)
from .video_data import ShapesClips, training_source
from .vae import VAEConfig, VideoVAE


def load_vae(path: str) -> VideoVAE:
    """A VAE export folder (config.json + model.safetensors) or a tokenizer folder (vae.safetensors)."""
    cfg = read_json(os.path.join(path, "config.json"))
    if cfg.get("format") == "flexvid-tokenizer":
        vae = VideoVAE(config_from_dict(VAEConfig, cfg["vae"]))
        load_weights(vae, os.path.join(path, "vae.safetensors"))
    else:
        vae = VideoVAE(config_from_dict(VAEConfig, cfg))
        load_weights(vae, os.path.join(path, "model.safetensors"))
    if not cfg.get("latent_std") and not cfg.get("vae", {}).get("latent_std"):
        raise ValueError(f"{path}: the VAE has no latent statistics; export it with train_vae.export")
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def latent_cache(vae: VideoVAE, path: str, n: int, frames: int, batch: int = 16, source=None) -> torch.Tensor:
    """VAE latents (n, C, t, h, w) of the first n cache clips of `source` (default: the shapes world's first
    n training clips), computed once and kept in a file (which records the source: a file made from
    other clips is computed anew): the frozen VAE's forward would otherwise cost about as much as the
    tokenizer's training step."""
    from safetensors import safe_open
    source = source or ShapesClips()
    made_by = encoder_fingerprint(vae)
    if os.path.exists(path):
        try:
            with safe_open(path, "pt") as f:
                meta = f.metadata() or {}
            z = load_file(path)["latents"]
        except Exception as e:  # a cache file cut short (a run stopped while writing it): computed anew
            print(f"latent cache {path} is unreadable ({type(e).__name__}): computing it again", flush=True)
            meta, z = {}, None
        if z is not None and meta.get("source", "shapes") == source.name and meta.get("encoder") == made_by \
                and z.shape[0] >= n:
            return z[:n].float()
    device = next(vae.parameters()).device
    out = []
    for j, x in enumerate(source.batches("cache", n, frames, batch)):
        with autocast(device, True):
            out.append(vae.encode(x.to(device)).float().cpu())
        if j % 64 == 0:
            print(f"latent cache: {j * batch}/{n} clips", flush=True)
    z = torch.cat(out).half().contiguous()  # kept in fp16; a run gets the same latents whether it made the
    # cache or read it back (a resumed one reads it); renamed into place: a stopped run leaves no half-written cache
    save_safetensors({"latents": z}, path, metadata={"source": source.name, "encoder": made_by})
    print(f"latent cache: {n} clips in {path}", flush=True)
    return z.float()


def encoder_fingerprint(vae: VideoVAE) -> str:
    """A hash of what makes the latents: the VAE's encoder weights and latent statistics (not its decoder,
    which train-vae --freeze-encoder retrains without changing a latent)."""
    import hashlib
    h = hashlib.sha256()
    for name, v in sorted(vae.state_dict().items()):
        if name.startswith(("enc_in.", "encoder.", "enc_out.")):
            h.update(name.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    for v in (vae.latent_mean, vae.latent_std):
        h.update(torch.as_tensor(v).detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def feature_cache(feature_model, name: str, path: str, n: int, frames: int, batch: int = 16,
                  source=None) -> torch.Tensor:
    """REPA targets (n, t, N, F) of the same first n training clips as `latent_cache`, computed once:
    with them the latent cache serves REPA training too. `name` identifies the feature model; a file
    made by another model or for fewer clips is computed anew."""
    from safetensors import safe_open
    if os.path.exists(path):
        try:
            with safe_open(path, "pt") as f:
                meta = f.metadata() or {}
            feats = load_file(path)["features"] if meta.get("feature_model") == name else None
        except Exception as e:  # cut short: computed anew
            print(f"feature cache {path} is unreadable ({type(e).__name__}): computing it again", flush=True)
            feats = None
        if feats is not None and feats.shape[0] >= n:
            return feats[:n].float()
    out = []
    for j, x in enumerate((source or ShapesClips()).batches("cache", n, frames, batch)):
        out.append(feature_model(x).float().cpu())
        if j % 64 == 0:
            print(f"feature cache: {j * batch}/{n} clips", flush=True)
    feats = torch.cat(out)
    feats = feats.half().contiguous()
    save_safetensors({"features": feats}, path, metadata={"feature_model": name})
    return feats.float()


def cached_batches(z: torch.Tensor, batch_size: int, feats: torch.Tensor | None = None,
                   attrs: torch.Tensor | None = None):
    """Deterministic batches from a latent cache: a fresh permutation each epoch, sliced per rank. With
    `feats` (a feature cache of the same clips) each batch carries its REPA targets as a fourth item;
    with `attrs` (shapes.attribute_labels of the same clips) its attribute labels as the second."""
    def batches(start, b, rank, world):
        step = start
        while True:
            first = step * batch_size
            epoch, offset = divmod(first, z.shape[0])
            perm = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(epoch))
            idx = perm[(offset + torch.arange(rank * b, (rank + 1) * b)) % z.shape[0]]
            labels = None if attrs is None else attrs[idx]
            yield (z[idx], labels, None) if feats is None else (z[idx], labels, None, feats[idx])
            step += 1
    return batches


def attribute_batches(frames: int):
    """Fresh training clips with their attribute labels: (videos, shapes.attribute_labels, captions),
    the clips of shapes.batch_stream."""
    def batches(start, b, rank, world):
        seed, j = shapes.SPLIT_SEEDS["train"], 0
        for videos, _, captions in shapes.batch_stream("train", b, frames, start=start * b * world, rank=rank,
                                                       world_size=world):
            first = start * b * world + (j * world + rank) * b
            yield videos, shapes.attribute_labels(seed, range(first, first + b)), captions
            j += 1
    return batches


def attribute_loss(logits: torch.Tensor, labels: torch.Tensor, classes, temporal=()) -> tuple[torch.Tensor, list]:
    """Cross-entropy of the attribute head's logits (B, t, sum(classes)) against labels (B, n_attr),
    averaged over attributes; an attribute marked temporal is asked from the second step on (one
    frame says nothing of motion). Returns (loss, accuracy per attribute over the steps asked)."""
    losses, accs, lo = [], [], 0
    for a, n in enumerate(classes):
        first = 1 if temporal and temporal[a] and logits.shape[1] > 1 else 0
        part = logits[:, first:, lo:lo + n].float()
        target = labels[:, a, None].expand(-1, part.shape[1]).to(part.device)
        losses.append(F.cross_entropy(part.flatten(0, 1), target.flatten()))
        accs.append((part.argmax(-1) == target).float().mean().item())
        lo += n
    return torch.stack(losses).mean(), accs


def feature_model_for(name: str, vae, base: dict):
    """The frozen REPA model named on the command line: a FEATURE_MODELS key or a shapes-teacher folder."""
    if name in FEATURE_MODELS:
        return FEATURE_MODELS[name](vae, base["patch"])
    if os.path.isdir(name):
        from .teacher import ShapesFeatures, load_teacher
        return ShapesFeatures(load_teacher(name), grid=base["latent_size"] // base["patch"],
                              temporal=vae.cfg.temporal_factor)
    raise SystemExit(f"--repa {name!r}: not one of {['none', *FEATURE_MODELS]} nor a teacher folder")


def feature_model_id(name: str) -> str:
    """What identifies a feature model's targets: its name, or a hash of a teacher folder's weights."""
    if not os.path.isdir(name):
        return name
    import hashlib
    with open(os.path.join(name, "model.safetensors"), "rb") as f:
        return "teacher:" + hashlib.sha256(f.read()).hexdigest()[:16]


def tokenizer_loss(model, batch, rand, vae, cfg: TokenizerConfig, feature_model=None, repa_weight=0.0):
    """batch[0]: videos (B, 3, T, H, W), or VAE latents (B, C, t, h, w) from a latent cache."""
    device = next(vae.parameters()).device
    x = batch[0].to(device)
    cached_feats = batch[3] if len(batch) > 3 else None
    if x.shape[1] == vae.cfg.z_channels and x.shape[1] != 3:
        if feature_model is not None and repa_weight > 0 and cached_feats is None:
            raise ValueError("REPA on cached latents needs cached features (feature_cache)")
        z0 = x.float()
    else:
        with torch.no_grad():
            z0 = vae.encode(x).float()  # (B, C, t, h, w)
    B, t = z0.shape[0], z0.shape[2]
    noise = rand.randn(B, *z0.shape[1:])
    s = logit_normal(rand.randn(B, 1), cfg.time_mean, cfg.time_std).expand(B, t).contiguous()  # one per clip
    k = sample_k(rand.rand(B), cfg.n_registers, cfg.nested_dropout, cfg.nested_decay)
    null = rand.rand(B) < cfg.p_null
    clean = torch.zeros(B, t, dtype=torch.bool, device=device)
    clean[:, 0] = (rand.rand(B) < cfg.p_prefix) & (t > 1)
    want_feats = feature_model is not None and repa_weight > 0
    out = model(z0, noise, s, k, null, clean, return_features=want_feats)
    v, codes = out[0], out[1]
    weight = (~clean).float()
    position_weight = detail_weights(z0, cfg.detail_weight) if cfg.detail_weight > 0 else None
    loss = flow_loss(v, z0, noise, weight, position_weight, mean=global_mean)  # global: exact under DDP
    metrics = {"flow": loss.item()}
    if cfg.pixel_weight > 0:
        px = pixel_loss(vae, z0, noise, s, v, clean, cfg.pixel_clips)
        loss = loss + cfg.pixel_weight * px
        metrics["pixel"] = px.item()
    if cfg.var_weight > 0 and B * world_size() > 1:  # codes must differ between clips (straight-through gradient)
        spread = global_batch(codes.float()).std(dim=0)  # (t, K, d), over the global batch under DDP
        var = torch.relu(cfg.var_target - spread).mean()
        loss = loss + cfg.var_weight * var * world_size()  # (DDP averages the ranks' gradients)
        metrics["var"] = var.item()
    if want_feats:
        head = model.module.repa_head if hasattr(model, "module") else model.repa_head
        target = cached_feats.to(device).float() if cached_feats is not None else feature_model(x)
        r = repa_loss(head(out[2]), target, weight, mean=global_mean)
        loss = loss + repa_weight * r
        metrics["repa"] = r.item()
    if cfg.attr_weight > 0:  # the first token of every step must name the clip's attributes
        labels = batch[1]
        if not isinstance(labels, torch.Tensor) or labels.shape != (B, len(cfg.attr_classes)):
            raise ValueError(f"attr_weight > 0 needs attribute labels (B, {len(cfg.attr_classes)}) as the batch's "
                             "second item (shapes.attribute_labels)")
        head = model.module.attr_head if hasattr(model, "module") else model.attr_head
        a, accs = attribute_loss(head(codes[:, :, 0].float()), labels, cfg.attr_classes, cfg.attr_temporal)
        loss = loss + cfg.attr_weight * a
        metrics["attr"] = a.item()
        metrics.update({f"attr_acc{i}": round(v, 4) for i, v in enumerate(accs)})
    inner = model.module if hasattr(model, "module") else model
    for head, used in ((inner.attr_head, cfg.attr_weight > 0), (inner.repa_head, want_feats)):
        if head is not None and not used:  # an --init model's head this run does not train: a zero gradient,
            loss = loss + 0.0 * sum(p.sum() for p in head.parameters())  # which DDP needs of every parameter
    with torch.no_grad():  # token usage
        flat = codes.detach().flatten(0, 2)
        idx = (flat * 1000).round().long()
        metrics["codes_distinct"] = torch.unique(idx, dim=0).shape[0]
        metrics["codes_std"] = round(flat.std(0).mean().item(), 4)
        metrics["clips_distinct_t0"] = torch.unique(codes[:, 0, :4].flatten(1).mul(1000).round(), dim=0).shape[0]
    return loss, metrics


def pixel_loss(vae, z0, noise, s, v, clean, n: int) -> torch.Tensor:
    """Mean squared error in pixels between the frozen VAE's decodes of the clean latents that the velocity
    v implies and of the true ones, over the first n clips (tokenizer config pixel_weight). Clean-prefix
    steps keep their true latents, so they add nothing. The VAE's weights get no gradient; the decoder
    that predicted v does, through the VAE decoder."""
    n = min(n, z0.shape[0])
    s = torch.where(clean, torch.zeros_like(s), s)[:n]
    z, eps = z0[:n].float(), noise[:n].float()
    est = clean_estimate(interpolate(z, eps, s), s, v[:n].float())
    est = torch.where(clean[:n, None, :, None, None], z, est)
    std, mean = vae.latent_std.float(), vae.latent_mean.float()
    with torch.no_grad():
        target = vae.decode_raw(z * std + mean).float()
    return (vae.decode_raw(est * std + mean).float() - target).pow(2).mean()


def fit_attribute_head(model: FlexTokenizer, z: torch.Tensor, labels: torch.Tensor, steps: int = 300,
                       batch: int = 256, lr: float = 3e-3, seed: int = 0) -> list:
    """Fit a new attribute head alone to what the encoder's first tokens already say: codes of the
    latents z (n, C, t, h, w) against labels (n, n_attr). A random head would turn the first steps of
    the attribute loss into noise for the encoder; fitted, its loss points where the tokens fall short.
    Returns the head's accuracy per attribute on the last quarter of the clips, held out from the fit."""
    cfg, head = model.cfg, model.attr_head
    with torch.no_grad():
        codes = torch.cat([model.encode(z[i:i + 64].float())[0][:, :, 0] for i in range(0, len(z), 64)])
    n_fit = max(1, len(z) * 3 // 4)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(n_fit, (min(batch, n_fit),), generator=g)
        loss, _ = attribute_loss(head(codes[idx]), labels[idx], cfg.attr_classes, cfg.attr_temporal)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        held = slice(n_fit, None) if n_fit < len(z) else slice(None)
        return [round(a, 3) for a in attribute_loss(head(codes[held]), labels[held], cfg.attr_classes,
                                                     cfg.attr_temporal)[1]]


@torch.no_grad()
def quick_eval(vae, ema, n: int = 8, steps: int = 10, source=None) -> dict:
    """PSNR at k = 1 and k = K on n validation clips (17 frames), a short sampler: the usage check."""
    pipe = VideoFlexTok(vae, ema, device=next(vae.parameters()).device)
    x = (source or ShapesClips()).fixed("val", n, 17)
    tokens = pipe.tokenize(x)
    K = pipe.n_tokens
    res = {"distinct_tokens": int(torch.cat(tokens).unique().numel())}
    for k in (1, K):
        rec = torch.stack(pipe.detokenize(tokens, k=k, steps=steps, guidance=1.0, seed=0))
        res[f"psnr_k{k}"] = round(psnr(rec, x).mean().item(), 2)
    ema.train(False)
    return res


@torch.no_grad()
def calibrate_on_clips(model: FlexTokenizer, vae: VideoVAE, frames: int, n: int = 64, source=None) -> dict:
    """Data-dependent FSQ init (quantizer.calibrate) on n training clips, then the step-0 check that
    held-out clips give different tokens: distinct first tokens of step 0 among n held-out clips."""
    x = (source or ShapesClips()).fixed("calib", 2 * n, frames).to(next(vae.parameters()).device)
    z = torch.cat([vae.encode(x[i:i + 16]) for i in range(0, 2 * n, 16)]).float()
    calibrate(model.quantizer, model.encoder(z[:n]))
    _, idx = model.encode(z[n:])
    return {"distinct_first_token": int(idx[:, 0, 0].unique().numel()), "clips": n,
            "distinct_codes": int(idx.unique().numel())}


def freeze_encoder(model: FlexTokenizer) -> None:
    """Fix everything that decides the tokens (encoder, registers, FSQ projection and offsets); the
    decoder, the token embeddings it reads (proj_out), the mask and null tokens stay trainable."""
    model.encoder.requires_grad_(False)
    model.quantizer.proj_in.requires_grad_(False)
    model.quantizer.offset.requires_grad_(False)


def parse_overrides(items: list[str], base: dict) -> dict:
    """["time_mean=2.0", "levels=8,5,5,5"] -> typed values for the fields of base; unknown keys fail."""
    import typing

    hints = typing.get_type_hints(TokenizerConfig)

    def one(text: str, kind: type):
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        return kind(text)

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in base:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(base)}")
        old = base[key]
        try:
            if isinstance(old, (list, tuple)):  # its elements' type from the field's (an empty default has none)
                kind = (typing.get_args(hints.get(key)) or [type(old[0]) if old else int])[0]
                out[key] = [one(v, kind) for v in value.split(",")] if value else []
            else:
                out[key] = one(value, type(old))
        except (ValueError, TypeError):
            raise SystemExit(f"--set {item!r}: {value!r} is not a valid {type(old).__name__}") from None
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--vae", default=None,
                   help="VAE export folder, or a tokenizer folder for its VAE (default: with --init, its VAE; "
                        "else runs/vae/export)")
    p.add_argument("--preset", default="tiny", choices=list(TOKENIZER_CONFIGS))
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--repa", default="none", help="REPA feature model: none, vae (the stage-0 encoder trunk) or a "
                   "shapes-teacher folder (flexvid train-teacher)")
    p.add_argument("--repa-weight", type=float, default=0.5)
    p.add_argument("--latent-cache", type=int, default=0, help="train on the VAE latents of this many clips, "
                   "computed once (0: encode fresh clips every step); with --repa, the feature model's targets for the "
                   "same clips are cached beside them")
    p.add_argument("--init", default=None, help="start from this tokenizer folder's weights (fine-tuning, e.g. on a GPU)")
    p.add_argument("--data", default=None, metavar="FOLDER",
                   help="train on the videos under this folder (default: the shapes world), each of at least 17 frames "
                        "(or --frames, if longer) at --fps; see flexvid.video_data")
    p.add_argument("--size", type=int, default=64, help="with --data: clips are resized and centre-cropped to this")
    p.add_argument("--fps", type=float, default=8.0, help="with --data: the frame rate clips are resampled to")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="train the decoder side only (needs --init): the encoder and FSQ stay fixed, so every clip "
                        "keeps its tokens and generators trained on them stay valid")
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="override fields of the tokenizer config, e.g. --set time_mean=2.0 var_weight=0.5 (may be "
                        "given more than once)")
    TrainConfig.add_args(p, out_dir="runs/tokenizer", steps=4000, batch_size=16, lr=5e-4, min_lr=5e-5,
                         warmup=200, ema_decay=0.999, ckpt_every=250, eval_every=250)
    args = p.parse_args(argv)
    if not (args.fps > 0 and math.isfinite(args.fps)):
        raise SystemExit(f"--fps must be a positive number, got {args.fps}")
    if args.latent_cache < 0:
        raise SystemExit(f"--latent-cache must be >= 0, got {args.latent_cache}")
    if not (args.repa_weight >= 0 and math.isfinite(args.repa_weight)):  # NaN or < 0 turned REPA off unsaid
        raise SystemExit(f"--repa-weight must be a number >= 0, got {args.repa_weight}")
    tcfg = TrainConfig.from_args(args)
    tcfg.start()  # threads (the caches and checks before fit() run at it too) and the seed
    if args.freeze_encoder and not args.init:
        raise SystemExit("--freeze-encoder fine-tunes a trained tokenizer: give it --init")
    asked = parse_overrides(args.set, config_dict(TOKENIZER_CONFIGS[args.preset]))
    if args.data and asked.get("attr_weight", 0) > 0:  # said before the folder is decoded
        raise SystemExit("attr_weight asks the tokens for the shapes world's object attributes: not with --data")
    if not shapes.valid_length(args.frames):
        raise SystemExit(f"--frames must be 1 + 4n (1, 5, 9, 13, 17, ...), got {args.frames}")
    # every setting checked, and the VAE read, before a --data folder is decoded (minutes for a big one)
    vae_from_init = args.vae is None and args.init is not None
    if vae_from_init:
        try:
            fmt = read_json(os.path.join(args.init, "config.json")).get("format")
        except ValueError as e:
            raise SystemExit(f"--init {args.init}: {e}") from None
        if fmt != "flexvid-tokenizer":
            raise SystemExit(f"--init {args.init} is not a tokenizer folder (config.json format {fmt!r}); give a "
                             "tokenizer folder (OUT_DIR/export of a train-tokenizer run), or --vae for its VAE")
    args.vae = args.vae or args.init or "runs/vae/export"
    if not os.path.isfile(os.path.join(args.vae, "config.json")):
        raise SystemExit(f"--vae {args.vae}: no config.json there; give the export folder of a `flexvid train-vae` "
                         "run (OUT_DIR/export) or a tokenizer folder")
    if args.data:
        from .video_data import check_folder
        check_folder(args.data)  # no folder, no videos: said before any model is built
    vae = load_vae(args.vae)
    if args.init and os.path.realpath(args.init) != os.path.realpath(args.vae):
        try:
            init_vae = encoder_fingerprint(load_vae(args.init))
        except (OSError, ValueError, KeyError):  # not a tokenizer folder: said below, where its weights are read
            init_vae = None
        if init_vae is not None and init_vae != encoder_fingerprint(vae):
            if args.freeze_encoder:
                raise SystemExit(f"--freeze-encoder keeps every clip's tokens, but --vae {args.vae} encodes clips "
                                 f"unlike the VAE of --init {args.init} (encoder {encoder_fingerprint(vae)} against "
                                 f"{init_vae}): leave --vae out to keep --init's")
            print(f"note: --vae {args.vae} is not the VAE --init {args.init} was trained on: its latents differ, "
                  "so every token will change (generators trained on its tokens will not fit)", flush=True)
    size = args.size if args.data else shapes.SIZE
    if size % (vae.cfg.spatial_factor * TOKENIZER_CONFIGS[args.preset].patch):
        raise SystemExit(f"--size {size} is not a multiple of the VAE's factor {vae.cfg.spatial_factor} times "
                         f"the patch {TOKENIZER_CONFIGS[args.preset].patch}")
    run = {**data_identity(args.data, size, args.fps if args.data else shapes.FPS),
           "vae_encoder": encoder_fingerprint(vae)}
    try:
        check_resume(tcfg.out_dir, run, tcfg)
    except ValueError as e:
        if vae_from_init and "vae_encoder" in str(e):
            raise ValueError(f"{e} (--vae, left out, is --init's VAE: a run started with another --vae needs it "
                             "given again)") from None
        if "vae_encoder" in str(e):  # the fingerprints alone do not say which folder
            own = os.path.join(tcfg.out_dir, "export")
            hint = (f"; the run's own export carries the VAE it started with: --vae {own}"
                    if os.path.isfile(os.path.join(own, "config.json")) else "")
            raise ValueError(f"{e} (vae_encoder: the VAE's encoder weights; --vae {args.vae} is not the VAE the run "
                             f"started with: a VAE folder trained again since, or another one{hint})") from None
        raise
    source = training_source(args.data, args.frames, args.size, args.fps)
    base = config_dict(TOKENIZER_CONFIGS[args.preset])
    z, t_max = vae.cfg.z_channels, 1 + (args.frames - 1) // vae.cfg.temporal_factor
    base.update(z_channels=z, latent_size=source.size // vae.cfg.spatial_factor, max_t=max(base["max_t"], t_max))
    feature_model = None
    if not source.labelled and args.repa not in ("none", "vae"):
        raise SystemExit("a shapes teacher knows the shapes world only: with --data, use --repa vae or none")
    if args.repa != "none":
        feature_model = feature_model_for(args.repa, vae, base)
        base["repa_dim"] = feature_model.dim
    if args.init:
        init_cfg = read_json(os.path.join(args.init, "config.json")).get("tokenizer")
        if not isinstance(init_cfg, dict):
            raise ValueError(f"--init {args.init} is not a tokenizer folder (its config.json has no tokenizer part)")
        base.update({k: v for k, v in init_cfg.items() if k not in ("repa_dim",)})
    base.update(parse_overrides(args.set, base))
    if base["latent_size"] * vae.cfg.spatial_factor != source.size:
        raise SystemExit(f"the model is for {base['latent_size'] * vae.cfg.spatial_factor} px clips, the data are "
                         f"{source.size} px (--size)")
    if base["attr_weight"] > 0 and not source.labelled:
        raise SystemExit("attr_weight asks the tokens for the shapes world's object attributes: not with --data")
    if base["attr_weight"] > 0 and not base["attr_classes"]:  # the shapes world's main-object attributes
        base["attr_classes"] = [len(names) for names in shapes.ATTRIBUTES.values()]
        base["attr_temporal"] = [name == "motion" for name in shapes.ATTRIBUTES]
    cfg = TokenizerConfig(**base)
    model = FlexTokenizer(cfg)
    new_head = cfg.attr_weight > 0
    if args.init:
        weights = os.path.join(args.init, "tokenizer.safetensors")
        try:
            state = load_file(weights)
        except Exception as e:  # missing, cut short or not safetensors
            raise ValueError(f"--init {args.init}: {weights} is not a readable safetensors file ({e})") from None
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not name.startswith(("repa_head.", "attr_head.")) for name in missing):
            raise SystemExit(f"--init {args.init} does not match the model: missing {missing}, unexpected {unexpected}")
        new_head = new_head and any(name.startswith("attr_head.") for name in missing)
        print(f"initialised from {args.init}")
    elif not os.path.exists(os.path.join(tcfg.out_dir, "ckpt.pt")):  # a resumed run loads its own FSQ state
        print(f"step-0 token check: {calibrate_on_clips(model, vae, args.frames, source=source)}")
    if args.freeze_encoder:
        freeze_encoder(model)
    vae.to(torch.device("cuda") if tcfg.device == "auto" and torch.cuda.is_available() else tcfg.device if tcfg.device != "auto" else "cpu")

    if args.latent_cache:
        z = latent_cache(vae, os.path.join(tcfg.out_dir, f"latents_{args.frames}f.safetensors"), args.latent_cache,
                         args.frames, source=source)
        feats, attrs = None, None
        if cfg.attr_weight > 0:
            attrs = shapes.attribute_labels(shapes.SPLIT_SEEDS["train"], range(z.shape[0]))
        if feature_model is not None:
            feats = feature_cache(feature_model, feature_model_id(args.repa),
                                  os.path.join(tcfg.out_dir, f"repa_{args.frames}f.safetensors"), args.latent_cache,
                                  args.frames, source=source)
        batches = cached_batches(z, tcfg.batch_size, feats, attrs)
    elif cfg.attr_weight > 0:
        batches = attribute_batches(args.frames)
    else:
        def batches(start, b, rank, world):
            return source.stream(b, args.frames, start * tcfg.batch_size, rank, world)

    if new_head and args.init and not os.path.exists(os.path.join(tcfg.out_dir, "ckpt.pt")):
        # a trained encoder and a new head: the head first learns what the first tokens already say
        if args.latent_cache:
            z_fit, y_fit = z[:4096], attrs[:4096]
        else:
            seed = shapes.SPLIT_SEEDS["train"]
            x = torch.stack([shapes.to_tensor(shapes.make_clip(seed, i, args.frames).video) for i in range(1024)])
            dev = next(vae.parameters()).device
            with torch.no_grad():
                z_fit = torch.cat([vae.encode(x[i:i + 16].to(dev)).float().cpu() for i in range(0, len(x), 16)])
            y_fit = shapes.attribute_labels(seed, range(1024))
        accs = fit_attribute_head(model, z_fit, y_fit)
        print(f"attribute head fitted to the first tokens: held-out accuracy "
              f"{dict(zip(shapes.ATTRIBUTES, accs))}", flush=True)

    def on_checkpoint(ema, step):
        VideoFlexTok(vae, ema, fps=source.fps, device=next(vae.parameters()).device).save_pretrained(
            os.path.join(tcfg.out_dir, "export"))
        ema.train(False)

    ema = fit(model, lambda m, batch, rand: tokenizer_loss(m, batch, rand, vae, cfg, feature_model, args.repa_weight),
              batches, tcfg, model_config=config_dict(cfg), eval_fn=lambda m, s: quick_eval(vae, m, source=source),
              on_checkpoint=on_checkpoint, run=run)
    announce(tcfg.out_dir)
    return ema


if __name__ == "__main__":  # python -m / torchrun -m: errors in one line, as the flexvid command
    from flexvid.cli import run_module
    run_module("train-tokenizer")
