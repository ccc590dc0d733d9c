"""What a cancelled request costs the next one: the app, its embedded models, one model slot. Loopback only.

    python benchmarks/bench_app_cancel.py                      # the app's own tokenizer (space.yaml)
    python benchmarks/bench_app_cancel.py --tokenizer DIR      # another tokenizer folder or repo id

Starts `python app.py` as bench_app.py does, tokenizes assets/examples/shapes_long.mp4 (/tokenize), then:
  1. submits /decode of the whole prefix ladder at --long-steps decoder steps and cancels it after
     --cancel-after seconds (gradio_client's Job.cancel, as the page's stop does);
  2. times the next /decode that needs the model (a new seed, --steps steps): it waits for whatever the
     cancelled request still holds;
  3. times the same decode again with the model free (another seed), for reference.
Prints the three numbers and the server's own log line for the cancelled request; --json FILE writes them
too (benchmarks/results/app_cancel_cpu.json holds the last run on this project's 2-core CPU).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_app import launch, stop, wait_for_page  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or repo id (default: space.yaml's)")
    p.add_argument("--clip", default=str(REPO / "assets" / "examples" / "shapes_long.mp4"))
    p.add_argument("--long-steps", type=int, default=50, help="decoder steps of the request that is cancelled")
    p.add_argument("--steps", type=int, default=10, help="decoder steps of the requests timed after it")
    p.add_argument("--cancel-after", type=float, default=5.0, help="seconds before the cancel")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory(prefix="bench-cancel-") as tmp:
        folder = Path(tmp)
        proc, url = launch(folder, args.tokenizer, None)
        try:
            wait_for_page(proc, url, time.perf_counter(), folder, timeout=300)
            client = Client(url, verbose=False, download_files=str(folder / "downloads"))
            K = client.predict(api_name="/info")["n_tokens"]
            cid = client.predict(handle_file(args.clip), K, args.steps, 3.0, "cfg", 0, api_name="/tokenize")[0]
            job = client.submit(cid, 5, args.long_steps, 3.0, "cfg", 123, api_name="/decode")
            time.sleep(args.cancel_after)
            job.cancel()
            t = time.perf_counter()
            client.predict(cid, K, args.steps, 3.0, "cfg", 1, api_name="/decode")
            after = time.perf_counter() - t
            t = time.perf_counter()
            client.predict(cid, K, args.steps, 3.0, "cfg", 2, api_name="/decode")
            free = time.perf_counter() - t
        finally:
            stop(proc)
        lines = [ln for ln in (folder / "app.log").read_text().splitlines() if "cancelled after" in ln]
    print(f"cancelled: a {args.long_steps}-step ladder decode, {args.cancel_after:g} s in")
    print(f"next decode ({args.steps} steps, the ladder): {after:.1f} s")
    print(f"the same decode with the model free: {free:.1f} s")
    server = lines[0].split(" INFO ", 1)[-1] if lines else "no cancellation logged"
    print("server: " + server)
    if args.json:
        import json
        import os
        from importlib.metadata import version
        with open(args.json, "w") as f:
            json.dump({"clip": os.path.basename(args.clip), "long_steps": args.long_steps, "steps": args.steps,
                       "cancel_after_s": args.cancel_after, "next_decode_s": after, "free_decode_s": free,
                       "server": server, "cpus": os.cpu_count(), "torch": version("torch"),
                       "gradio": version("gradio")}, f, indent=1)
    return 0


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
