"""Latency of the app as one user sees it: cold start, upload, slider moves, prompt to video. Loopback only.

    python benchmarks/bench_app.py --out bench_app.json                      # the app's own tokenizer (space.yaml)
    python benchmarks/bench_app.py --tokenizer runs/tokenizer/export        # another tokenizer folder or repo id
    python benchmarks/bench_app.py --random tiny --repeats 2                 # random weights: timing shape only

Starts `python app.py --port P` as a fresh subprocess on 127.0.0.1 and measures, with gradio_client:
  1. cold start: from launching the process until an HTTP GET of the page returns 200;
  2. upload to first view: /tokenize of a fresh 17-frame shapes-world clip (tokenize, then decode and render
     the current k and the prefix ladder 1, 2, 4, ..., K, and download the outputs); one distinct clip per
     repeat, so none is a cache hit. For reference, VideoFlexTok.tokenize of the same clips in this process
     (no Runtime, no server), timed after the server has stopped;
  3. slider moves (/decode): to an uncached k (a k outside the ladder, a different one each repeat, same
     seed: one new decode), to a cached k (the same request again), and to a new seed (the resample
     button's cost: the ladder and k are decoded again);
  4. prompt to video (/generate, a new seed each repeat) where /info lists a ready text generator, at the
     app's default best of N (space.yaml app.defaults.best_of) and at best of 1 (plain samples);
  5. its ladder (/generate_ladder, the same requests at k = 1, 2, 4, ..., K at the default best of N), which
     the Generate tab asks for after each clip unless its box is unticked.
Prints the numbers and writes them as JSON (--out). Every median is over --repeats requests.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import load_test  # noqa: E402  (free_port, peak_rss_mib, random_tokenizer, random_generators)

PROMPTS = load_test.PROMPTS
CLIP_FRAMES = 17


def stats(samples: list[float]) -> dict:
    return {"median_s": statistics.median(samples), "first_s": samples[0], "min_s": min(samples),
            "max_s": max(samples), "n": len(samples), "samples_s": samples}


def make_clips(folder: Path, n: int) -> list[str]:
    """n distinct 17-frame shapes-world clips (test split) at 8 fps, written at 2x as browsers would get them."""
    from flexvid import shapes, video_io

    test = shapes.SPLIT_SEEDS["test"]
    return [video_io.write_video(folder / f"clip{i}.mp4", shapes.make_clip(test, 500 + i, CLIP_FRAMES).video,
                                 fps=shapes.FPS, upscale=2) for i in range(n)]


def launch(folder: Path, tokenizer: str | None, generators: dict[str, str] | None) -> tuple[subprocess.Popen, str]:
    """Start app.py on a free loopback port; returns the process (its log in folder/app.log) and the page's URL."""
    port = load_test.free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(folder / "gradio")}
    if tokenizer:
        env["FLEXVID_TOKENIZER"] = tokenizer
    for name, spec in (generators or {}).items():
        env[f"FLEXVID_{name.upper()}_GENERATOR"] = spec
    log = open(folder / "app.log", "w")
    try:
        proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()  # the child holds its own descriptor
    return proc, f"http://127.0.0.1:{port}/"


def wait_for_page(proc: subprocess.Popen, url: str, t_launch: float, folder: Path, timeout: float) -> float:
    """Seconds from t_launch until GET url returns 200 (polled every 0.1 s)."""
    deadline = t_launch + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            tail = (folder / "app.log").read_text()[-2000:]
            raise RuntimeError(f"app.py exited with {proc.returncode} before serving the page:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t_launch
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"app.py did not serve the page within {timeout:g} s")


