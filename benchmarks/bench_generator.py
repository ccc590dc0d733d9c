"""Generator speed: sampling with the KV cache against recomputing the prefix, and time to the first frame.

    python benchmarks/bench_generator.py [--model assets/generator-text] [--device cuda] [--json bench.json]

(a) sampling.generate (KV cache: a prefill, then one token per model call) against
    sampling.generate_reference (every token recomputes the whole prefix, nanoGPT's generate) at the
    full budget k = K, batch 1, the model's guidance (two sequences per call when it guides), for a
    17-frame clip (5 time steps) and an 81-frame clip (21 steps). The cache makes a step cost one
    token, so the ratio should grow with the length. Both draw the same tokens from the same seed
    (checked and printed).
(b) Time to the first decoded frame for a prompt: text encoding of a prompt not seen before, the
    first chunk's tokens (5 steps x K) and the decoding of that chunk (the decoder produces a chunk's
    frames together), each timed.
(c) With --best-of N ...: one whole generation, as the app and `flexvid generate` make it
    (VideoGenerator.generate(best_of=N): N candidates sampled and decoded in one batch, the reranker
    keeps one), for each clip length of --frames, the median of --repeats after a warm-up.
Uses the embedded models when present (assets/generator-text, assets/tokenizer), else random ones
of the 'tiny' presets, and says which: random weights measure speed only. Timings follow STYLE.md:
warm-up first, torch.no_grad, synchronize before reading the clock. Prints numbers, asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import nullcontext

import torch

from flexvid import sampling, shapes
from flexvid.benchmarking import sync, timed
from flexvid.generate import DEFAULT_MODELS, DEFAULT_TOKENIZER, VideoGenerator, frames_to_steps
from flexvid.generator import GENERATOR_CONFIGS, Generator, GeneratorConfig
from flexvid.hub import config_dict
from flexvid.pipeline import VideoFlexTok
from flexvid.text import DEFAULT_TEXT_MODEL, TextEncoder
from flexvid.tokenizer import TOKENIZER_CONFIGS, FlexTokenizer
from flexvid.vae import VAE_CONFIGS, VideoVAE


# ----------------------------------------------------------------------------- models
def random_tokenizer(device: str) -> VideoFlexTok:
    """The 'tiny' VAE and tokenizer presets with random weights (K = 32, 1000 codes)."""
    torch.manual_seed(0)
    vae = VideoVAE(VAE_CONFIGS["tiny"])
    return VideoFlexTok(vae, FlexTokenizer(TOKENIZER_CONFIGS["tiny"]), device=device)


def random_generator(tok: VideoFlexTok, device: str) -> VideoGenerator:
    """The 'tiny' generator preset, text-conditioned, with random weights (a non-zero output layer, so
    that the draws are not uniform)."""
    torch.manual_seed(0)
    cfg = config_dict(GENERATOR_CONFIGS["tiny"])
    cfg.update(cond="text", K=tok.n_tokens, codebook_size=tok.codebook_size, text_dim=TextEncoder(DEFAULT_TEXT_MODEL).dim)
    model = Generator(GeneratorConfig(**cfg))
    torch.nn.init.normal_(model.output.weight, std=0.02)
    return VideoGenerator(model, tokenizer=tok, device=device)


def load(args) -> tuple[VideoGenerator, str, str]:
    """The generator and tokenizer named, or the embedded ones, or random 'tiny' ones; and their names."""
    tok_name = args.tokenizer or (DEFAULT_TOKENIZER if os.path.isdir(DEFAULT_TOKENIZER) else None)
    tok = VideoFlexTok.from_pretrained(tok_name, device=args.device) if tok_name else random_tokenizer(args.device)
    gen_name = args.model or (DEFAULT_MODELS["text"] if os.path.isdir(DEFAULT_MODELS["text"]) else None)
    if gen_name:
        gen = VideoGenerator.from_pretrained(gen_name, tokenizer=tok, device=args.device)
    else:
        gen = random_generator(tok, args.device)
    names = (os.path.basename(gen_name.rstrip("/")) if gen_name else "random 'tiny' preset (text)",
             os.path.basename(tok_name.rstrip("/")) if tok_name else "random 'tiny' preset")
    return gen, *names


# ----------------------------------------------------------------------------- (a) KV cache
def bench_cache(gen: VideoGenerator, frames: int, repeats: int, ref_repeats: int) -> dict:
    """Cached against cache-free sampling of one clip at k = K, the same seed for both."""
    model, cfg, dev = gen.model, gen.cfg, gen.device
    t = frames_to_steps(frames, cfg.max_t)
    cond = gen.condition(["a large red circle moving left"] if cfg.cond == "text" else [0])
    kw = dict(k=cfg.K, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, guidance=cfg.guidance)
    out = {}
    model.clear_caches()  # a cache left by a longer request would make every step attend over its length

    def cached():
        out["cached"] = sampling.generate(model, cond, t, generator=torch.Generator(dev).manual_seed(0), **kw)

    def reference():
        out["reference"] = sampling.generate_reference(model, cond, t, generator=torch.Generator(dev).manual_seed(0), **kw)

    autocast = nullcontext() if gen.dtype == torch.float32 else torch.autocast(dev.type, dtype=gen.dtype)
    with autocast:
        sampling.generate_reference(model, cond, 1, **kw)  # warm-up of the cache-free path, cheaply
        cached_s = timed(cached, dev, repeats)
        ref_s = timed(reference, dev, ref_repeats, warmup=0)
    n = t * cfg.K
    return {"frames": frames, "time_steps": t, "k": cfg.K, "tokens": n, "guidance": cfg.guidance,
            "cached_s": cached_s, "reference_s": ref_s, "speedup": ref_s / cached_s,
            "cached_tokens_per_s": n / cached_s, "reference_tokens_per_s": n / ref_s,
            "same_tokens": bool(torch.equal(out["cached"], out["reference"]))}


# ----------------------------------------------------------------------------- (b) first frame
def bench_first_frame(gen: VideoGenerator, repeats: int) -> dict:
    """Text encoding + the first chunk's tokens + its decoding, for prompts the encoder has not seen."""
    tok, cfg, dev = gen.tokenizer, gen.cfg, gen.device
    frames = tok.chunk_frames
    captions = list(dict.fromkeys(c.caption for c in shapes.fixed_split("test", 4 * (repeats + 2), 1)))
    if cfg.cond == "text":
        prompts = captions[:repeats + 1]
    else:
        prompts = [c.label for c in shapes.fixed_split("test", repeats + 1, 1)]
    parts = {"encode_s": [], "tokens_s": [], "decode_s": [], "total_s": []}
    gen.model.clear_caches()  # as in a fresh process: the warm-up allocates the cache for one chunk
    for i, prompt in enumerate(prompts):  # the first is the warm-up
        sync(dev)
        t0 = time.perf_counter()
        gen.condition([prompt])  # text: encoded once here, then a cache hit inside sample_tokens
        sync(dev)
        t1 = time.perf_counter()
        grids = gen.sample_tokens([prompt], k=cfg.K, frames=frames, seed=i)
        sync(dev)
        t2 = time.perf_counter()
        tok.detokenize(grids, k=cfg.K, seed=i)
        sync(dev)
        t3 = time.perf_counter()
        if i:
            for key, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                parts[key].append(v)
    res = {key: statistics.median(v) for key, v in parts.items()}
    res.update({"frames": frames, "time_steps": frames_to_steps(frames, cfg.max_t), "k": cfg.K,
                "decode_steps": tok.tokenizer.cfg.sample_steps, "cond": cfg.cond, "repeats": repeats})
    return res


