"""Decoding speed of the embedded tokenizer in fp32 and in bf16 autocast on this machine, interleaved.

    python scripts/dtype_speed.py [--repeats 6]

Tokenizes 4 shapes-world clips once, then times `detokenize` at k = K for batches of 1 and 4 with one
model in each dtype, alternating fp32 and bf16 call by call so that both see the same machine load.
Prints medians; nothing is asserted. `dtype="auto"` (the app's default) takes bf16 where
`training.bf16_native` says the CPU has bf16 kernels.
"""
import argparse
import statistics
import time

import torch

from flexvid import shapes
from flexvid.pipeline import VideoFlexTok


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="assets/tokenizer")
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    args = p.parse_args(argv)
    toks = {d: VideoFlexTok.from_pretrained(args.model, device="cpu", dtype=d) for d in ("fp32", "bf16")}
    x = torch.stack([shapes.to_tensor(shapes.make_clip(0, i, 17).video) for i in range(max(args.batches))])
    grids = toks["fp32"].tokenize(x)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, k = {toks['fp32'].n_tokens}")
    for b in args.batches:
        times = {d: [] for d in toks}
        for tok in toks.values():  # warm-up
            tok.detokenize(grids[:b], k=tok.n_tokens, seed=0)
        for _ in range(args.repeats):
            for d, tok in toks.items():
                t0 = time.perf_counter()
                tok.detokenize(grids[:b], k=tok.n_tokens, seed=0)
                times[d].append(time.perf_counter() - t0)
        fp32, bf16 = (statistics.median(times[d]) for d in ("fp32", "bf16"))
        print(f"batch {b}: fp32 {fp32:.3f} s, bf16 {bf16:.3f} s, {fp32 / bf16:.2f}x")


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