def stop(proc: subprocess.Popen | None) -> None:
    """Terminate the server by its PID (kill it if it does not exit within 15 s)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(15)


def timed(client, api: str, args: tuple, timeout: float):
    t0 = time.perf_counter()
    out = client.submit(*args, api_name=api).result(timeout=timeout)
    return time.perf_counter() - t0, out


def uncached_ks(K: int, ladder: list[int], n: int) -> list[int]:
    """Up to n distinct k outside the ladder (those decode alone; ladder ks are decoded with every view),
    spread over 2..K-1."""
    off = [k for k in range(1, K + 1) if k not in set(ladder)]
    if len(off) <= n:
        return off
    return [off[round(i * (len(off) - 1) / max(n - 1, 1))] for i in range(n)]


def bench_server(url: str, clips: list[str], repeats: int, timeout: float, downloads: Path) -> dict:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=str(downloads), analytics_enabled=False)
    try:
        info = client.predict(api_name="/info")
        K, ladder, d = info["n_tokens"], info["ladder"], info["defaults"]
        sampler = (d["steps"], d["guidance"], d["guidance_mode"])
        res: dict = {"info": {k: info[k] for k in ("device", "dtype", "n_tokens", "codebook_size", "fps", "size",
                                                   "ladder", "defaults")}}

        # 2. upload to first view: distinct clips, each tokenized and decoded at the default k (and the ladder)
        times, clip_id = [], None
        for path in clips:
            dt, out = timed(client, "/tokenize", (handle_file(path), d["k"], *sampler, d["seed"]), timeout)
            times.append(dt)
            clip_id = out[0]
        res["upload_to_first_view"] = stats(times)
        res["upload_summary"] = out[7]

        # 3. slider moves on the last clip; its ladder and default k are decoded with the default seed
        ks = uncached_ks(K, ladder, repeats)
        if ks:
            times = [timed(client, "/decode", (clip_id, k, *sampler, d["seed"]), timeout)[0] for k in ks]
            res["slider_uncached_k"] = {**stats(times), "ks": ks}
            k_hit = ks[-1]
        else:
            res["slider_uncached_k"] = None  # K so small that every k is on the ladder
            k_hit = d["k"]
        times = [timed(client, "/decode", (clip_id, k_hit, *sampler, d["seed"]), timeout)[0] for _ in range(repeats)]
        res["slider_cached_k"] = {**stats(times), "k": k_hit}
        seeds = [d["seed"] + 1 + i for i in range(repeats)]
        times = [timed(client, "/decode", (clip_id, d["k"], *sampler, s), timeout)[0] for s in seeds]
        res["slider_new_seed"] = {**stats(times), "k": d["k"], "seeds": seeds,
                                  "decodes_per_request": len(set(ladder) | {d["k"]})}

        # 4. prompt to video
        text = info.get("generator_info", {}).get("text", {})
        if text.get("status") == "ready":
            g = info["generate_defaults"]
            for key, best_of in (("prompt_to_video", g["best_of"]), ("prompt_to_video_plain", 1)):
                times = []
                for i in range(repeats):  # a new seed each repeat; the plain pass takes other seeds again
                    args = (PROMPTS[i % len(PROMPTS)], g["k"], g["frames"], g["steps"], g["guidance"], g["temperature"],
                            g["seed"] + i + (repeats if best_of == 1 else 0), best_of)
                    times.append(timed(client, "/generate", args, timeout)[0])
                res[key] = {**stats(times), "k": g["k"], "frames": g["frames"], "steps": g["steps"], "best_of": best_of}
            # 5. the ladder the Generate tab asks for after each clip: the same request at every k of the
            # ladder, the clip's own k a cache hit (the default k is K)
            times = []
            for i in range(repeats):
                args = (PROMPTS[i % len(PROMPTS)], g["frames"], g["steps"], g["guidance"], g["temperature"],
                        g["seed"] + i, g["best_of"])
                times.append(timed(client, "/generate_ladder", args, timeout)[0])
            res["prompt_ladder"] = {**stats(times), "frames": g["frames"], "steps": g["steps"], "best_of": g["best_of"],
                                    "ks": info["ladder"]}
        else:
            res["prompt_to_video"] = None
            res["prompt_to_video_note"] = ("no generators configured" if not text else
                                           f"text generator: {text.get('status')}")
        return res
    finally:
        client.close()


def bench_pure_tokenize(tokenizer: str, clips: list[str]) -> dict:
    """VideoFlexTok.tokenize in this process (no Runtime, no server) on the same clips: one warm-up call,
    then one call per clip."""
    import torch

    from flexvid import video_io
    from flexvid.pipeline import VideoFlexTok

    t0 = time.perf_counter()
    tok = VideoFlexTok.from_pretrained(tokenizer, device="auto")
    load_s = time.perf_counter() - t0
    videos = []
    for path in clips:
        frames, fps = video_io.read_video(path)
        videos.append(video_io.to_model(video_io.prepare_video(frames, fps, target_fps=tok.fps, size=tok.size)))
    sync = torch.cuda.synchronize if tok.device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    tok.tokenize(videos[0])
    sync()
    warmup = time.perf_counter() - t0
    times = []
    for v in videos:
        t0 = time.perf_counter()
        tok.tokenize(v)
        sync()
        times.append(time.perf_counter() - t0)
    return {**stats(times), "warmup_s": warmup, "load_s": load_s, "frames": int(videos[0].shape[1]),
            "device": str(tok.device), "torch_threads": torch.get_num_threads()}


def resolve_tokenizer(spec: str | None) -> str:
    """What the app would load: spec, else FLEXVID_TOKENIZER, else space.yaml's app.tokenizer."""
    from flexvid.runtime import load_settings, resolve_model

    s = load_settings(tokenizer=spec)
    return resolve_model(s.tokenizer, s.base_dir)


