"""The `flexvid` command: training, reconstruction, evaluation and the app.

    flexvid reconstruct clip.mp4 --k 1 2 4 32 --out recon/
    flexvid train-vae --out-dir runs/vae
    flexvid train-teacher --out-dir runs/teacher
    flexvid train-tokenizer --vae runs/vae/export --out-dir runs/tokenizer
    flexvid eval-tokenizer --out eval/tokenizer
    flexvid train-generator --cond text --out-dir runs/generator-text
    flexvid train-reranker --teacher runs/scorer/export --out assets/reranker
    flexvid select-samples --cond class --n 768 --candidates 4 --out runs/sel/class.safetensors
    flexvid train-generator --cond class --init assets/generator-class --selected runs/sel/class.safetensors
    flexvid generate "a small blue square moving up" --k 8 --frames 17 --best-of 4 --out clip.mp4
    flexvid eval-generator --out eval/generator
    flexvid app
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOKENIZER = str(REPO_ROOT / "assets" / "tokenizer")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help of every flexvid command: the module's docstring as written, and each option's default
    (where it has one and its help does not already say it)."""

    @staticmethod
    def _shows_default(action) -> bool:
        d = action.default  # 0 is shown; None, False (a store_true flag), "" and [] say nothing
        on_off = isinstance(action, argparse.BooleanOptionalAction)  # --x / --no-x: on or off
        return bool(action.option_strings) and (on_off or not (d is None or d is False or isinstance(
            d, (str, list)) and (not d or d == argparse.SUPPRESS)))

    def _get_help_string(self, action):
        text = (action.help or "").removesuffix(" (default: %(default)s)")  # Python 3.10's own, for on/off flags
        if self._shows_default(action) and "(default" not in text:
            shown = ("on" if action.default else "off") if isinstance(action, argparse.BooleanOptionalAction) \
                else "%(default)s"
            text += (" " if text else "") + f"(default: {shown})"
        return text

    def _format_action(self, action):
        if not action.help and self._shows_default(action):  # argparse prints no help line for an empty help
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


PAD = 2  # white pixels between the videos of a side-by-side
WRAP_WIDTH = 4096  # a side-by-side wider than this goes on in rows


