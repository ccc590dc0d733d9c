"""Sampling temperature by the token's index within its time step: does a schedule beat one temperature?

The coarse tokens of a step (index 0, 1, ...) say what the clip is, the later ones add detail. This
samples the embedded generators on validation-split conditions at the full budget with a temperature
that depends on the index in step (flexvid.sampling.sample is wrapped for the experiment; the library
is unchanged) and prints the probe's rates of each schedule. Same seeds for every schedule.

    python scripts/temperature_schedule.py --n 48 --cond text class
"""
import argparse
import json
import time

import torch

from flexvid import sampling, shapes
from flexvid.eval_generator import conditions, generate_videos, rates, score, attributes
from flexvid.generate import VideoGenerator
from flexvid.pipeline import VideoFlexTok

SCHEDULES = {  # name: (temperature of indices < split, temperature of the rest, split)
    "0.7": (0.7, 0.7, 0),
    "0.5": (0.5, 0.5, 0),
    "1.0": (1.0, 1.0, 0),
    "coarse 0.4 / 0.7": (0.4, 0.7, 4),
    "coarse 0.7 / 0.4": (0.7, 0.4, 4),
    "coarse 0.7 / 1.0": (0.7, 1.0, 4),
    "coarse 0.2 / 0.7": (0.2, 0.7, 4),
    "first 0.4 / 0.7": (0.4, 0.7, 1),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--cond", nargs="+", default=["text", "class"])
    p.add_argument("--schedules", nargs="+", default=list(SCHEDULES))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    clips = shapes.fixed_split("val", a.n, 17)
    tok = VideoFlexTok.from_pretrained("assets/tokenizer")
    real_sample = sampling.sample
    for cond in a.cond:
        gen = VideoGenerator.from_pretrained(f"assets/generator-{cond}", tokenizer=tok)
        K = gen.cfg.K
        conds, refs = conditions(gen, clips)
        for name in a.schedules:
            lo, hi, split = SCHEDULES[name]
            count = [0]

            def sample(logits, generator, temperature=1.0, top_k=0, top_p=1.0):
                i = count[0]
                count[0] += 1
                t = lo if (i % K) < split else hi
                return real_sample(logits, generator, t, top_k, top_p)

            sampling.sample = sample
            t0 = time.time()
            try:
                videos = []
                for j in range(0, len(conds), 16):  # the counter restarts with every call
                    count[0] = 0
                    videos += generate_videos(gen, conds[j:j + 16], K, 17, seed=j, batch=16)
            finally:
                sampling.sample = real_sample
            rows = [score(v, r, cond) for v, r in zip(videos, refs)]
            r = rates(rows, (*attributes(cond), "all"))
            print(json.dumps({"cond": cond, "schedule": name, "n": a.n, **{k: round(v, 3) for k, v in r.items()},
                              "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
