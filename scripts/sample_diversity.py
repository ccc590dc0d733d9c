"""How varied a generator's samples are, and how near they sit to a set of grids (e.g. the reranked
samples it was fine-tuned on): token grids only, no decoding.

For --n test-split conditions, --samples grids each at K (17 frames): the share of token positions two
samples of the same condition agree on (mean over pairs; lower is more varied), and each sample's
nearest grid in --near (share of positions equal; near 1 would be a copy).

    python scripts/sample_diversity.py --cond class --models assets/generator-class runs/gen-class-ft/export \
        --near runs/sel/class.safetensors
"""
import argparse
import json

import torch

from flexvid import shapes
from flexvid.generate import DEFAULT_TOKENIZER, VideoGenerator
from flexvid.pipeline import VideoFlexTok
from flexvid.select_samples import load_selected


def agreement(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, t, K) and (m, t, K) grids -> (n, m) share of positions equal."""
    return (a.flatten(1)[:, None] == b.flatten(1)[None]).float().mean(-1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cond", default="class", choices=["class", "text"])
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--near", default=None, help="a select-samples file whose grids to compare against")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tok = VideoFlexTok.from_pretrained(DEFAULT_TOKENIZER, device="cpu")
    clips = shapes.fixed_split("test", args.n, 17)
    conds = [c.label if args.cond == "class" else c.caption for c in clips]
    near = load_selected(args.near)["tokens"] if args.near else None
    for path in args.models:
        gen = VideoGenerator.from_pretrained(path, tokenizer=tok, device="cpu")
        within, nearest = [], []
        for i, c in enumerate(conds):
            g = torch.stack(gen.sample_tokens([c] * args.samples, seed=i))
            a = agreement(g, g)
            within.append(a[~torch.eye(len(g), dtype=torch.bool)].mean())
            if near is not None:
                nearest.append(agreement(g, near).amax(1).mean())
        out = {"model": path, "n": args.n, "samples": args.samples,
               "within_condition_agreement": round(float(torch.stack(within).mean()), 4)}
        if nearest:
            out["nearest_in_near"] = round(float(torch.stack(nearest).mean()), 4)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
