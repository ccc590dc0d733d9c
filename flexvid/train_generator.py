"""Stage 2 training: a class- or text-conditioned generator on token grids of the shapes world.

The tokenizer is frozen, so every clip is tokenized once: N training clips (17 frames, 5 steps), some
long ones (81 frames, 21 steps) and a validation set are encoded and saved with their labels, captions
and, for text models, caption embeddings in <out-dir>/tokens.safetensors, reused while the tokenizer
is the same. Each step then draws one budget k for the batch (powers of two up to K: nested budgets,
like the tokenizer's nested dropout), keeps the first k tokens of every step, drops conditions to the
null one with p_null (guidance), and minimises next-token cross-entropy. Sequences longer than
--max-tokens keep their first whole steps, so 81-frame clips train at every k at a bounded cost.

Evaluation: validation loss at k = 1, 4 and K, and a probe of sampled videos (colour, shape, motion of
the main object; size too for text), because a loss says nothing about whether the class comes out.

    flexvid train-generator --cond class --tokenizer assets/tokenizer --out-dir runs/generator-class
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import string
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm import tqdm

from . import probe, sampling, shapes
from .cli import HelpFormatter
from .generate import DEFAULT_TOKENIZER, save_generator
from .generator import GENERATOR_CONFIGS, Generator, GeneratorConfig
from .hub import config_dict, load_weights, read_json, save_safetensors
from .pipeline import VideoFlexTok
from .quantizer import sample_k
from .text import DEFAULT_TEXT_MODEL, TextEncoder
from .training import TrainConfig, announce, bf16_native, check_resume, fit, init_distributed

LONG_INDEX = 5_000_000  # long clips come from another index range of the training seed
# GeneratorConfig's sampling defaults, chosen on validation prompts after training; --init keeps them
SAMPLER_FIELDS = ("temperature", "top_k", "top_p", "guidance", "decode_guidance")


# ----------------------------------------------------------------------------- caption variants
# Text models also train on rewordings of each caption, so that they learn to read the meaning of a
# prompt through the text encoder rather than one caption template. The words here are disjoint from
# those that `eval_generator`'s paraphrase test uses (tests check it), so that test still measures
# wording the model has never seen.
TRAIN_SIZE_WORDS = {"small": ("small", "miniature", "compact"), "large": ("large", "enormous", "massive")}
TRAIN_SHAPE_WORDS = {"circle": ("circle", "round dot", "sphere"), "square": ("square", "cube", "quadrilateral"),
                     "triangle": ("triangle", "pyramid", "three-sided shape")}
TRAIN_MOTION_WORDS = {
    "left": ("moving left", "travelling left", "moving towards the left", "shifting left"),
    "right": ("moving right", "travelling right", "moving towards the right", "shifting right"),
    "up": ("moving up", "ascending", "climbing", "moving towards the top"),
    "down": ("moving down", "descending", "dropping", "moving towards the bottom"),
    "still": ("standing still", "motionless", "stationary", "resting"),
}
TRAIN_TEMPLATES = ("a {size} {color} {shape} {motion}", "video of a {size} {color} {shape} {motion}",
                   "the {size} {color} {shape} is {motion}", "a {color} {shape}, {size}, {motion}")
_OBJECT = re.compile(r"a (\w+) (\w+) (\w+) (?:moving (\w+)|standing (still))")


def caption_objects(caption: str) -> list[dict]:
    """The objects a shapes-world caption names, in order: [{size, color, shape, motion}]."""
    objs = [dict(size=m[0], color=m[1], shape=m[2], motion=m[3] or m[4]) for m in _OBJECT.findall(caption)]
    if not objs:
        raise ValueError(f"not a shapes-world caption: {caption!r}")
    return objs


def caption_variant(caption: str, rng: np.random.Generator) -> str:
    """The caption reworded with the training vocabulary: a template and synonyms per object, drawn by rng."""
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    return " and ".join(pick(TRAIN_TEMPLATES).format(
        size=pick(TRAIN_SIZE_WORDS[o["size"]]), color=o["color"], shape=pick(TRAIN_SHAPE_WORDS[o["shape"]]),
        motion=pick(TRAIN_MOTION_WORDS[o["motion"]])) for o in caption_objects(caption))


def caption_vocabulary() -> frozenset[str]:
    """Every word a text generator's training captions use: the shapes world's captions ("a large red
    circle moving left and ...") and their rewordings (TRAIN_TEMPLATES and the synonyms above)."""
    words = {"a", "and", "moving", "standing", "still", *shapes.COLOR_NAMES, *shapes.SIZES, *shapes.SHAPES,
             *shapes.MOTIONS}
    for text in (*TRAIN_TEMPLATES, *(w for table in (TRAIN_SIZE_WORDS, TRAIN_SHAPE_WORDS, TRAIN_MOTION_WORDS)
                                     for options in table.values() for w in options)):
        words.update(re.findall(r"[a-z]+", re.sub(r"\{\w+\}", " ", text.lower())))
    return frozenset(words)


def unseen_words(prompt: str) -> list[str]:
    """The words of a prompt that no training caption uses, in order, once each (a text generator reads
    them through its text encoder only, which may or may not place them near a word it knows)."""
    vocab, out = caption_vocabulary(), []
    for w in re.findall(r"[^\W\d_]+", prompt.lower()):
        if w not in vocab and w not in out:
            out.append(w)
    for sym in re.findall(r"[^\w\s]+", prompt):  # emoji and other symbols, which no caption has either
        sym = sym.strip(string.punctuation)
        if sym and sym not in out:
            out.append(sym)
    return out


# ----------------------------------------------------------------------------- token cache
# What decides no token: the decoders, their training and their sampler. A tokenizer that differs from
# another only there (a decoder-only fine-tune, `train-tokenizer --freeze-encoder`, or new sampler
# defaults) gives every clip the same tokens, so its caches stay valid.
DECODER_ONLY_FIELDS = frozenset({"dec_dim", "dec_layers", "dec_heads", "nested_dropout", "nested_decay", "p_null",
                                 "p_prefix", "time_mean", "time_std", "var_weight", "var_target", "repa_layer",
                                 "repa_dim", "detail_weight", "pixel_weight", "pixel_clips", "attr_weight",
                                 "attr_classes", "attr_temporal", "sample_steps", "guidance", "guidance_mode",
                                 "noise_scale"})
VAE_DECODER_PREFIXES = ("dec_in.", "decoder.", "dec_out.")
TOKENIZER_ENCODER_PREFIXES = ("encoder.", "quantizer.offset", "quantizer.proj_in.", "quantizer.fsq.")


def fingerprint(pipe: VideoFlexTok) -> str:
    """Hash of what decides the tokens (the VAE's encoder and latent statistics, the tokenizer's encoder,
    registers and FSQ, and their configs): a cache made with a tokenizer that encodes otherwise is stale."""
    h = hashlib.sha256()
    for module, keep in ((pipe.vae, lambda n: not n.startswith(VAE_DECODER_PREFIXES)),
                         (pipe.tokenizer, lambda n: n.startswith(TOKENIZER_ENCODER_PREFIXES))):
        cfg = {k: v for k, v in config_dict(module.cfg).items() if k not in DECODER_ONLY_FIELDS}
        h.update(json.dumps(cfg, sort_keys=True).encode())
        for name, v in module.state_dict().items():
            if keep(name):
                h.update(name.encode())
                h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def tokenize_clips(pipe: VideoFlexTok, seed: int, base: int, n: int, frames: int, batch: int | None = None):
    """Clips (seed, base + i, frames) -> tokens (n, t, K) int32, labels (n,), captions. Batches of up to
    pipe.max_batch clips (a GPU pipeline built with a large one is not launch-bound) and about 1,088 frames
    (64 clips of 17 frames: what the rendering workers hold stays bounded)."""
    batch = batch or max(1, min(pipe.max_batch, 1088 // frames))
    tokens, labels, captions = [], [], []
    t0 = time.time()
    for videos, lab, cap in tqdm(shapes.clip_batches(seed, base, n, frames, batch),
                                 desc=f"tokenizing {n} clips of {frames} frames", leave=False):
        tokens += [g.int().cpu() for g in pipe.tokenize(videos)]
        labels += lab.tolist()
        captions += list(cap)
    print(f"tokenized {n} clips of {frames} frames in {time.time() - t0:.0f} s", flush=True)
    return torch.stack(tokens), torch.tensor(labels), captions


@torch.no_grad()
def tokens_from_latents(pipe: VideoFlexTok, latents: torch.Tensor, seed: int, base: int, batch: int = 256):
    """What tokenize_clips returns for clips (seed, base + i), i < len(latents), from their normalised VAE
    latents (n, C, t, h, w) (`train_tokenizer.latent_cache`, made by this pipeline's VAE): the
    tokenizer's encoder alone, no rendering and no VAE pass; labels and captions from the clips' metadata.
    Up to rounding: the cache holds fp16 latents (encoded under bf16 autocast where the device has it), so a
    few percent of the tokens can land on a neighbouring FSQ code (2.45% of the 64 test clips' tokens against
    fp32 `tokenize` on a bf16-capable CPU, 0.05% from the fp16 storage alone)."""
    t0 = time.time()
    tokens = []
    for i in range(0, len(latents), batch):
        with pipe._autocast():
            _, idx = pipe.tokenizer.encode(latents[i:i + batch].to(pipe.device, torch.float32))
        tokens.append(idx.int().cpu())
    clips = [shapes.Clip(None, shapes.clip_objects(seed, base + i), seed, base + i) for i in range(len(latents))]
    print(f"tokenized {len(latents)} clips from their latents in {time.time() - t0:.0f} s", flush=True)
    return torch.cat(tokens), torch.tensor([c.label for c in clips]), [c.caption for c in clips]


def embed_captions(text_encoder: TextEncoder, caps: list[str]) -> torch.Tensor:
    """Embeddings of captions (n, *text_encoder.shape), each distinct caption encoded once. Word-piece
    embeddings are kept in float16 (they are many; the generator casts them back)."""
    unique = sorted(set(caps))
    emb = torch.cat([text_encoder(unique[i:i + 256]) for i in range(0, len(unique), 256)])
    if getattr(text_encoder, "tokens", 0):
        emb = emb.half()
    row = {c: i for i, c in enumerate(unique)}
    return emb[torch.tensor([row[c] for c in caps])].contiguous()


def text_key(text_encoder: TextEncoder) -> str:
    """What the cached text embeddings were made with: the model and, for word pieces, how many."""
    n = getattr(text_encoder, "tokens", 0)
    return text_encoder.model_name + (f"#tokens={n}" if n else "")


def token_cache(path: str, pipe: VideoFlexTok, groups: dict, text_encoder: TextEncoder | None = None,
                variants: int = 0, latents: dict | None = None) -> dict:
    """Load or build the cache: {group: {"tokens", "labels", "captions"[, "text", "text_variants"]}}.

    groups: {name: (split, base index, clips, frames)}. A group is reused when the tokenizer fingerprint
    and its spec match; asked for more clips of the same split, base and length, it keeps the clips it has
    and tokenizes (and embeds) only the new ones; asked for fewer, it keeps the first. Text embeddings are added when a text encoder is given, and with variants > 0
    the embeddings of that many rewordings per caption (`caption_variant`, a fixed seed) for the groups
    from the training split, as "text_variants" (n, variants, D). latents: {group: normalised VAE latents
    of its clips, row i the clip base + i} for groups whose clips are tokenized from cached latents
    (`tokens_from_latents`: a latent cache serves the generators too); it must cover the group's clips."""
    fp = fingerprint(pipe)
    tensors, meta = {}, {"format": "flexvid-token-cache", "fingerprint": fp, "groups": {}, "captions": {}}
    if os.path.exists(path):
        from safetensors import safe_open
        try:
            with safe_open(path, "pt") as f:
                old = f.metadata() or {}
            if old.get("fingerprint") == fp:
                tensors = load_file(path)
        except Exception as e:  # cut short or not safetensors: built anew
            print(f"{path} is unreadable ({type(e).__name__}): rebuilding it")
            old, tensors = {"fingerprint": None, "unreadable": True}, {}
        if old.get("fingerprint") == fp:
            meta["groups"], meta["captions"] = json.loads(old["groups"]), json.loads(old["captions"])
            meta["text_model"] = old.get("text_model", "")
        elif not old.get("unreadable"):
            print(f"{path} was made with another tokenizer: rebuilding it")
    changed = False
    out = {}
    for name, spec in groups.items():
        split, base, n, frames = spec
        old_spec = meta["groups"].get(name)
        if old_spec != list(spec):
            # the clips are a function of (split, index, frames): a cache of the same clips keeps its
            # first rows, and a larger one is only extended with the clips it lacks
            same = old_spec is not None and (old_spec[0], old_spec[1], old_spec[3]) == (split, base, frames)
            m = min(old_spec[2], n) if same else 0
            keep = {f"{name}.{key}": tensors[f"{name}.{key}"][:m]
                    for key in ("tokens", "labels", "text", "text_variants") if m and f"{name}.{key}" in tensors}
            for key in ("tokens", "labels", "text", "text_variants"):
                tensors.pop(f"{name}.{key}", None)
            tensors.update(keep)
            captions = meta["captions"][name][:m] if m else []
            if n > m:
                if latents and name in latents:
                    if len(latents[name]) < n or latents[name].shape[2] != 1 + (frames - 1) // pipe.vae.cfg.temporal_factor:
                        raise ValueError(f"latents for group {name!r} must cover its {n} clips of {frames} frames, "
                                         f"got shape {tuple(latents[name].shape)}")
                    tok, lab, cap = tokens_from_latents(pipe, latents[name][m:n], shapes.SPLIT_SEEDS[split], base + m)
                else:
                    tok, lab, cap = tokenize_clips(pipe, shapes.SPLIT_SEEDS[split], base + m, n - m, frames)
                tensors[f"{name}.tokens"] = torch.cat([keep[f"{name}.tokens"], tok]) if m else tok
                tensors[f"{name}.labels"] = torch.cat([keep[f"{name}.labels"], lab]) if m else lab
                captions += cap
            meta["captions"][name] = captions
            meta["groups"][name] = list(spec)
            changed = True
        captions = meta["captions"][name]
        if text_encoder is not None:
            have = tensors.get(f"{name}.text")
            if have is None or meta.get("text_model") != text_key(text_encoder):
                have = None
                tensors.pop(f"{name}.text_variants", None)
            if have is None or len(have) < n:  # embed only the captions without an embedding
                done = 0 if have is None else len(have)
                emb = embed_captions(text_encoder, captions[done:])
                tensors[f"{name}.text"] = emb if have is None else torch.cat([have, emb])
                changed = True
        want = variants if text_encoder is not None and spec[0] == "train" else 0
        have = tensors.get(f"{name}.text_variants")
        if have is not None and have.shape[1] != want:
            have = None
        if want and (have is None or len(have) < n):
            rng = np.random.default_rng(1234)  # the same rewordings for a caption's row whatever n is
            caps = [caption_variant(c, rng) for c in captions for _ in range(want)]
            done = 0 if have is None else len(have)
            emb = embed_captions(text_encoder, caps[done * want:])
            emb = emb.view(len(emb) // want, want, *emb.shape[1:])
            tensors[f"{name}.text_variants"] = emb if have is None else torch.cat([have, emb])
            changed = True
        out[name] = {"tokens": tensors[f"{name}.tokens"].long(), "labels": tensors[f"{name}.labels"],
                     "captions": captions, "text": tensors.get(f"{name}.text"),
                     "text_variants": tensors.get(f"{name}.text_variants") if want else None}
    if text_encoder is not None:
        meta["text_model"] = text_key(text_encoder)
    if changed:
        save_safetensors(tensors, path,
                         metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    return out


def check_cache_of_resumed_run(out_dir: str, tokens_of: str) -> None:
    """A checkpoint written before checkpoints recorded their run ("run" in training.fit) cannot say which
    tokenizer it trained on; its folder's token cache can. Resuming it with another tokenizer is refused
    here, before that cache would be rebuilt for the other tokens."""
    from safetensors import safe_open
    from .training import load_checkpoint
    ckpt, cache = os.path.join(out_dir, "ckpt.pt"), os.path.join(out_dir, "tokens.safetensors")
    if not (os.path.exists(ckpt) and os.path.exists(cache)) or load_checkpoint(ckpt, mmap=True).get("run"):
        return
    try:
        with safe_open(cache, "pt") as f:
            made_with = (f.metadata() or {}).get("fingerprint")
    except Exception:  # noqa: BLE001 - a cut-short cache says nothing; token_cache rebuilds it
        return
    if made_with and made_with != tokens_of:
        raise ValueError(f"{ckpt} was trained on the tokens of another tokenizer (fingerprint {made_with}, this "
                         f"one's {tokens_of}): resume with the tokenizer that wrote it, or use another --out-dir")


def training_groups(clips: int, long_clips: int, val_clips: int, first_clip: int = 0) -> dict:
    """The cache's groups for a run: {name: (split, base index, clips, frames)}. Training clips are
    first_clip ... first_clip + clips - 1 of the training split (long ones from LONG_INDEX + first_clip);
    validation clips are always the first of the validation split, so runs stay comparable."""
    groups = {"train": ("train", first_clip, clips, 17), "val": ("val", 0, val_clips, 17)}
    if long_clips:
        groups["long"] = ("train", LONG_INDEX + first_clip, long_clips, 81)
    return groups


# ----------------------------------------------------------------------------- loss and evaluation
def draw_k(rand, K: int, mode: str) -> int:
    """One k for the whole global batch, from the step's shared generator (the same on every rank)."""
    return int(sample_k(torch.rand(1, generator=rand.gen), K, mode)[0])


def generator_loss(model, batch, rand, cfg: GeneratorConfig, max_tokens: int):
    tokens, cond = batch[0].to(rand.device), batch[1].to(rand.device)  # (B, t, K), (B,) or (B, *text_shape)
    if cond.is_floating_point():
        cond = cond.float()
    k = draw_k(rand, cfg.K, cfg.nested)
    t = min(tokens.shape[1], max(1, max_tokens // k))  # crop long sequences to whole steps
    x = tokens[:, :t, :k]  # (B, t, k): the budget's sequence, nothing else
    null = rand.rand(x.shape[0]) < cfg.p_null
    logits = model(x, cond, null)  # (B, t*k, C)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), x.flatten())
    return loss, {"k": k, "t": t}


def condition_of(group: dict, cfg: GeneratorConfig) -> torch.Tensor:
    return group["labels"] if cfg.cond == "class" else group["text"]


@torch.no_grad()
def validation_loss(model: Generator, group: dict, ks, batch: int = 64) -> dict:
    device = next(model.parameters()).device
    cond_all = condition_of(group, model.cfg)
    out = {}
    for k in ks:
        tot, n = 0.0, 0
        for a in range(0, len(group["tokens"]), batch):
            x = group["tokens"][a:a + batch, :, :k].to(device)
            c = cond_all[a:a + batch].to(device)
            logits = model(x, c.float() if c.is_floating_point() else c)
            tot += F.cross_entropy(logits.flatten(0, 1), x.flatten(), reduction="sum").item()
            n += x.numel()
        out[f"val_loss_k{k}"] = round(tot / n, 4)
    return out


@torch.no_grad()
def probe_samples(model: Generator, pipe: VideoFlexTok, group: dict, n: int, ks, frames: int = 17,
                  decode_steps: int = 10, seed: int = 0) -> dict:
    """Sample n videos for the first n validation conditions and read their attributes back."""
    device = next(model.parameters()).device
    cfg = model.cfg
    clips = shapes.fixed_split("val", n, frames)
    cond = condition_of(group, cfg)[:n].to(device)
    cond = cond.float() if cond.is_floating_point() else cond
    t = 1 + (frames - 1) // 4
    attrs = ("color", "shape", "motion") if cfg.cond == "class" else ("color", "shape", "size", "motion")
    out = {}
    for k in ks:
        grids = sampling.generate(model, cond, t, k, guidance=cfg.guidance,
                                  generator=torch.Generator(device).manual_seed(seed))
        full = torch.zeros(n, t, cfg.K, dtype=torch.long)
        full[:, :, :k] = grids.cpu()
        videos = pipe.detokenize(list(full), k=k, steps=decode_steps, seed=seed)
        rows = [probe.score_clip(v, c) for v, c in zip(videos, clips)]
        for a in attrs:
            out[f"probe_k{k}_{a}"] = round(sum(r[a] for r in rows) / n, 3)
        out[f"probe_k{k}_all"] = round(sum(all(r[a] for a in attrs) for r in rows) / n, 3)
    model.clear_caches()
    return out


# ----------------------------------------------------------------------------- main
def _file_digest(path: str) -> str:
    """A short hash of a file's bytes: the same samples wherever the file lies."""
    digest = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--cond", default="class", choices=["class", "text"])
    p.add_argument("--tokenizer", default=DEFAULT_TOKENIZER,
                   help="tokenizer folder or Hugging Face repo id (default: the embedded assets/tokenizer)")
    p.add_argument("--preset", default="tiny", choices=list(GENERATOR_CONFIGS))
    p.add_argument("--text-model", default=DEFAULT_TEXT_MODEL, help="text encoder (text models)")
    p.add_argument("--clips", type=int, default=4096, help="17-frame training clips to tokenize")
    p.add_argument("--long-clips", type=int, default=512, help="81-frame training clips to tokenize (0: none)")
    p.add_argument("--first-clip", type=int, default=0,
                   help="index of the first training clip, 17- and 81-frame alike (a later round can train on "
                        "clips no earlier round saw)")
    p.add_argument("--long-frac", type=float, default=0.25, help="fraction of batches drawn from the long clips")
    p.add_argument("--max-tokens", type=int, default=160, help="tokens per training sequence (longer: cropped)")
    p.add_argument("--val-clips", type=int, default=128)
    p.add_argument("--probe-clips", type=int, default=16, help="sampled videos probed at each evaluation (0: off)")
    p.add_argument("--probe-steps", type=int, default=10, help="decoder Euler steps for the probe")
    p.add_argument("--p-null", type=float, default=None, help="condition dropout for guidance (default: preset)")
    p.add_argument("--caption-variants", type=int, default=0,
                   help="text models: rewordings per training caption, embedded once (0: captions only)")
    p.add_argument("--text-tokens", type=int, default=None,
                   help="text models: condition on this many word-piece embeddings (0: one sentence embedding; "
                        "default: --init's, else 0)")
    p.add_argument("--init", default=None,
                   help="start from this generator folder's weights (same preset and condition), e.g. after the "
                        "tokenizer changed: the tokens are learned anew, what it knows of the conditions is kept; "
                        "its sampler defaults (temperature, top-k, top-p, guidance, decode guidance) go to the export")
    p.add_argument("--p-variant", type=float, default=0.5,
                   help="text models: fraction of training clips conditioned on a rewording instead of the caption")
    p.add_argument("--selected", default=None,
                   help="reranked samples (flexvid select-samples) to fine-tune on, mixed with the cached clips")
    p.add_argument("--p-selected", type=float, default=0.25,
                   help="with --selected: fraction of batches drawn from the selected samples")
    # defaults: the tiny preset in about 30 minutes on one CPU core (about 0.65 s per step of 32 clips)
    TrainConfig.add_args(p, helps={"out_dir": "run folder"}, out_dir="runs/generator-COND", steps=2500,
                         batch_size=32, lr=1e-3, min_lr=1e-4, warmup=200,
                         ema_decay=0.999, ckpt_every=250, eval_every=500, weight_decay=0.1)
    args = p.parse_args(argv)
    if args.out_dir == "runs/generator-COND":  # the default, by the condition trained
        args.out_dir = f"runs/generator-{args.cond}"
    tcfg = TrainConfig.from_args(args)
    tcfg.start()  # threads and the seed, before the model is built
    for name, v, lo in (("clips", args.clips, 1), ("long-clips", args.long_clips, 0), ("first-clip", args.first_clip, 0),
                        ("val-clips", args.val_clips, 1),
                        ("probe-clips", args.probe_clips, 0), ("max-tokens", args.max_tokens, 1)):
        if v < lo:
            raise ValueError(f"--{name} must be >= {lo}, got {v}")
    if args.first_clip + args.clips > LONG_INDEX:
        raise ValueError(f"--first-clip + --clips must be at most {LONG_INDEX:,} (where the long clips begin), "
                         f"got {args.first_clip + args.clips:,}")
    if not 1 <= args.probe_steps <= 1000:
        raise ValueError(f"--probe-steps must be in [1, 1000], got {args.probe_steps}")
    if args.probe_clips > args.val_clips:
        raise ValueError(f"--probe-clips {args.probe_clips} exceeds --val-clips {args.val_clips}")
    for name, v in (("long-frac", args.long_frac), ("p-variant", args.p_variant), ("p-selected", args.p_selected)):
        if not 0 <= v <= 1:
            raise ValueError(f"--{name} must be in [0, 1], got {v}")
    if args.text_tokens and args.cond != "text":
        raise ValueError("--text-tokens is for text models (--cond text)")
    if args.text_tokens is not None and args.text_tokens < 0:
        raise ValueError(f"--text-tokens must be >= 0, got {args.text_tokens}")
    if args.caption_variants < 0:
        raise ValueError(f"--caption-variants must be >= 0, got {args.caption_variants}")
    init_cfg = None
    if args.init:  # checked before any work
        init_cfg = read_json(os.path.join(args.init, "config.json")).get("generator")
        if not isinstance(init_cfg, dict):
            raise ValueError(f"--init {args.init} is not a generator folder (its config.json has no generator part)")
        if init_cfg.get("cond") != args.cond:
            raise ValueError(f"--init {args.init}: a {init_cfg.get('cond')!r} generator, this run trains {args.cond!r}")
        preset = config_dict(GENERATOR_CONFIGS[args.preset])
        other = [f"{f} {init_cfg.get(f)} (the {args.preset} preset: {preset[f]})"
                 for f in ("dim", "n_layers", "n_heads") if init_cfg.get(f) != preset[f]]
        if other:
            raise ValueError(f"--init {args.init} is not a --preset {args.preset} model: " + ", ".join(other))
        if args.text_tokens is None:  # its conditioning: a sentence embedding or that many word pieces
            args.text_tokens = int(init_cfg.get("text_tokens") or 0)
        elif args.text_tokens != int(init_cfg.get("text_tokens") or 0):
            raise ValueError(f"--init {args.init} reads {init_cfg.get('text_tokens') or 0} word pieces of a prompt "
                             f"(0: a sentence embedding), not --text-tokens {args.text_tokens}")
    args.text_tokens = args.text_tokens or 0
    selected = None
    if args.selected:  # checked before any work
        from .select_samples import load_selected
        selected = load_selected(args.selected)
        if selected["cond"] != args.cond:
            raise ValueError(f"--selected {args.selected}: samples of a {selected['cond']!r} generator, "
                             f"this run trains {args.cond!r}")
    rank, world, _ = init_distributed()
    device = "cuda" if tcfg.device == "auto" and torch.cuda.is_available() else ("cpu" if tcfg.device == "auto" else tcfg.device)
    bf16 = tcfg.bf16 and bf16_native(torch.device(device))
    pipe = VideoFlexTok.from_pretrained(args.tokenizer, device=device, dtype="bf16" if bf16 else "fp32")
    if pipe.size != shapes.SIZE or float(pipe.fps) != float(shapes.FPS):
        raise ValueError(f"--tokenizer {args.tokenizer} takes {pipe.size} px clips at {pipe.fps:g} fps; the generators "
                         f"train on the shapes world's classes and captions, {shapes.SIZE} px at {shapes.FPS} fps")
    if args.init and (init_cfg.get("K"), init_cfg.get("codebook_size")) != (pipe.n_tokens, pipe.codebook_size):
        raise ValueError(f"--init {args.init} writes K={init_cfg.get('K')} tokens per step of "
                         f"{init_cfg.get('codebook_size')} codes; --tokenizer {args.tokenizer} has K={pipe.n_tokens} "
                         f"and {pipe.codebook_size} codes")  # before the token cache
    tokens_of = fingerprint(pipe)
    # what the run trains on and how: a resume with other data or sampling would train one model on two runs
    # (not --clips and --long-clips: a run resumed with more keeps its clips and tokenizes only the new ones)
    p_null = args.p_null if args.p_null is not None else config_dict(GENERATOR_CONFIGS[args.preset])["p_null"]
    run = {"tokenizer_fingerprint": tokens_of, "cond": args.cond, "first_clip": args.first_clip,
           "long_frac": args.long_frac, "max_tokens": args.max_tokens,
           "p_null": p_null, "caption_variants": args.caption_variants, "p_variant": args.p_variant,
           "selected": _file_digest(args.selected) if args.selected else None, "p_selected": args.p_selected,
           **({"text_model": args.text_model, "text_tokens": args.text_tokens} if args.cond == "text" else {})}
    check_resume(tcfg.out_dir, run, tcfg)  # before the token cache, which another tokenizer would rebuild
    check_cache_of_resumed_run(tcfg.out_dir, tokens_of)
    if pipe.device.type == "cuda":
        pipe.max_batch = 256  # the token cache in big batches: 16 clips a call leave a GPU launch-bound
    if selected is not None:  # before the token cache, which can take a while to build
        if selected["meta"].get("tokenizer_fingerprint") != tokens_of:
            raise ValueError(f"--selected {args.selected} holds grids of another tokenizer than {args.tokenizer}")
        if selected["tokens"].shape[-1] != pipe.n_tokens:
            raise ValueError(f"--selected {args.selected}: grids of {selected['tokens'].shape[-1]} tokens per step, "
                             f"the tokenizer has {pipe.n_tokens}")
        if selected["meta"].get("k", pipe.n_tokens) != pipe.n_tokens:
            raise ValueError(f"--selected {args.selected}: grids sampled at k = {selected['meta']['k']}, not the full "
                             f"budget {pipe.n_tokens} (their later tokens are padding, not samples)")
    base = config_dict(GENERATOR_CONFIGS[args.preset])
    base.update(cond=args.cond, K=pipe.n_tokens, codebook_size=pipe.codebook_size,
                n_classes=shapes.NUM_CLASSES, max_t=max(base["max_t"], 21))
    if args.p_null is not None:
        base["p_null"] = args.p_null
    if args.init:  # its sampler defaults were chosen on validation prompts: keep them, do not reset to the preset's
        base.update({f: init_cfg[f] for f in SAMPLER_FIELDS if f in init_cfg})
    encoder = None
    if args.cond == "text":
        encoder = TextEncoder(args.text_model, tokens=args.text_tokens)
        base["text_dim"] = encoder.dim
        if args.text_tokens:
            base["text_tokens"] = base["n_cond"] = args.text_tokens
    cfg = GeneratorConfig(**base)

    groups = training_groups(args.clips, args.long_clips, args.val_clips, args.first_clip)
    os.makedirs(tcfg.out_dir, exist_ok=True)
    cache_path = os.path.join(tcfg.out_dir, "tokens.safetensors")
    if rank == 0:
        data = token_cache(cache_path, pipe, groups, encoder, args.caption_variants)
    if world > 1:
        dist.barrier()
        if rank != 0:
            data = token_cache(cache_path, pipe, groups, encoder, args.caption_variants)
    print("token cache: " + ", ".join(f"{g}: {tuple(d['tokens'].shape)}" for g, d in data.items()))
    sources = [(data[g]["tokens"], condition_of(data[g], cfg), data[g]["text_variants"])
               for g in (("train", "long") if args.long_clips else ("train",))]
    if selected is not None:
        sel_cond = (selected["labels"] if cfg.cond == "class" else
                    embed_captions(encoder, selected["prompts"]))
        print(f"selected samples: {tuple(selected['tokens'].shape)}, {args.p_selected:.0%} of the batches")
    model = Generator(cfg)
    if args.init:
        load_weights(model, os.path.join(args.init, "model.safetensors"))
        print(f"initialised from {args.init}")

    def batches(start, b, rank, world):
        step = start
        while True:  # deterministic in the step: exact resume, the same global batch for any world size
            g = torch.Generator().manual_seed(tcfg.seed * 1_000_003 + step + 7)
            if selected is not None and torch.rand(1, generator=g).item() < args.p_selected:
                idx = torch.randint(len(selected["tokens"]), (world * b,), generator=g)[rank * b:(rank + 1) * b]
                yield selected["tokens"][idx], sel_cond[idx]
                step += 1
                continue
            use_long = len(sources) > 1 and torch.rand(1, generator=g).item() < args.long_frac
            tokens, cond, variants = sources[1 if use_long else 0]
            idx = torch.randint(len(tokens), (world * b,), generator=g)[rank * b:(rank + 1) * b]
            c = cond[idx]
            if variants is not None:  # reworded captions for a fraction of the clips
                swap = (torch.rand(world * b, generator=g) < args.p_variant)[rank * b:(rank + 1) * b]
                pick = torch.randint(variants.shape[1], (world * b,), generator=g)[rank * b:(rank + 1) * b]
                c = torch.where(swap.view(-1, *[1] * (c.ndim - 1)), variants[idx, pick], c)
            yield tokens[idx], c
            step += 1

    def eval_fn(ema, step):
        ks = sorted({1, min(4, cfg.K), cfg.K})
        res = validation_loss(ema, data["val"], ks)
        if args.probe_clips:
            res.update(probe_samples(ema, pipe, data["val"], args.probe_clips, sorted({min(4, cfg.K), cfg.K}),
                                     decode_steps=args.probe_steps))
        print(f"step {step}: {res}")
        return res

    def on_checkpoint(ema, step):
        save_generator(ema, os.path.join(tcfg.out_dir, "export"), args.text_model, tokens_of, tokenizer=args.tokenizer)

    ema = fit(model, lambda m, batch, rand: generator_loss(m, batch, rand, cfg, args.max_tokens), batches, tcfg,
              model_config=config_dict(cfg), eval_fn=eval_fn, on_checkpoint=on_checkpoint, run=run)
    announce(tcfg.out_dir)
    return ema


if __name__ == "__main__":  # python -m / torchrun -m: errors in one line, as the flexvid command
    from flexvid.cli import run_module
    run_module("train-generator")
