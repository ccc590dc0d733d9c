"""Load test of the app: N concurrent gradio_client clients on loopback, for a bounded time.

    python benchmarks/load_test.py --duration 60 --out load_test.json             # starts app.py itself
    python benchmarks/load_test.py --random tiny --duration 60                      # random weights, tiny preset
    python benchmarks/load_test.py --url http://127.0.0.1:7860/ --pid 12345         # an app already running

Each client uploads a clip first, then mixes uploads (a pool of distinct clips, so some are tokenized and
some are cache hits) with slider moves (a random k and one of a few seeds: cache hits and fresh decodes)
and, where the app has generators (/info), generations: a prompt from a small pool or a class, a random k
and one of a few seeds (cache hits and fresh samples), now and then the whole ladder of budgets.
Reports p50/p95/max latency per operation, the error count and the peak RSS of the server process
(VmHWM), prints a summary and writes JSON. Loopback only; at most 64 clients and one hour.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PROMPTS = ["a large red circle moving left", "a small blue square moving up", "a large green triangle standing still",
           "a small yellow circle moving right", "a large cyan square moving down and a small magenta circle moving up"]
CLASSES = [("red", "circle", "left"), ("blue", "square", "up"), ("green", "triangle", "still"),
           ("magenta", "circle", "down")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MiB; None where /proc is not available."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start_app(folder: Path, tokenizer: str | None, generators: dict[str, str] | None = None,
              timeout: float = 180) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(folder / "gradio")}
    if tokenizer:
        env["FLEXVID_TOKENIZER"] = tokenizer
    for name, spec in (generators or {}).items():
        env[f"FLEXVID_{name.upper()}_GENERATOR"] = spec
    log = open(folder / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}/", time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}: see {folder / 'app.log'}\n"
                             + (folder / "app.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"app.py did not answer within {timeout} s")


def random_tokenizer(preset: str, folder: Path) -> str:
    """Save a tokenizer of a named preset with random weights (load shape, not quality)."""
    from flexvid.pipeline import VideoFlexTok
    from flexvid.tokenizer import TOKENIZER_CONFIGS, FlexTokenizer
    from flexvid.vae import VAE_CONFIGS, VideoVAE

    tok = VideoFlexTok(VideoVAE(VAE_CONFIGS.get(preset, VAE_CONFIGS["tiny"])), FlexTokenizer(TOKENIZER_CONFIGS[preset]),
                       device="cpu")
    tok.save_pretrained(str(folder / "tokenizer"))
    return str(folder / "tokenizer")


def random_generators(preset: str, tokenizer: str, folder: Path) -> dict[str, str]:
    """Save text and class generators of a named preset with random weights, sized for the tokenizer."""
    import dataclasses

    import torch

    from flexvid.generate import save_generator
    from flexvid.generator import GENERATOR_CONFIGS, Generator
    from flexvid.pipeline import VideoFlexTok

    tok = VideoFlexTok.from_pretrained(tokenizer, device="cpu")
    out = {}
    for cond in ("text", "class"):
        cfg = dataclasses.replace(GENERATOR_CONFIGS[preset], K=tok.n_tokens, codebook_size=tok.codebook_size, cond=cond)
        model = Generator(cfg, verbose=False)
        torch.nn.init.normal_(model.output.weight, std=0.02)  # the zero-init output would make every logit equal
        out[cond] = str(folder / f"generator-{cond}")
        save_generator(model, out[cond])
    return out


def clip_pool(folder: Path, n: int) -> list[str]:
    """The bundled examples plus n distinct shapes-world clips."""
    from flexvid import shapes, video_io

    examples = sorted(str(p) for p in (REPO / "assets" / "examples").glob("*.mp4"))
    made = [video_io.write_video(folder / f"clip{i}.mp4", shapes.make_clip(2, 1000 + i, 17).video, fps=8, upscale=2)
            for i in range(n)]
    return examples + made


def run(url: str, clients: int, duration: float, pool: list[str], upload_share: float, generate_share: float,
        timeout: float) -> list[dict]:
    from gradio_client import Client, handle_file

    info = Client(url, verbose=False).predict(api_name="/info")
    K, d = info["n_tokens"], info["defaults"]
    gens = [n for n in ("text", "class") if info.get("generator_info", {}).get(n, {}).get("status") == "ready"]
    g = info.get("generate_defaults", {})
    if generate_share > 0 and not gens:
        print("the app has no generators ready: no generations in this run", flush=True)
    records, lock = [], threading.Lock()
    deadline = time.time() + duration

    def call(client, op, *args):
        t0 = time.perf_counter()
        try:
            out = client.submit(*args, api_name=f"/{op}").result(timeout=timeout)
            ok, err = True, None
        except Exception as e:
            out, ok, err = None, False, f"{type(e).__name__}: {str(e)[:200]}"
        with lock:
            records.append({"op": op, "latency_s": time.perf_counter() - t0, "ok": ok, "error": err,
                            "t": time.time()})
        return out

    def worker(i):
        rng = random.Random(i)
        client = Client(url, verbose=False)
        clip = None
        while time.time() < deadline:
            r = rng.random()
            if clip is None or r < upload_share:
                out = call(client, "tokenize", handle_file(rng.choice(pool)), d["k"], d["steps"], d["guidance"],
                           d["guidance_mode"], 0)
                clip = out[0] if out else clip
            elif gens and r < upload_share + generate_share:
                kind = rng.choice(gens)
                cond = (rng.choice(PROMPTS),) if kind == "text" else rng.choice(CLASSES)
                name = "generate" if kind == "text" else "generate_class"
                settings = (g["frames"], g["steps"], g["guidance"], g["temperature"], rng.choice([0, 1, 2]))
                if rng.random() < 0.25:  # the whole ladder of budgets
                    call(client, f"{name}_ladder", *cond, *settings)
                else:
                    call(client, name, *cond, rng.choice(info["ladder"]), *settings)
            else:
                call(client, "decode", clip, rng.randint(1, K), d["steps"], d["guidance"], d["guidance_mode"],
                     rng.choice([0, 1, 2]))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + timeout + 30)
    return records


def summarize(records: list[dict], duration: float) -> dict:
    out = {}
    for op in sorted({r["op"] for r in records}):
        lat = np.array([r["latency_s"] for r in records if r["op"] == op and r["ok"]])
        errors = [r["error"] for r in records if r["op"] == op and not r["ok"]]
        out[op] = {"count": int(len(lat) + len(errors)), "errors": len(errors), "first_errors": errors[:3],
                   "p50_s": float(np.percentile(lat, 50)) if len(lat) else None,
                   "p95_s": float(np.percentile(lat, 95)) if len(lat) else None,
                   "max_s": float(lat.max()) if len(lat) else None}
    ok = sum(r["ok"] for r in records)
    out["all"] = {"count": len(records), "errors": len(records) - ok, "requests_per_s": ok / duration}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default=None, help="a running app on loopback (default: start app.py)")
    p.add_argument("--pid", type=int, default=None, help="that app's process id, for its peak RSS")
    p.add_argument("--tokenizer", default=None, help="tokenizer for the started app (default: space.yaml's)")
    p.add_argument("--random", default=None, metavar="PRESET", help="start the app with a random tokenizer of this "
                                                                  "preset (e.g. tiny): load shape without weights")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--duration", type=float, default=180.0, help="seconds of load (new requests stop after it)")
    p.add_argument("--upload-share", type=float, default=0.2, help="share of requests that upload a clip")
    p.add_argument("--generate-share", type=float, default=0.3, help="share of requests that generate a clip (when "
                                                                   "the app has generators)")
    p.add_argument("--random-generator", default="tiny", metavar="PRESET",
                   help="with --random: the generator preset of the random text and class generators")
    p.add_argument("--pool", type=int, default=8, help="distinct generated clips to upload (plus the examples)")
    p.add_argument("--timeout", type=float, default=300.0, help="per-request limit in seconds")
    p.add_argument("--out", default="load_test.json")
    args = p.parse_args(argv)
    if not 1 <= args.clients <= 64 or not 0 < args.duration <= 3600:
        p.error("--clients must be in [1, 64] and --duration in (0, 3600]")
    if not (0 <= args.upload_share and 0 <= args.generate_share and args.upload_share + args.generate_share <= 1):
        p.error("--upload-share and --generate-share must be >= 0 and add up to at most 1")
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        p.error(f"loopback only: {args.url!r} is not on 127.0.0.1 / localhost")
    if not args.timeout > 0:
        p.error(f"--timeout must be > 0 seconds, got {args.timeout}")
    from flexvid.hub import check_output
    check_output(args.out, name="--out")  # before the run, not after it

    with tempfile.TemporaryDirectory(prefix="flexvid-load-") as tmp:
        tmp = Path(tmp)
        pool = clip_pool(tmp, args.pool)
        proc, url, pid = None, args.url, args.pid
        if url is None:
            tokenizer = random_tokenizer(args.random, tmp) if args.random else args.tokenizer
            generators = random_generators(args.random_generator, tokenizer, tmp) if args.random else None
            proc, url = start_app(tmp, tokenizer, generators)
            pid = proc.pid
        try:
            t0 = time.time()
            records = run(url, args.clients, args.duration, pool, args.upload_share, args.generate_share, args.timeout)
            wall = time.time() - t0
            rss = peak_rss_mib(pid) if pid else None
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    result = {"clients": args.clients, "duration_s": args.duration, "wall_s": wall, "upload_share": args.upload_share,
              "generate_share": args.generate_share, "server_peak_rss_mib": rss, "ops": summarize(records, wall)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # check_output: it can be made
    Path(args.out).write_text(json.dumps(result, indent=2))
    for op, s in result["ops"].items():
        if op == "all":
            print(f"all: {s['count']} requests, {s['errors']} errors, {s['requests_per_s']:.2f} req/s")
        else:
            fmt = lambda v: "-" if v is None else f"{v:.2f} s"  # noqa: E731
            print(f"{op:21s} {s['count']:5d} requests, {s['errors']} errors, p50 {fmt(s['p50_s'])}, "
                  f"p95 {fmt(s['p95_s'])}, max {fmt(s['max_s'])}")
    print(f"server peak RSS: {'-' if rss is None else f'{rss:.0f} MiB'}; wrote {args.out}")
    return 0 if result["ops"]["all"]["errors"] == 0 else 1


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
