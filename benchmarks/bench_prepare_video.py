"""Memory and time of video_io.prepare_video on inputs that used to blow up, and on an ordinary clip.

    python benchmarks/bench_prepare_video.py                    # this checkout
    python benchmarks/bench_prepare_video.py --against 77f4cb1  # and another revision's video_io, side by side

Each case runs in a fresh process and reports the wall time and the rise of peak RSS (ru_maxrss) over the
process's state before the call: a 17-frame 1 x 8000 px strip (an extreme aspect ratio, upscaled to 64 px),
5 frames of 640 x 360 at 0.02 fps (a crafted frame rate, resampled to 8 fps: 2,001 frames), and 3 s of
640 x 360 at 30 fps (an ordinary upload). --against loads that revision's flexvid/video_io.py through
`git show`, so it needs a git checkout; old revisions may need several GiB on the first two cases.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CASES = {  # name: (frames, height, width, fps)
    "strip 1 x 8000, 17 frames": (17, 1, 8000, 8.0),
    "640 x 360 at 0.02 fps, 5 frames": (5, 360, 640, 0.02),
    "640 x 360 at 30 fps, 90 frames": (90, 360, 640, 30.0),
}

CHILD = """
import importlib.util, resource, subprocess, sys, time
import numpy as np
sys.path.insert(0, {repo!r})
rev, (t, h, w, fps) = {rev!r}, {case!r}
if rev:
    src = subprocess.run(["git", "-C", {repo!r}, "show", rev + ":flexvid/video_io.py"], capture_output=True,
                         text=True, check=True).stdout.replace("from .hub import", "from flexvid.hub import")
    vio = importlib.util.module_from_spec(importlib.util.spec_from_loader("video_io_" + rev, loader=None))
    exec(src, vio.__dict__)
else:
    from flexvid import video_io as vio
frames = np.random.default_rng(0).integers(0, 256, (t, h, w, 3), dtype=np.uint8)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
out = vio.prepare_video(frames, fps, target_fps=8.0, size=64)
elapsed = time.perf_counter() - start
rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(f"{{elapsed:.3f}} {{rise:.0f}} {{tuple(out.shape)}}")
"""


def measure(rev: str | None, case: tuple) -> str:
    r = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO), rev=rev, case=case)],
                       capture_output=True, text=True)
    if r.returncode:
        return f"failed ({(r.stderr.strip().splitlines() or ['killed'])[-1][:80]})"
    seconds, mib, shape = r.stdout.split(maxsplit=2)
    return f"{float(seconds):7.3f} s, peak RSS +{int(mib):,} MiB -> {shape.strip()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", default=None, metavar="REV", help="also measure this git revision's video_io")
    args = p.parse_args()
    for name, case in CASES.items():
        print(f"{name}:")
        print(f"  this checkout   {measure(None, case)}")
        if args.against:
            print(f"  {args.against:<15} {measure(args.against, case)}")


if __name__ == "__main__":
    from flexvid.cli import run_script
    run_script(main)
