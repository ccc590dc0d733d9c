"""Compare tokenizer checkpoints on validation clips: PSNR and the attribute probe at a few k.

Used to choose between training runs without touching the test split (flexvid eval-tokenizer reports
on the test split). Every model is decoded with the same sampler settings and seed.

    python scripts/compare_tokenizers.py runs/tokenizer_c/export runs/tokenizer_d/export --n 32 --ks 1 2 4 32
"""
import argparse
import json
import time

import torch

from flexvid import shapes
from flexvid.evaluate import rate_distortion, semantics
from flexvid.pipeline import VideoFlexTok


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="tokenizer folders or Hugging Face repo ids")
    p.add_argument("--n", type=int, default=32, help="validation clips")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 32])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--guidance", type=float, default=2.0,
                   help="decoder guidance for every model (default 2, as in the earlier comparisons of docs/training-notes.md; "
                        "the shipped tokenizer's own default is 3)")
    p.add_argument("--noise-scale", type=float, default=1.0, help="scale of the decoder's starting noise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--dtype", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                   help="compute dtypes to compare (each model is run in each)")
    args = p.parse_args(argv)
    if args.n < 1 or args.threads < 0 or min(args.ks) < 1:
        p.error(f"--n and --ks must be >= 1 and --threads >= 0, got {args.n}, {args.ks}, {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    toks = {}
    for path, dtype in [(m, d) for m in args.models for d in args.dtype]:  # every model and setting checked first
        toks[path, dtype] = tok = VideoFlexTok.from_pretrained(path, device="cpu", dtype=dtype)
        tok._check_sampler(args.steps, args.guidance, "cfg", args.noise_scale)
        if max(args.ks) > tok.n_tokens:
            p.error(f"--ks must lie in [1, {tok.n_tokens}] for {path}, got {args.ks}")
    clips = shapes.fixed_split("val", args.n, 17)
    for (path, dtype), tok in toks.items():
        t0 = time.time()
        rd = rate_distortion(tok, clips, ks=args.ks, keep_videos=True, steps=args.steps, guidance=args.guidance,
                             guidance_mode="cfg", seed=args.seed, noise_scale=args.noise_scale)
        sem = semantics(rd["videos"], clips)
        print(json.dumps({"model": path, "dtype": dtype, "n": args.n, "steps": args.steps, "guidance": args.guidance,
                          "seed": args.seed, "noise_scale": args.noise_scale, "ks": rd["ks"],
                          "psnr": [round(x, 2) for x in rd["psnr"]],
                          **{a: [round(x, 2) for x in v] for a, v in sem["rates"].items()},
                          "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