# ----------------------------------------------------------------------------- (c) best of N
def bench_best_of(gen: VideoGenerator, frames: int, best_of: int, repeats: int) -> dict:
    """One generation at the model's defaults (k = K), best of N, a new seed per run."""
    prompt = "a large red circle moving left" if gen.cfg.cond == "text" else 0
    runs = iter(range(10**6))
    seconds = timed(lambda: gen.generate([prompt], frames=frames, best_of=best_of, seed=next(runs)), gen.device,
                    repeats)
    return {"frames": frames, "best_of": best_of, "seconds": seconds, "cond": gen.cfg.cond, "repeats": repeats}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="generator folder (default: the embedded text model, else random)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the embedded one, else random)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu: the first-frame time is on this CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--frames", type=int, nargs="+", default=[17, 81], help="clip lengths for (a)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the cached sampler and of (b)")
    p.add_argument("--ref-repeats", type=int, default=1, help="timed runs of the cache-free sampler (slow)")
    p.add_argument("--best-of", type=int, nargs="*", default=[], metavar="N",
                   help="(c): time whole generations at best of each N (e.g. 1 4 8); left out: no (c)")
    p.add_argument("--skip-cache", action="store_true", help="skip (a) and (b), e.g. to time (c) alone")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    from flexvid.generate import MAX_BATCH
    if any(not 1 <= n <= MAX_BATCH for n in args.best_of):
        p.error(f"--best-of values must lie in [1, {MAX_BATCH}], got {args.best_of}")
    if args.repeats < 1 or args.ref_repeats < 1:
        p.error(f"--repeats and --ref-repeats must be >= 1, got {args.repeats}, {args.ref_repeats}")
    if any(f < 1 or (f - 1) % 4 for f in args.frames) or (args.threads or 0) < 0:
        p.error(f"--frames must be 1 + 4n and --threads >= 0, got {args.frames}, {args.threads}")
    if args.json:
        from flexvid.hub import check_output
        check_output(args.json, name="--json")  # before the run, not after it
    if args.threads:
        torch.set_num_threads(args.threads)

    gen, gen_name, tok_name = load(args)
    random = "random" in gen_name
    res = {"generator": gen_name, "tokenizer": tok_name, "random_weights": random or "random" in tok_name,
           "device": str(gen.device), "dtype": str(gen.dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "params_m": gen.model.num_params() / 1e6}
    print(f"generator: {gen_name} ({res['params_m']:.2f}M parameters, K={gen.cfg.K}, {gen.cfg.cond}); "
          f"tokenizer: {tok_name}")
    print(f"device {res['device']}, dtype {res['dtype']}, {res['threads']} threads, torch {torch.__version__}")

    if not args.skip_cache:
        bench_a_b(gen, args, res)
    if args.best_of:
        print(f"\n(c) one generation (VideoGenerator.generate, k = K, default sampler), median of {args.repeats}")
        res["best_of"] = []
        for frames in args.frames:
            for n in args.best_of:
                r = bench_best_of(gen, frames, n, args.repeats)
                res["best_of"].append(r)
                print(f"    {frames:>3} frames, best of {n:>2}: {r['seconds']:.2f} s")
    if res["random_weights"]:
        print("\n(random weights: these numbers measure speed only)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)  # check_output: it can be made
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


def bench_a_b(gen: VideoGenerator, args, res: dict) -> None:
    print(f"\n(a) sampling at k = K = {gen.cfg.K}, batch 1, guidance {gen.cfg.guidance}: KV cache vs cache-free")
    print(f"    {'frames':>6} {'steps':>5} {'tokens':>6} {'cached s':>9} {'no cache s':>10} {'ratio':>7} {'tok/s':>8} same")
    res["cache"] = []
    for frames in args.frames:
        r = bench_cache(gen, frames, args.repeats, args.ref_repeats)
        res["cache"].append(r)
        print(f"    {r['frames']:>6} {r['time_steps']:>5} {r['tokens']:>6} {r['cached_s']:9.3f} {r['reference_s']:10.3f} "
              f"{r['speedup']:6.1f}x {r['cached_tokens_per_s']:8.0f} {'yes' if r['same_tokens'] else 'NO'}")

    res["first_frame"] = ff = bench_first_frame(gen, args.repeats)
    what = "prompt: text encode" if ff["cond"] == "text" else "class label: label embedding"
    print(f"\n(b) time to the first decoded frame ({what} + {ff['time_steps']} steps x {ff['k']} tokens + "
          f"decode of {ff['frames']} frames at {ff['decode_steps']} Euler steps), median of {ff['repeats']}")
    print(f"    encode {ff['encode_s']:.3f} s, tokens {ff['tokens_s']:.3f} s, decode {ff['decode_s']:.3f} s: "
          f"total {ff['total_s']:.3f} s")


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
