"""Can best of N rank its candidates from a cheaper decode? For validation prompts, N grids each at K are
sampled once and decoded at several numbers of Euler steps (the same noise); the reranker scores every
decode, and each ranking is judged by the probe on the full decode (the tokenizer's default steps) of the
candidate it picks. Also the time each decode took.

    python scripts/preview_rerank.py --n 48 --candidates 4 --steps 2 4 10
"""
import argparse
import json
import time

import numpy as np
import torch

from flexvid import shapes
from flexvid.eval_generator import attributes, conditions, rates, score
from flexvid.generate import DEFAULT_MODELS, DEFAULT_TOKENIZER, VideoGenerator
from flexvid.pipeline import VideoFlexTok
from flexvid.rerank import DEFAULT_RERANKER, Reranker


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=48, help="validation prompts")
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--steps", type=int, nargs="+", default=[2, 4, 10], help="decode steps to rank from")
    p.add_argument("--cond", nargs="+", default=["text", "class"])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rr = Reranker.from_pretrained(DEFAULT_RERANKER)
    tok = VideoFlexTok.from_pretrained(DEFAULT_TOKENIZER, device="cpu")
    full = tok.tokenizer.cfg.sample_steps
    clips = shapes.fixed_split("val", args.n, 17)
    n = args.candidates
    for cond in args.cond:
        gen = VideoGenerator.from_pretrained(DEFAULT_MODELS[cond], tokenizer=tok, device="cpu")
        conds, refs = conditions(gen, clips)
        rep = [c for c in conds for _ in range(n)]
        grids = []
        for a in range(0, len(rep), 64):
            grids += gen.sample_tokens(rep[a:a + 64], seed=a)
        seeds = list(range(len(grids)))
        scores, seconds, videos_full = {}, {}, None
        for s in sorted(set(args.steps) | {full}):
            t = time.time()
            videos = []
            for a in range(0, len(grids), 64):
                videos += tok.detokenize(grids[a:a + 64], steps=s, guidance=gen.decode_guidance(), seed=seeds[a:a + 64])
            seconds[s] = round(time.time() - t, 1)
            scores[s] = rr.score(videos, rep, cond).view(len(clips), n)
            if s == full:
                videos_full = videos
        rows = [score(v, refs[i // n], cond) for i, v in enumerate(videos_full)]
        keys = (*attributes(cond), "all")
        out = {"cond": cond, "n": len(clips), "candidates": n, "full_steps": full,
               "first": rates([rows[i * n] for i in range(len(clips))], keys)["all"],
               "oracle": float(np.mean([any(rows[i * n + j]["all"] for j in range(n)) for i in range(len(clips))]))}
        for s in scores:
            pick = scores[s].argmax(1).tolist()
            out[f"steps_{s}"] = {"reranked_all": rates([rows[i * n + j] for i, j in enumerate(pick)], keys)["all"],
                                 "same_pick_as_full": float(np.mean([a == b for a, b in
                                                                     zip(pick, scores[full].argmax(1).tolist())])),
                                 "decode_s": seconds[s]}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