def fmt(entry: dict | None, key: str = "median_s") -> str:
    return "null" if entry is None else f"{entry[key]:.3f} s"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or repo id for the app "
                                                     "(default: the app's own, space.yaml or FLEXVID_TOKENIZER)")
    p.add_argument("--random", default=None, metavar="PRESET", help="a tokenizer of this preset (e.g. tiny) with "
                                                                  "random weights: timings without trained weights")
    p.add_argument("--random-generator", default="tiny", metavar="PRESET",
                   help="with --random: the preset of random text and class generators ('none': no generators)")
    p.add_argument("--repeats", type=int, default=3, help="requests per measurement (distinct clips, ks, seeds)")
    p.add_argument("--timeout", type=float, default=600.0, help="per-request limit in seconds")
    p.add_argument("--start-timeout", type=float, default=300.0, help="limit for the page to come up, seconds")
    p.add_argument("--out", default="bench_app.json")
    args = p.parse_args(argv)
    if not 1 <= args.repeats <= 50:
        p.error("--repeats must be in [1, 50]")
    if args.random and args.tokenizer:
        p.error("--random and --tokenizer exclude each other")
    if not (args.timeout > 0 and args.start_timeout > 0):
        p.error(f"--timeout and --start-timeout must be > 0 seconds, got {args.timeout}, {args.start_timeout}")
    from flexvid.hub import check_output
    check_output(args.out, name="--out")  # before the run, not after it

    with tempfile.TemporaryDirectory(prefix="flexvid-bench-app-") as tmp:
        tmp = Path(tmp)
        clips = make_clips(tmp, args.repeats)
        generators = None
        if args.random:
            tokenizer = load_test.random_tokenizer(args.random, tmp)
            if args.random_generator.lower() != "none":
                generators = load_test.random_generators(args.random_generator, tokenizer, tmp)
            else:  # not the bundled generators either: they would not fit a random tokenizer
                generators = {"text": "none", "class": "none"}
            label = f"random {args.random}"
        else:
            try:  # fails early, with the app's message, when the tokenizer is missing
                tokenizer = resolve_tokenizer(args.tokenizer)
            except ValueError as e:
                raise SystemExit(f"bench_app: {e}") from None
            from flexvid.runtime import public_name
            label = public_name(args.tokenizer or os.environ.get("FLEXVID_TOKENIZER") or "space.yaml default")
        (tmp / "downloads").mkdir()
        proc = None
        try:
            t_launch = time.perf_counter()
            proc, url = launch(tmp, tokenizer if (args.random or args.tokenizer) else None, generators)
            cold = wait_for_page(proc, url, t_launch, tmp, args.start_timeout)
            print(f"cold start to first page (200): {cold:.2f} s", flush=True)
            server = bench_server(url, clips, args.repeats, args.timeout, tmp / "downloads")
            rss = load_test.peak_rss_mib(proc.pid)
        finally:
            stop(proc)
        pure = bench_pure_tokenize(tokenizer, clips)

    result = {"tokenizer": label, "repeats": args.repeats, "clip_frames": CLIP_FRAMES, "cold_start_s": cold,
              "server_peak_rss_mib": rss, **server, "pure_tokenize": pure}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # check_output: it can be made
    Path(args.out).write_text(json.dumps(result, indent=2))

    i = server["info"]
    print(f"tokenizer {label}: K = {i['n_tokens']}, {i['size']} px, {i['device']} ({i['dtype']}), "
          f"decoder {i['defaults']['steps']} steps; medians of {args.repeats}")
    up = server["upload_to_first_view"]
    print(f"upload to first view (/tokenize, {CLIP_FRAMES} frames, tokenize + decode of k = {i['defaults']['k']} "
          f"and the ladder {i['ladder']}): median {fmt(up)}, first {fmt(up, 'first_s')}")
    print(f"pure tokenize in-process (VideoFlexTok.tokenize, {pure['frames']} frames, {pure['device']}): "
          f"median {fmt(pure)} (warm-up call {pure['warmup_s']:.3f} s)")
    unc = server["slider_uncached_k"]
    print(f"slider to an uncached k (/decode, one new decode): median {fmt(unc)}"
          + (f", ks {unc['ks']}" if unc else " (every k is on the ladder)"))
    print(f"slider to a cached k (/decode, same request): median {fmt(server['slider_cached_k'])}")
    ns = server["slider_new_seed"]
    print(f"new seed (/decode, {ns['decodes_per_request']} decodes in one batch): median {fmt(ns)}")
    if server["prompt_to_video"] is None:
        note = server["prompt_to_video_note"]
        print(note if note == "no generators configured" else f"prompt to video: null ({note})")
    else:
        for key in ("prompt_to_video", "prompt_to_video_plain"):
            g = server[key]
            print(f"prompt to video (/generate, k = {g['k']}, {g['frames']} frames, best of {g['best_of']}): "
                  f"median {fmt(g)}, first {fmt(g, 'first_s')}")
        g = server["prompt_ladder"]
        print(f"its ladder (/generate_ladder, k = {g['ks']}, {g['frames']} frames, best of {g['best_of']}, the clip's "
              f"k cached): median {fmt(g)}, first {fmt(g, 'first_s')}")
    print(f"server peak RSS: {'-' if rss is None else f'{rss:.0f} MiB'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
