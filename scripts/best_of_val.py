"""Best-of-N on validation prompts: the first candidate, the reranked one and the oracle (any candidate
right), for the embedded text and class generators at k = K. Used to judge the reranker without touching
the test split (flexvid eval-generator --best-of N reports on the test split).

    python scripts/best_of_val.py --n 48 --candidates 4 --reranker assets/reranker
"""
import argparse
import json
import time

import torch

from flexvid import shapes
from flexvid.eval_generator import best_of
from flexvid.generate import DEFAULT_MODELS, DEFAULT_TOKENIZER, VideoGenerator
from flexvid.pipeline import VideoFlexTok
from flexvid.rerank import DEFAULT_RERANKER, Reranker


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=48, help="validation prompts")
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--reranker", default=DEFAULT_RERANKER)
    p.add_argument("--seed", type=int, default=0, help="decode noise of candidate i: seed + i")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rr = Reranker.from_pretrained(args.reranker)
    tok = VideoFlexTok.from_pretrained(DEFAULT_TOKENIZER, device="cpu")
    clips = shapes.fixed_split("val", args.n, 17)
    for cond in ("text", "class"):
        t = time.time()
        gen = VideoGenerator.from_pretrained(DEFAULT_MODELS[cond], tokenizer=tok, device="cpu")
        res = best_of(gen, clips, args.candidates, seed=args.seed, reranker=rr)
        res["seconds"] = round(time.time() - t)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
