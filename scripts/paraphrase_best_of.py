"""Best of N on paraphrased validation prompts (words no training caption has), the same candidates
reranked by each of several rerankers; the first candidate and the oracle (any candidate right) beside.

    python scripts/paraphrase_best_of.py --n 48 --candidates 4 --rerankers runs/reranker-linear assets/reranker
"""
import argparse
import json

import numpy as np
import torch

from flexvid import probe, shapes
from flexvid.eval_generator import generate_videos, paraphrase_prompt
from flexvid.generate import DEFAULT_MODELS, DEFAULT_TOKENIZER, VideoGenerator
from flexvid.rerank import DEFAULT_RERANKER, Reranker

KEYS = ("color", "shape", "size", "motion", "all")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--rerankers", nargs="+", default=[DEFAULT_RERANKER])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, N = args.n, args.candidates
    clips = shapes.fixed_split("val", n, 17)
    rng = np.random.default_rng(0)
    mains = [c.objects[0] for c in clips]
    prompts = [paraphrase_prompt(o, rng) for o in mains]
    gen = VideoGenerator.from_pretrained(DEFAULT_MODELS["text"], tokenizer=DEFAULT_TOKENIZER, device="cpu")
    rep = [q for q in prompts for _ in range(N)]
    videos = generate_videos(gen, rep, gen.cfg.K, 17, 0, max(1, 16 // N) * N)
    rows = [probe.score_clip(v, [mains[i // N]]) for i, v in enumerate(videos)]

    def rate(sel):
        return {k: float(np.mean([rows[i][k] for i in sel])) for k in KEYS}

    out = {"n": n, "candidates": N, "first": rate([i * N for i in range(n)]),
           "oracle_all": float(np.mean([any(rows[i * N + j]["all"] for j in range(N)) for i in range(n)]))}
    for path in args.rerankers:
        s = Reranker.from_pretrained(path).score(videos, rep, "text").view(n, N)
        out[path] = rate([i * N + j for i, j in enumerate(s.argmax(1).tolist())])
    print(json.dumps(out))


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