def _side_by_side_layout(n: int, h: int, w: int, upscale: int) -> int:
    """Columns for the side-by-side of n videos of h x w: all in one row, or in rows where one row would be
    wider than WRAP_WIDTH; a ValueError (before any decoding) where even that does not fit H.264."""
    from . import video_io
    if max(h, w) * upscale > video_io.MAX_SIDE:
        raise ValueError(f"--upscale {upscale} makes {w * upscale} x {h * upscale} px videos, more than H.264's "
                         f"{video_io.MAX_SIDE} a side")
    # rows from WRAP_WIDTH px on (many decoders and browsers stop at 4,096 or 8,192 px), H.264's limit at most
    cols = min(n, max(1, (min(WRAP_WIDTH, video_io.MAX_SIDE) // upscale + PAD) // (w + PAD)))
    rows = -(-n // cols)
    if (rows * h + (rows - 1) * PAD) * upscale > video_io.MAX_SIDE:
        raise ValueError(f"the side-by-side of {n} videos does not fit H.264's {video_io.MAX_SIDE} px a side at "
                         f"--upscale {upscale}: give fewer --k values or a smaller --upscale")
    return cols


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 or what == "k" else f"{n} {what}s"


def _missing_folders(path: str) -> list[str]:
    """The folders of `path` that do not exist yet, outermost first: those os.makedirs would make (a `..`
    in it too: new/../out makes new and out)."""
    parts, missing = Path(path).parts, []
    for i in range(1, len(parts) + 1):
        prefix = os.path.join(*parts[:i])
        if parts[i - 1] not in (".", "..") and not os.path.exists(prefix):
            missing.append(prefix)
    return missing


def _remove_made(made: list[str]) -> None:
    """Remove the folders a refused run made (_missing_folders), innermost first, each only if empty."""
    for folder in reversed(made):
        with contextlib.suppress(OSError):  # (a folder not empty is left)
            os.rmdir(folder)


def reconstruct_main(argv=None) -> int:
    from .training import add_dtype_argument, add_threads_argument, set_threads

    p = argparse.ArgumentParser(formatter_class=HelpFormatter, prog="flexvid reconstruct",
                                description="Tokenize a clip and decode it from several token prefixes. Writes to "
                                            "--out: original.mp4 (the clip as the model takes it), kNNN.mp4 per k "
                                            "(k008.mp4), side_by_side.mp4 (the original and every k, labelled), "
                                            "metrics.csv (bits, PSNR and SSIM per k) and tokens.npz; an earlier "
                                            "run's kNNN.mp4 for other k are removed.")
    p.add_argument("clip", help="a video file (mp4, webm, avi, mov, ...)")
    p.add_argument("--k", type=int, nargs="+", default=None, help="tokens per time step to keep (default: 1, 2, 4, ..., K)")
    p.add_argument("--out", default="recon", help="output folder")
    p.add_argument("--model", default=DEFAULT_TOKENIZER,
                   help="tokenizer folder or Hugging Face repo id (default: the embedded assets/tokenizer)")
    p.add_argument("--steps", type=int, default=None, help="decoder Euler steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (1 = none; default: the model's)")
    p.add_argument("--guidance-mode", choices=["cfg", "apg"], default=None,
                   help="plain CFG or APG (default: the model's)")
    p.add_argument("--noise-scale", type=float, default=None, help="scale of the decoder's starting noise, in [0, 2] (1: sample; below 1: nearer the mean; default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-frames", type=int, default=161,
                   help="cap on frames after resampling to the model's fps (the clip is cut to the longest 1 + 4n "
                        "within it)")
    p.add_argument("--device", default="auto")
    add_dtype_argument(p)
    p.add_argument("--upscale", type=int, default=4, help="nearest-neighbour upscale of the written mp4s")
    add_threads_argument(p)
    args = p.parse_args(argv)

    from . import video_io
    from .pipeline import VideoFlexTok

    made: list[str] = []  # the folders of --out that this run made: removed again if the run is refused
    try:
        if not 1 <= args.upscale <= 16:
            raise ValueError(f"--upscale must be in [1, 16], got {args.upscale}")
        if args.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
        video_io.check_output(args.out, folder=True, name="--out")
        set_threads(args.threads)
        try:  # made now, not after the decoding: a place check_output cannot judge (a read-only mount) fails here
            made = _missing_folders(args.out)
            os.makedirs(args.out, exist_ok=True)
        except OSError as e:
            made = []
            raise ValueError(f"--out {args.out!r}: cannot make the folder ({e.strerror or e})") from None
        tok = VideoFlexTok.from_pretrained(args.model, device=args.device, dtype=args.dtype)
        if args.k is not None and not all(1 <= k <= tok.n_tokens for k in args.k):  # before reading the clip
            raise ValueError(f"--k must lie in [1, {tok.n_tokens}] (this model's tokens per time step), got "
                             f"{' '.join(map(str, args.k))}")
        ks = sorted(set(args.k or tok.ladder()))
        names = ["original.mp4", *(f"k{k:03d}.mp4" for k in ks), "metrics.csv", "side_by_side.mp4", "tokens.npz"]
        for name in names:  # each file too, before the work: a folder of its name in --out would refuse it after
            video_io.check_output(os.path.join(args.out, name), name="--out")
        # an earlier run's prefixes beside this run's side-by-side would pass for this clip's (files alone)
        stale = sorted(f for f in os.listdir(args.out) if re.fullmatch(r"k\d{3}\.mp4", f) and int(f[1:4]) not in ks
                       and os.path.isfile(os.path.join(args.out, f)))
        t0 = time.time()
        first, fps = video_io.read_video(args.clip, max_frames=1)  # the checks, the clip's size and frame rate
        # decode no more source frames than the capped clip needs, each shrunk as it is read
        need = math.ceil((args.max_frames + 1) * fps / tok.fps) + 1
        counts: dict = {}
        frames, fps = video_io.read_video(args.clip, max_frames=need, shrink_to=tok.size, counts=counts)
        n_read = len(frames)
        frames = video_io.prepare_video(frames, fps, target_fps=tok.fps, size=tok.size, max_frames=args.max_frames)
        x = video_io.to_model(frames)
        grid = tok.tokenize(x)[0]
        layout = _side_by_side_layout(1 + len(ks), frames.shape[1], frames.shape[2], args.upscale)
        recon = tok.reconstruct(x, ks=ks, steps=args.steps, guidance=args.guidance,
                                guidance_mode=args.guidance_mode, seed=args.seed, tokens=grid,
                                noise_scale=args.noise_scale)
    except (ValueError, KeyboardInterrupt) as e:
        _remove_made(made)  # empty: nothing was written in them
        if isinstance(e, KeyboardInterrupt):
            raise
        print(f"flexvid reconstruct: {e}", file=sys.stderr)
        return 2
    elapsed = time.time() - t0
    h0, w0 = first.shape[1:3]
    said = [f"{os.path.basename(args.clip)}: {w0}x{h0} at {fps:g} fps, {_count(n_read, 'frame')} read"]
    if counts["repeated"] or counts["dropped"]:
        said[0] = (f"{os.path.basename(args.clip)}: {w0}x{h0} at a variable frame rate, read at {fps:g} fps by its "
                   f"timestamps: {n_read} frames ({counts['repeated']} repeated over gaps, {counts['dropped']} "
                   "dropped in bursts)")
    cut_short = video_io.ended_early(counts, args.clip)
    if cut_short:
        said.append(cut_short)
    elif n_read == 1:
        said.append("a single frame (a still image?)")
    # the frames the clip gives at the model's rate, before they are fitted to a valid length (1 + 4n)
    resampled = n_read if fps == tok.fps else max(1, math.floor(n_read * tok.fps / fps + 1e-9))
    if n_read >= need or len(frames) < resampled:
        said.append(f"cut to its first {_count(len(frames), 'frame')} at {tok.fps:g} fps (--max-frames "
                    f"{args.max_frames}; a clip is 1 + 4n frames)")
    elif len(frames) > resampled:
        said.append(f"{resampled} frames at {tok.fps:g} fps, padded to {len(frames)} (1 + 4n; the last frame "
                    f"repeated; the videos, PSNR and SSIM are of its own {resampled})")
    else:
        said.append(f"{_count(len(frames), 'frame')} at {tok.fps:g} fps")
    if (w0, h0) != (tok.size, tok.size):
        said.append(f"resized and centre-cropped to {tok.size}x{tok.size}")
    report = ["; ".join(said)]  # printed once every file is written: a closed stdout (| head) cuts no output short
    removed = []
    for f in stale:
        with contextlib.suppress(FileNotFoundError):
            try:
                os.remove(os.path.join(args.out, f))
                removed.append(f)
            except OSError as e:
                report.append(f"could not remove {f}, an earlier reconstruction's ({e.strerror or e})")
    if removed:
        report.append(f"removed {', '.join(removed)}: an earlier reconstruction's, not this clip's")
    from .evaluate import psnr_video, ssim_video
    from .runtime import bits_and_bitrate

    # tiles labelled at up to 4x (text on a 64 px tile is unreadable), the rest of --upscale when written
    pre = next(f for f in (4, 3, 2, 1) if args.upscale % f == 0)
    own = min(resampled, len(frames))  # the clip's frames, not the padding (its last frame repeated)
    tiles = [video_io.label(video_io.upscale(frames[:own], pre), "original")]
    video_io.write_video(os.path.join(args.out, "original.mp4"), frames[:own], fps=tok.fps, upscale=args.upscale)
    rows = ["k,tokens,bits,psnr_db,ssim"]
    report.append(f"{'k':>4} {'tokens':>7} {'bits':>8} {'PSNR dB':>8} {'SSIM':>6}")
    for k in ks:
        out = video_io.from_model(recon[k][:, :own])
        tiles.append(video_io.label(video_io.upscale(out, pre), f"k = {k}"))
        video_io.write_video(os.path.join(args.out, f"k{k:03d}.mp4"), out, fps=tok.fps, upscale=args.upscale)
        p, q = psnr_video(x[:, :own], recon[k][:, :own]), ssim_video(x[:, :own], recon[k][:, :own])
        bits = bits_and_bitrate(k, grid.shape[0], tok.codebook_size, len(frames) / tok.fps)[0]
        none = math.isnan(q)  # frames under 11 px: no SSIM (an empty field, "-")
        rows.append(f"{k},{k * grid.shape[0]},{bits:.0f},{p:.3f},{'' if none else f'{q:.4f}'}")
        report.append(f"{k:>4} {k * grid.shape[0]:>7} {bits:>8,.0f} {p:>8.2f} {'-' if none else f'{q:.3f}':>6}")
    with open(os.path.join(args.out, "metrics.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    tiled = video_io.side_by_side(tiles, pad=PAD) if layout == len(tiles) else video_io.grid(tiles, layout, pad=PAD)
    video_io.write_video(os.path.join(args.out, "side_by_side.mp4"), tiled, fps=tok.fps, upscale=args.upscale // pre)
    np.savez(os.path.join(args.out, "tokens.npz"), tokens=grid.numpy(), codebook_size=tok.codebook_size,
             n_tokens=tok.n_tokens, frames=len(frames), own_frames=own, fps=tok.fps,
             dtype=str(tok.dtype).replace("torch.", ""))  # bf16 and fp32 may round a token apart
    listed = ", ".join(names[1:1 + min(len(ks), 3)]) + (" ..." if len(ks) > 3 else "")
    print("\n".join(report))
    print(f"{_count(len(frames), 'frame')} -> tokens {tuple(grid.shape)}, read, tokenized and decoded at "
          f"{_count(len(ks), 'k')} in {elapsed:.1f} s; wrote original.mp4, "
          f"{len(ks)} reconstruction{'s' if len(ks) > 1 else ''} ({listed}), side_by_side.mp4 (labelled, k "
          f"ascending), metrics.csv and tokens.npz to {args.out}")
    return 0


COMMANDS = {
    "reconstruct": ("flexvid.cli", "reconstruct_main"),
    "train-vae": ("flexvid.train_vae", "main"),
    "train-teacher": ("flexvid.teacher", "main"),
    "train-tokenizer": ("flexvid.train_tokenizer", "main"),
    "eval-tokenizer": ("flexvid.evaluate", "main"),
    "train-generator": ("flexvid.train_generator", "main"),
    "train-reranker": ("flexvid.rerank", "main"),
    "select-samples": ("flexvid.select_samples", "main"),
    "generate": ("flexvid.generate", "main"),
    "eval-generator": ("flexvid.eval_generator", "main"),
    "app": ("flexvid.app_ui", "main"),
}


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll says POLLERR on its end)."""
    try:
        import select
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no file behind stdout (a test's capture)
        return False


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        usage = f"usage: flexvid COMMAND [options]\n\ncommands: {names}\n\n'flexvid COMMAND --help' for the options of one."
        if not argv or argv[0] in ("-h", "--help"):
            print(usage)
            return 0
        print(f"flexvid: unknown command {argv[0]!r}\n\n{usage}", file=sys.stderr)
        return 2
    import importlib
    import warnings
    module, fn = COMMANDS[argv[0]]
    # a warning is one line for the user (what was skipped and why), not the library line that raised it
    formatwarning = warnings.formatwarning  # put back after the command (main may run several in a process)
    warnings.formatwarning = lambda message, category, *rest: f"flexvid {argv[0]}: warning: {message}\n"
    prog, sys.argv[0] = sys.argv[0], f"flexvid {argv[0]}"  # argparse's prog for the commands that do not name it
    try:
        result = getattr(importlib.import_module(module), fn)(argv[1:])
    except ValueError as e:  # bad settings, a missing or unreadable model folder, a clip that cannot be read
        print(f"flexvid {argv[0]}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's status for SIGINT
        print(f"\nflexvid {argv[0]}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed by its reader (| head): the rest of the output goes nowhere
        if not _stdout_closed():  # another pipe (a worker process's) is an error of its own, raised as it is
            raise
        with contextlib.suppress(OSError, ValueError):  # (Python's own flush at exit would fail on it again)
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, sys.stdout.fileno())
            finally:
                os.close(null)
        return 1
    except SystemExit as e:  # argparse's own exits keep their status; a message (SystemExit("...")) is an error
        if isinstance(e.code, str):
            print(f"flexvid {argv[0]}: {e.code}", file=sys.stderr)
            return 2
        raise
    finally:
        sys.argv[0] = prog
        warnings.formatwarning = formatwarning
    return result if isinstance(result, int) else 0


def run_script(main) -> None:
    """A script's or benchmark's main (benchmarks/, scripts/) with errors as the flexvid commands give them: a
    ValueError (a missing model, a bad value) or a SystemExit message in one line, exit status 2."""
    name = os.path.basename(sys.argv[0])
    try:
        result = main()
    except ValueError as e:
        print(f"{name}: {e}", file=sys.stderr)
        sys.exit(2)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(f"{name}: {e.code}", file=sys.stderr)
            sys.exit(2)
        raise
    sys.exit(result if isinstance(result, int) else 0)


def run_module(command: str) -> None:
    """`python -m flexvid.train_vae ...` (and torchrun -m) as `flexvid train-vae ...`: errors in one line."""
    sys.exit(main([command, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
