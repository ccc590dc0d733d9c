"""Tokenizer speed: the batched prefix ladder, and encoder / decoder throughput against this machine's peak.

    python benchmarks/bench_tokenizer.py --model assets/tokenizer [--device cuda] [--json bench.json]

(a) Decoding one 17-frame clip at 9 values of k: one detokenize call with 9 (grid, k) pairs against
    9 calls with one k each. The prefix is a k tensor inside one batch (STYLE.md), so the batched
    ladder should cost about one decode, not nine, wherever the batch is not compute-bound.
(b) Forward throughput of tok.tokenizer.encoder and tok.tokenizer.decoder on a batch of full chunks,
    their FLOPs (torch.utils.flop_counter, with the CPU attention kernel added), and the model FLOP
    utilization (MFU): achieved FLOP/s over this machine's own dense matmul peak, measured in the same
    run (fp32, and bf16 where supported).
Timings follow STYLE.md: warm-up first, torch.no_grad, synchronize before reading the clock.
Prints numbers only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
from contextlib import nullcontext

import torch
import torch.utils.flop_counter as flop_counter

from flexvid import shapes
from flexvid.cli import DEFAULT_TOKENIZER
from flexvid.hub import check_output, display_name
from flexvid.pipeline import VideoFlexTok
from flexvid.benchmarking import timed


def nine_ks(K: int) -> list[int]:
    """9 values of k in [1, K] with K: powers of two and their 1.5x (1, 2, 3, 4, 6, 8, 12, ...), thinned
    evenly when there are more (K = 32: 1, 2, 3, 4, 6, 12, 16, 24, 32); all of 1..K when K <= 9."""
    if K <= 9:
        return list(range(1, K + 1))
    ks = sorted({v for p in range(K.bit_length()) for v in (2 ** p, 3 * 2 ** p // 2) if v < K} | {K})
    for v in range(1, K):  # too few (K = 10, 11): fill with the smallest missing values
        if len(ks) >= 9:
            break
        ks = sorted(set(ks) | {v})
    return [ks[round(i * (len(ks) - 1) / 8)] for i in range(9)]


# ----------------------------------------------------------------------------- (a) prefix ladder
def bench_ladder(tok: VideoFlexTok, ks: list[int], repeats: int, steps: int | None) -> dict:
    video = shapes.to_tensor(shapes.fixed_split("test", 1, 17)[0].video)
    grid = tok.tokenize(video)[0]
    # the same seed everywhere, so both ways decode exactly the same videos
    batched = timed(lambda: tok.detokenize([grid] * len(ks), k=ks, steps=steps, seed=0), tok.device, repeats)
    separate = timed(lambda: [tok.detokenize(grid, k=k, steps=steps, seed=0) for k in ks], tok.device, repeats)
    return {"ks": ks, "steps": steps or tok.tokenizer.cfg.sample_steps, "batched_s": batched, "separate_s": separate,
            "speedup": separate / batched}


# ----------------------------------------------------------------------------- (b) throughput and MFU
def _sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)  # dense: masks save nothing


def count_flops(fn) -> int:
    """FLOPs of one call of fn, counted per op; the CPU attention kernel has no formula of its own."""
    custom = {}
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:
        custom[cpu_sdpa] = _sdpa_flop
    with flop_counter.FlopCounterMode(display=False, custom_mapping=custom) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float | None:
    """Dense n x n matmul FLOP/s, or None when the dtype does not run on the device."""
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        seconds = timed(lambda: a @ b, device, repeats, warmup=2)
    except RuntimeError:
        return None
    return 2 * n ** 3 / seconds


def bench_networks(tok: VideoFlexTok, batch: int, repeats: int) -> dict:
    """Encoder and decoder forward on `batch` full chunks (max_t latent steps)."""
    cfg, dev = tok.tokenizer.cfg, tok.device
    z = torch.randn(batch, cfg.z_channels, cfg.max_t, cfg.latent_size, cfg.latent_size, device=dev)
    s = torch.rand(batch, cfg.max_t, device=dev)
    regs = torch.randn(batch, cfg.max_t, cfg.n_registers, cfg.dec_dim, device=dev)
    autocast = nullcontext() if tok.dtype == torch.float32 else torch.autocast(dev.type, dtype=tok.dtype)
    nets = {"encoder": lambda: tok.tokenizer.encoder(z), "decoder": lambda: tok.tokenizer.decoder(z, s, regs)}
    out = {}
    with torch.no_grad(), autocast:
        for name, fn in nets.items():
            flops = count_flops(fn)
            seconds = timed(fn, dev, repeats, warmup=2)
            out[name] = {"batch": batch, "seconds": seconds, "clips_per_s": batch / seconds, "flops": flops,
                         "flops_per_s": flops / seconds}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEFAULT_TOKENIZER, help="tokenizer folder or repo id (default: the embedded one)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=8, help="chunks per encoder / decoder forward")
    p.add_argument("--steps", type=int, default=None, help="sampler steps for the ladder (default: the model's)")
    p.add_argument("--ks", type=int, nargs="+", default=None, help="the ladder (default: 9 values in [1, K])")
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    if min(args.repeats, args.batch, args.matmul_size, 1 if args.steps is None else args.steps) < 1 \
            or (args.threads or 0) < 0:
        p.error(f"--repeats, --batch, --steps and --matmul-size must be >= 1 and --threads >= 0, got {args.repeats}, "
                f"{args.batch}, {args.steps}, {args.matmul_size}, {args.threads}")
    if args.json:
        check_output(args.json, name="--json")  # before the run, not after it
    if args.threads:
        torch.set_num_threads(args.threads)

    tok = VideoFlexTok.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    dev = tok.device
    ks = args.ks or nine_ks(tok.n_tokens)
    if not all(1 <= k <= tok.n_tokens for k in ks):
        p.error(f"--ks must lie in [1, {tok.n_tokens}], got {ks}")
    tok.max_batch = max(tok.max_batch, len(ks))  # the whole ladder in one decoder batch
    res = {"model": display_name(args.model), "device": str(dev), "dtype": str(tok.dtype).removeprefix("torch."),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "repeats": args.repeats,
           "batch": args.batch, "matmul_size": args.matmul_size}

    res["ladder"] = lad = bench_ladder(tok, ks, args.repeats, args.steps)
    print(f"device {dev}, dtype {res['dtype']}, {res['threads']} threads, torch {torch.__version__}")
    print(f"\n(a) prefix ladder, one 17-frame clip, k = {ks}, {lad['steps']} steps")
    print(f"    one batched call   {lad['batched_s']:8.3f} s")
    print(f"    {len(ks)} separate calls   {lad['separate_s']:8.3f} s")
    print(f"    speedup            {lad['speedup']:8.2f} x")

    peaks = {"fp32": matmul_peak(dev, torch.float32, args.matmul_size, args.repeats),
             "bf16": matmul_peak(dev, torch.bfloat16, args.matmul_size, args.repeats)}
    res["matmul_peak_flops_per_s"] = peaks
    peak = peaks["bf16" if tok.dtype == torch.bfloat16 else "fp32"]
    res["networks"] = nets = bench_networks(tok, args.batch, args.repeats)
    print(f"\n(b) forward throughput, batch of {args.batch} chunks; matmul peak ({args.matmul_size}^2): "
          + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" if v else f"{k} n/a" for k, v in peaks.items()))
    print(f"    {'network':8} {'ms':>9} {'clips/s':>9} {'GFLOP':>9} {'GFLOP/s':>9} {'MFU':>7}")
    for name, r in nets.items():
        r["mfu"] = r["flops_per_s"] / peak if peak else None
        mfu = f"{100 * r['mfu']:6.1f}%" if peak else "    n/a"
        print(f"    {name:8} {1e3 * r['seconds']:9.2f} {r['clips_per_s']:9.1f} {r['flops'] / 1e9:9.3f} "
              f"{r['flops_per_s'] / 1e9:9.1f} {mfu}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)  # check_output: it can be made
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
