"""Reranked samples as training data: rejection-sampling fine-tuning for the generators.

Best of N (`generate(..., best_of=N)`) makes the videos right more often at N times the cost. This
module moves some of that into the generator itself: for conditions drawn from the training split it
samples N token grids per condition, decodes them, lets the reranker (`flexvid.rerank`, a separate
learned model, not the probe that measures the generators) pick the best, and saves the picked grids
with their conditions. `flexvid train-generator --init MODEL --selected FILE` then fine-tunes the
generator on them, mixed with the real tokens of the token cache (`--p-selected`), so that plain
samples resemble the ones the reranker picks (rejection-sampling fine-tuning, in the spirit of
RAFT, Dong et al. 2023, and expert iteration).

    flexvid select-samples --cond class --n 1024 --candidates 4 --out runs/selected-class.safetensors

The file: "tokens" (n, t, K) int16 (the grid picked for each condition), "scores" (n, N) of every
candidate, "labels" (n,) the class labels of the conditions' clips (for text too), and metadata with
the prompts (text), the model, the tokenizer fingerprint its grids belong to, k and frames (full-budget
17-frame grids: train-generator refuses others) and the settings.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from . import shapes
from .cli import HelpFormatter
from .hub import save_safetensors
from .generate import DEFAULT_MODELS, MAX_BATCH, VideoGenerator
from .training import add_dtype_argument, set_threads

FORMAT = "flexvid-selected-samples"
SELECT_INDEX = 6_000_000  # conditions come from this index range of the training split (not the token cache's)


def training_conditions(cond: str, n: int, start: int = SELECT_INDEX, reword: float = 0.5,
                        seed: int = 0) -> tuple[list, list[int]]:
    """n conditions from training-split clips start, start + 1, ...: class labels, or captions of which
    a fraction `reword` is reworded in the training vocabulary (`train_generator.caption_variant`).
    Returns (conditions, class labels)."""
    from .train_generator import caption_variant
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    clips = [shapes.make_clip(shapes.SPLIT_SEEDS["train"], start + i, 17) for i in range(n)]
    labels = [c.label for c in clips]
    if cond == "class":
        return labels, labels
    if cond != "text":
        raise ValueError(f"cond must be 'text' or 'class', got {cond!r}")
    prompts = [caption_variant(c.caption, rng) if rng.random() < reword else c.caption for c in clips]
    return prompts, labels


@torch.no_grad()
def select(gen: VideoGenerator, conditions: list, candidates: int = 4, k: int | None = None, frames: int = 17,
           seed: int = 0, batch: int = MAX_BATCH, reranker=None, log=None) -> dict:
    """For each condition, `candidates` grids sampled and decoded, scored by the reranker; the best kept.

    Conditions go `batch // candidates` per call; call j samples with seed + j and decodes candidate i
    with seed + i (i counted over all candidates), so a run is a function of its arguments. With one
    candidate nothing is decoded or scored: plain samples (scores 0), the control for a fine-tuning run.
    Returns {"tokens": (n, t, K) long, "scores": (n, candidates), "pick": (n,) index of the kept one}."""
    if not 1 <= candidates <= MAX_BATCH:
        raise ValueError(f"candidates must be in [1, {MAX_BATCH}], got {candidates}")
    k = gen.cfg.K if k is None else k
    if candidates > 1:  # the control run (one candidate) neither decodes nor scores
        reranker = reranker or gen.reranker
    per = max(1, batch // candidates)
    tok = gen.tokenizer
    grids_out, scores_out = [], []
    t0 = time.time()
    for j, a in enumerate(range(0, len(conditions), per)):
        conds = conditions[a:a + per]
        rep = [c for c in conds for _ in range(candidates)]
        grids = gen.sample_tokens(rep, k, frames, seed=seed + j)
        if candidates == 1:  # plain samples, kept as they come (the control of a fine-tuning run)
            grids_out.append(torch.stack(grids))
            scores_out.append(torch.zeros(len(conds), 1))
            continue
        first = a * candidates
        videos = tok.detokenize(grids, k=k, guidance=gen.decode_guidance(),
                                seed=[seed + first + i for i in range(len(grids))])
        s = reranker.score(videos, rep, gen.cfg.cond).view(len(conds), candidates)
        g = torch.stack(grids).view(len(conds), candidates, *grids[0].shape)
        grids_out.append(g[torch.arange(len(conds)), s.argmax(1)])
        scores_out.append(s)
        if log:
            done = a + len(conds)
            log(f"{done}/{len(conditions)} conditions, {time.time() - t0:.0f} s")
    scores = torch.cat(scores_out)
    return {"tokens": torch.cat(grids_out), "scores": scores, "pick": scores.argmax(1)}


def save_selected(path: str, result: dict, conditions: list, labels: list[int], cond: str, meta: dict) -> None:
    tensors = {"tokens": result["tokens"].to(torch.int16).contiguous(), "scores": result["scores"].float().contiguous(),
               "labels": torch.tensor(labels, dtype=torch.long)}
    info = {"format": FORMAT, "cond": cond, **{k: json.dumps(v) for k, v in meta.items()}}
    if cond == "text":
        info["prompts"] = json.dumps(list(conditions))
    save_safetensors(tensors, path, metadata=info)


def load_selected(path: str) -> dict:
    """{"tokens" (n, t, K) long, "labels" (n,), "scores", "cond", "prompts" (text) or None, "meta"}."""
    if not os.path.isfile(path):
        raise ValueError(f"no selected-samples file at {path}")
    try:
        with safe_open(path, "pt") as f:
            info = f.metadata() or {}
        tensors = load_file(path)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file
        raise ValueError(f"{path} is not a safetensors file: {e}") from None
    if info.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file (written by flexvid select-samples)")
    try:
        prompts = json.loads(info["prompts"]) if "prompts" in info else None
        meta = {k: json.loads(v) for k, v in info.items() if k not in ("format", "cond", "prompts")}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: unreadable metadata ({e})") from None
    missing = [name for name in ("tokens", "labels", "scores") if name not in tensors]
    if missing or info.get("cond") not in ("class", "text"):
        raise ValueError(f"{path}: not a complete {FORMAT} file (missing {missing or 'its cond'})")
    tokens, labels, scores = tensors["tokens"], tensors["labels"], tensors["scores"]
    n = len(tokens)
    if tokens.ndim != 3 or n == 0 or len(labels) != n or len(scores) != n or (
            info["cond"] == "text" and (not isinstance(prompts, list) or len(prompts) != n)):
        raise ValueError(f"{path}: tokens {tuple(tokens.shape)}, labels {tuple(labels.shape)}, scores "
                         f"{tuple(scores.shape)} and {len(prompts) if isinstance(prompts, list) else 'no'} prompts "
                         "do not describe the same non-empty set of (t, K) grids")
    return {"tokens": tokens.long(), "labels": labels, "scores": scores,
            "cond": info["cond"], "prompts": prompts, "meta": meta}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="flexvid select-samples", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--cond", default="class", choices=["class", "text"])
    p.add_argument("--model", default=None, help="generator folder or repo id (default: the embedded one)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or Hugging Face repo id (default: the one the "
                   "generator was trained with, where its config.json names it, else the embedded assets/tokenizer)")
    p.add_argument("--reranker", default=None, help="reranker folder (default: the embedded assets/reranker)")
    p.add_argument("--n", type=int, default=1024, help="conditions")
    p.add_argument("--candidates", type=int, default=4, help="grids sampled and decoded per condition")
    p.add_argument("--start", type=int, default=SELECT_INDEX, help="first training-split clip index")
    p.add_argument("--reword", type=float, default=0.5, help="text: fraction of prompts reworded")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=MAX_BATCH, help="candidates per call")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    add_dtype_argument(p)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from .hub import check_output
    check_output(args.out, name="--out")  # before the sampling, not after it
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if args.start < 0:
        raise ValueError(f"--start must be >= 0, got {args.start}")
    if not 0 <= args.seed < 2**63:  # (NumPy's generator takes no negative seed)
        raise ValueError(f"--seed must be an integer in [0, 2**63), got {args.seed}")
    if not 1 <= args.candidates <= MAX_BATCH:
        raise ValueError(f"--candidates must be in [1, {MAX_BATCH}], got {args.candidates}")
    if not 0 <= args.reword <= 1:
        raise ValueError(f"--reword must be in [0, 1], got {args.reword}")
    if not 1 <= args.batch <= MAX_BATCH:
        raise ValueError(f"--batch must be in [1, {MAX_BATCH}], got {args.batch}")
    set_threads(args.threads)
    gen = VideoGenerator.from_pretrained(args.model or DEFAULT_MODELS[args.cond], tokenizer=args.tokenizer,
                                         device=args.device, dtype=args.dtype)
    if gen.cfg.cond != args.cond:
        raise ValueError(f"{args.model} is a {gen.cfg.cond!r} generator, not {args.cond!r}")
    if args.reranker:
        gen.reranker_path = args.reranker
    conds, labels = training_conditions(args.cond, args.n, args.start, args.reword, args.seed)
    t = time.time()
    res = select(gen, conds, args.candidates, seed=args.seed, batch=args.batch,
                 log=lambda m: print(m, flush=True))
    from .train_generator import fingerprint
    meta = {"model": args.model or "embedded", "candidates": args.candidates, "start": args.start,
            "k": gen.cfg.K, "frames": 17,
            "seed": args.seed, "tokenizer_fingerprint": fingerprint(gen.tokenizer), "seconds": round(time.time() - t)}
    save_selected(args.out, res, conds, labels, args.cond, meta)
    s = res["scores"]
    print(f"{len(conds)} conditions x {args.candidates} candidates in {time.time() - t:.0f} s; mean score "
          f"first {s[:, 0].mean():.3f}, picked {s.max(1).values.mean():.3f}; wrote {args.out}")
    return 0


if __name__ == "__main__":  # python -m / torchrun -m: errors in one line, as the flexvid command
    from flexvid.cli import run_module
    run_module("select-samples")
