"""Generator evaluation: prompt faithfulness over the token budget, paraphrased prompts, long videos.

    flexvid eval-generator --n 64 --out eval/generator
    python -m flexvid.eval_generator --text-model assets/generator-text --class-model none --n 16

Videos are generated for held-out conditions (the shapes world's test split, shared design note
"shapes-world.md"), decoded with VideoFlexTok, and read back by flexvid.probe:
1. Faithfulness: one video per test clip for every k of the ladder 1, 2, 4, ..., K. The text model gets
   the clip's caption and is scored on the clip's main object (colour, shape, size, motion, all); rates
   are also split into one-object captions (the clean case) and two-object captions. The class model
   gets the clip's label; a class names colour, shape and motion but not size, so for it "all" means
   colour + shape + motion, and the probe looks at the two largest objects (a class does not say
   whether a second object is present) for the label's colour. The probe on the clips themselves is the
   ceiling. A coarse-to-fine token order should get the semantics right at small k (VideoFlexTok,
   arXiv 2604.12887).
2. Paraphrase (text model, k = K): prompts worded unlike any training caption ("a tiny blue ball
   drifting to the left"), built from the main object's attributes with synonyms and templates, against
   the main object's training-style caption on the same seeds.
3. Long video: 81-frame generations (21 time steps) at k = K; every 17-frame chunk (frames 0-16,
   16-32, ...) is probed on its own for the main object's colour and shape, and the rate at which both
   stay right through all chunks is reported (drift shows as a falling curve).
4. Condition probe: without sampling, is the true condition the most likely one for a test clip's own
   tokens, against the same condition with one attribute of the main object changed? It tells an
   attribute the generator never learned from one that sampling or decoding loses.
Writes DIR/eval.json and DIR/eval.html (plotly, works offline) and prints a table.

Letters: T frames, K tokens per step, k kept.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import time

import numpy as np
import torch

from . import evaluate as evaluate_tokenizer
from . import probe, shapes
from .cli import HelpFormatter
from .hub import command_line, display_name
from .generate import DEFAULT_MODELS, VideoGenerator, frames_to_steps
from .pipeline import chunk_bounds
from .quantizer import prefix_ladder
from .training import add_dtype_argument, add_threads_argument, set_threads

TEXT_ATTRS = ("color", "shape", "size", "motion")
CLASS_ATTRS = ("color", "shape", "motion")  # a class has no size
CLASS_OBJECTS = 2  # detections searched for a class's colour: a class may come with a second object
CHUNK_FRAMES = 17  # long videos are probed per chunk of 17 frames (2 s), overlapping by one frame


# ----------------------------------------------------------------------------- paraphrases
# Synonyms that no training caption uses ("a {size} {color} {shape} moving {motion}" / "... standing
# still"); colours keep their names, so a paraphrase tests the wording, not the palette.
SIZE_WORDS = {"small": ("tiny", "little"), "large": ("big", "huge")}
SHAPE_WORDS = {"circle": ("ball", "disc"), "square": ("box", "block"), "triangle": ("triangle", "triangular shape")}
MOTION_WORDS = {
    "left": ("drifting to the left", "heading left", "sliding leftward"),
    "right": ("drifting to the right", "heading right", "sliding rightward"),
    "up": ("going up", "rising", "floating upward"),
    "down": ("going down", "sinking", "falling downward"),
    "still": ("sitting still", "not moving", "staying in place"),
}
TEMPLATES = ("a {size} {color} {shape} {motion}", "one {size} {color} {shape} {motion}",
             "there is a {size} {color} {shape} {motion}", "{size} {color} {shape}, {motion}")


def paraphrase_prompt(obj: shapes.ShapeObject, rng: np.random.Generator) -> str:
    """A prompt for one object worded unlike its training caption: a template and synonyms drawn by rng.
    "moving <direction>" and "standing still" never appear, so the prompt always differs from obj.caption()."""
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    return pick(TEMPLATES).format(size=pick(SIZE_WORDS[obj.size]), color=obj.color,
                                  shape=pick(SHAPE_WORDS[obj.shape]), motion=pick(MOTION_WORDS[obj.motion]))


def _phrases() -> dict[str, dict[str, str]]:
    """{attribute: {phrase: value}}: every synonym plus the training captions' own words."""
    table = {"color": {c: c for c in shapes.COLOR_NAMES}, "size": {s: s for s in shapes.SIZE_NAMES},
             "shape": {s: s for s in shapes.SHAPES},
             "motion": {**{f"moving {m}": m for m in shapes.MOTIONS if m != "still"}, "standing still": "still"}}
    for attr, words in (("size", SIZE_WORDS), ("shape", SHAPE_WORDS), ("motion", MOTION_WORDS)):
        for value, options in words.items():
            table[attr].update({p: value for p in options})
    return table


PHRASES = _phrases()


def parse_prompt(prompt: str) -> dict[str, str | None]:
    """Read one object's attributes back from a caption or paraphrase: {attr: value or None}. The
    longest phrase wins ("triangular shape" before "triangle")."""
    text = " " + re.sub(r"[^a-z]+", " ", prompt.lower()) + " "
    out = {}
    for attr, table in PHRASES.items():
        hits = [p for p in table if f" {p} " in text]
        out[attr] = table[max(hits, key=len)] if hits else None
    return out


# ----------------------------------------------------------------------------- scoring
def attributes(cond: str) -> tuple[str, ...]:
    return TEXT_ATTRS if cond == "text" else CLASS_ATTRS


def score_label(video, label: int) -> dict:
    """Booleans {"color","shape","motion","all","detected"} of a video for a class label: the detection
    with the label's colour among the CLASS_OBJECTS largest, else the largest (colour wrong)."""
    color, shape, motion = shapes.class_attributes(label)
    dets = probe.detect(video, n_objects=CLASS_OBJECTS)
    det = next((d for d in dets if d.color == color), dets[0] if dets else None)
    want = {"color": color, "shape": shape, "motion": motion}
    res = {a: det is not None and getattr(det, a) == v for a, v in want.items()}
    res["all"] = all(res.values())
    res["detected"] = det is not None
    return res


def score(video, ref, cond: str) -> dict:
    """Main-object booleans of one video. ref: a list of ShapeObjects (text) or a class label (class)."""
    return probe.score_clip(video, ref) if cond == "text" else score_label(video, ref)


def rates(rows: list[dict], keys) -> dict:
    """Mean of each boolean key over per-video rows (0 for no rows)."""
    return {a: sum(bool(r[a]) for r in rows) / max(len(rows), 1) for a in keys}


# ----------------------------------------------------------------------------- generation
def conditions(gen: VideoGenerator, clips) -> tuple[list, list]:
    """(conditions, references) of clips: captions and objects (text), or labels and labels (class)."""
    if gen.cfg.cond == "text":
        return [c.caption for c in clips], [list(c.objects) for c in clips]
    return [c.label for c in clips], [c.label for c in clips]


def generate_videos(gen: VideoGenerator, conds: list, k: int, frames: int, seed: int = 0, batch: int = 16,
                    **sampler) -> list[torch.Tensor]:
    """Videos (3, T, H, W) for the conditions, `batch` per call; condition i samples its tokens and its
    decode noise from seed + i, as it would alone: the same videos whatever the batch, and every k decoded
    from the same noise."""
    out = []
    for j in range(0, len(conds), batch):
        chunk = conds[j:j + batch]
        out += gen.generate(chunk, k=k, frames=frames, seed=list(range(seed + j, seed + j + len(chunk))), **sampler)
    return out


def _sampler(**kw) -> dict:
    """generate keywords without the unset ones (None = the model's default)."""
    return {k: v for k, v in kw.items() if v is not None}


# ----------------------------------------------------------------------------- 1. faithfulness
def faithfulness(gen: VideoGenerator, clips, ks=None, frames: int = 17, seed: int = 0, batch: int = 16,
                 **sampler) -> dict:
    """Generate one video per clip's condition at every k of ks (default the ladder) and probe it.

    clips: shapes Clips of `frames` frames (their videos are the probe's ceiling). sampler: temperature,
    top_k, top_p, guidance, decode_steps, decode_guidance for VideoGenerator.generate (None = default).
    Returns {"cond", "ks", "attrs", "n", "rates": {attr: [per k]}, "ground_truth": {attr: rate}} with the
    attrs plus "all" and "detected"; for a text model also "one_object" and "two_objects":
    {"n", "rates": {attr: [per k]}} over the clips with one and two objects."""
    cond = gen.cfg.cond
    ks = sorted(set(int(k) for k in ks)) if ks else prefix_ladder(gen.cfg.K)
    keys = (*attributes(cond), "all", "detected")
    conds, refs = conditions(gen, clips)
    sampler = _sampler(**sampler)
    rows = {}
    for k in ks:
        videos = generate_videos(gen, conds, k, frames, seed, batch, **sampler)
        rows[k] = [score(v, r, cond) for v, r in zip(videos, refs)]

    def per_k(idx):  # {attr: [rate over the clips idx, per k]}
        return {a: [sum(bool(rows[k][i][a]) for i in idx) / max(len(idx), 1) for k in ks] for a in keys}

    res = {"cond": cond, "ks": ks, "attrs": list(attributes(cond)), "n": len(clips), "frames": frames,
           "rates": per_k(range(len(clips))),
           "ground_truth": rates([score(c.video, r, cond) for c, r in zip(clips, refs)], keys)}
    if cond == "text":
        for name, n_obj in (("one_object", 1), ("two_objects", 2)):
            idx = [i for i, c in enumerate(clips) if len(c.objects) == n_obj]
            res[name] = {"n": len(idx), "rates": per_k(idx) if idx else None}  # none of that kind: no rate
    return res


# ----------------------------------------------------------------------------- 1b. best of N
def best_of(gen: VideoGenerator, clips, n: int = 4, k: int | None = None, frames: int = 17, seed: int = 0,
            batch: int = 16, reranker=None, **sampler) -> dict:
    """n candidate videos per clip's condition at budget k (default K), all probed: the rates of the
    first candidate (a plain sample), of the one the reranker picks (what generate(best_of=n) returns)
    and of the best of the n (an oracle: any candidate with every attribute right)."""
    cond = gen.cfg.cond
    k = gen.cfg.K if k is None else k
    keys = (*attributes(cond), "all")
    conds, refs = conditions(gen, clips)
    rep = [c for c in conds for _ in range(n)]
    videos = generate_videos(gen, rep, k, frames, seed, max(1, batch // n) * n, **_sampler(**sampler))
    scores = (reranker or gen.reranker).score(videos, rep, cond).view(len(clips), n)
    rows = [score(v, refs[i // n], cond) for i, v in enumerate(videos)]
    pick = scores.argmax(1).tolist()
    return {"cond": cond, "k": k, "candidates": n, "n": len(clips), "attrs": list(attributes(cond)),
            "first": rates([rows[i * n] for i in range(len(clips))], keys),
            "reranked": rates([rows[i * n + j] for i, j in enumerate(pick)], keys),
            "oracle_all": float(np.mean([any(rows[i * n + j]["all"] for j in range(n)) for i in range(len(clips))]))}


# ----------------------------------------------------------------------------- 2. paraphrase
def paraphrase(gen: VideoGenerator, clips, k: int | None = None, frames: int = 17, seed: int = 0,
               batch: int = 16, prompt_seed: int = 0, baseline: bool = True, **sampler) -> dict:
    """Paraphrased prompts for the clips' main objects (text model), generated at k (default K) and
    probed against the main object alone. With baseline, the main object's training-style caption is
    generated on the same seeds for a paired comparison.
    Returns {"k", "n", "prompts", "captions", "rates": {attr: rate}, "baseline": {attr: rate} or None}."""
    if gen.cfg.cond != "text":
        raise ValueError("paraphrases need a text-to-video model")
    k = gen.cfg.K if k is None else k
    rng = np.random.default_rng(prompt_seed)
    mains = [c.objects[0] for c in clips]
    prompts = [paraphrase_prompt(o, rng) for o in mains]
    captions = [o.caption() for o in mains]
    keys = (*TEXT_ATTRS, "all", "detected")
    sampler = _sampler(**sampler)

    def run(texts):
        videos = generate_videos(gen, texts, k, frames, seed, batch, **sampler)
        return rates([probe.score_clip(v, [o]) for v, o in zip(videos, mains)], keys)

    return {"k": k, "n": len(clips), "frames": frames, "prompts": prompts, "captions": captions,
            "rates": run(prompts), "baseline": run(captions) if baseline else None}


# ----------------------------------------------------------------------------- 3. long video
def long_video(gen: VideoGenerator, clips, frames: int = 81, k: int | None = None, seed: int = 0, batch: int = 8,
               chunk: int = CHUNK_FRAMES, **sampler) -> dict:
    """Generate `frames`-frame videos for the clips' conditions at k (default K) and probe every chunk
    (frames 0-16, 16-32, ...) on its own for the main object's colour and shape.
    Returns {"chunks": [[a, b]], "color", "shape", "color_shape": [rate per chunk], "through_all":
    {"color", "shape", "color_shape": rate right in every chunk}, ...}."""
    cond = gen.cfg.cond
    k = gen.cfg.K if k is None else k
    t = frames_to_steps(frames, gen.cfg.max_t)
    conds, refs = conditions(gen, clips)
    videos = generate_videos(gen, conds, k, frames, seed, batch, **_sampler(**sampler))
    bounds = chunk_bounds(frames, chunk)
    right = np.zeros((len(clips), len(bounds), 2), bool)  # (clip, chunk, [colour, shape])
    for i, (v, r) in enumerate(zip(videos, refs)):
        for c, (a, b) in enumerate(bounds):
            s = score(v[:, a:b + 1], r, cond)
            right[i, c] = s["color"], s["shape"]
    right = np.concatenate([right, right.all(-1, keepdims=True)], -1)  # (clip, chunk, [colour, shape, both])
    n = max(len(clips), 1)
    per_chunk, through = right.sum(0) / n, right.all(1).sum(0) / n  # (chunk, 3), (3,)
    keys = ("color", "shape", "color_shape")
    return {"cond": cond, "frames": frames, "time_steps": t, "k": k, "n": len(clips),
            "chunks": [[a, b] for a, b in bounds], **{key: per_chunk[:, j].tolist() for j, key in enumerate(keys)},
            "through_all": {key: float(through[j]) for j, key in enumerate(keys)}}


# ----------------------------------------------------------------------------- 4. condition probe
ATTR_OPTIONS = {"color": shapes.COLOR_NAMES, "shape": shapes.SHAPES, "size": shapes.SIZE_NAMES,
                "motion": shapes.MOTIONS}


def _swapped(clip, attr: str, value: str, cond: str):
    """The clip's condition with the main object's attribute set to value."""
    objs = [dataclasses.replace(clip.objects[0], **{attr: value}), *clip.objects[1:]]
    if cond == "text":
        return " and ".join(o.caption() for o in objs)
    return shapes.class_index(objs[0].color, objs[0].shape, objs[0].motion)


@torch.no_grad()
def condition_probe(gen: VideoGenerator, clips, ks=None) -> dict:
    """Does the generator's likelihood tell each attribute of the condition apart? No sampling, no decoder,
    no video probe: the clips are tokenized, and the first k tokens per step of each are scored under its
    own condition and under the same condition with one attribute of the main object changed (every
    other colour, shape, size or motion). A hit is the true condition having the strictly lowest
    negative log-likelihood; chance is one over the number of options. Low rates for an attribute say
    the generator did not learn it (rather than its sampling or the decoder losing it).
    Returns {"cond", "ks", "attrs", "n", "rates": {attr: [per k]}, "chance": {attr: rate}}."""
    cond = gen.cfg.cond
    ks = sorted(set(int(k) for k in ks)) if ks else prefix_ladder(gen.cfg.K)
    attrs = attributes(cond)
    model = gen.model
    hits = {a: [0] * len(ks) for a in attrs}
    grids = []
    for i in range(0, len(clips), 16):
        grids += gen.tokenizer.tokenize(torch.stack([shapes.to_tensor(c.video) for c in clips[i:i + 16]]))
    for clip, grid in zip(clips, grids):
        grid = grid.long().to(gen.device)  # (t, K)
        for a in attrs:
            options = [_swapped(clip, a, v, cond) for v in ATTR_OPTIONS[a]]
            true = ATTR_OPTIONS[a].index(getattr(clip.objects[0], a))
            c = gen.condition(options)
            for j, k in enumerate(ks):
                x = grid[None, :, :k].expand(len(options), -1, -1)
                logits = model(x, c).float()
                nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x.flatten(), reduction="none")
                nll = nll.view(len(options), -1).sum(1)
                others = torch.cat([nll[:true], nll[true + 1:]])
                hits[a][j] += int(bool((nll[true] < others).all()))
    n = max(len(clips), 1)
    return {"cond": cond, "ks": ks, "attrs": list(attrs), "n": len(clips),
            "rates": {a: [h / n for h in hits[a]] for a in attrs},
            "chance": {a: 1 / len(ATTR_OPTIONS[a]) for a in attrs}}


# ----------------------------------------------------------------------------- report
def _fig_vs_k(ks, series: dict, title: str, ceiling: dict | None = None):
    go, COLORS = evaluate_tokenizer._plotly()
    fig = go.Figure()
    for (name, ys), color in zip(series.items(), COLORS):
        dash = "dash" if name.endswith(")") else None  # the one/two-object splits
        fig.add_trace(go.Scatter(x=ks, y=ys, mode="lines+markers", name=name, line={"color": color, "dash": dash}))
    for (name, y), color in zip((ceiling or {}).items(), COLORS):
        fig.add_hline(y=y, line_dash="dot", line_color=color, opacity=0.5)
    fig.update_xaxes(type="log", tickvals=ks, ticktext=[str(k) for k in ks], title="k (tokens per step, log2)")
    fig.update_layout(title=title, yaxis_title="probe accuracy", yaxis_range=[-0.02, 1.02], height=420, width=720)
    return fig


def _figures(results: dict) -> list:
    go, COLORS = evaluate_tokenizer._plotly()
    figs = []
    for name, f in results["faithfulness"].items():
        series = {a: f["rates"][a] for a in (*f["attrs"], "all")}
        for split in ("one_object", "two_objects"):
            if f.get(split) and f[split]["n"]:
                series[f"all ({split.replace('_', ' ')}, n={f[split]['n']})"] = f[split]["rates"]["all"]
        note = "all = colour + shape + size + motion" if name == "text" else "all = colour + shape + motion (no size)"
        figs.append(_fig_vs_k(f["ks"], series, f"{name} model: probe accuracy vs k ({note}; dotted: ground truth)",
                              {a: f["ground_truth"][a] for a in (*f["attrs"], "all")}))
    for name, cp in (results.get("condition_probe") or {}).items():
        figs.append(_fig_vs_k(cp["ks"], cp["rates"], f"{name} model: condition probe, the true condition most "
                              f"likely for the clip's own tokens (dotted: chance)", cp["chance"]))
    for name, bo in (results.get("best_of") or {}).items():
        keys = (*bo["attrs"], "all")
        fig = go.Figure([go.Bar(x=list(keys), y=[bo[s][a] for a in keys], name=label) for s, label in
                         (("first", "first candidate"), ("reranked", f"best of {bo['candidates']}, reranked"))])
        fig.update_layout(title=f"{name} model: best of {bo['candidates']} at k = {bo['k']} (n = {bo['n']}; any "
                          f"candidate all right: {bo['oracle_all']:.2f})", yaxis_title="probe accuracy",
                          yaxis_range=[0, 1.02], barmode="group", height=420, width=720)
        figs.append(fig)
    pp = results.get("paraphrase")
    if pp:
        keys = (*TEXT_ATTRS, "all")
        bars = [go.Bar(x=list(keys), y=[pp["rates"][a] for a in keys], name="paraphrase")]
        if pp["baseline"]:
            bars.append(go.Bar(x=list(keys), y=[pp["baseline"][a] for a in keys], name="training-style caption"))
        fig = go.Figure(bars)
        fig.update_layout(title=f"Paraphrased prompts vs captions (text model, k = {pp['k']}, n = {pp['n']})",
                          yaxis_title="probe accuracy", yaxis_range=[0, 1.02], barmode="group", height=420, width=720)
        figs.append(fig)
    for name, lv in (results.get("long_video") or {}).items():
        x = [f"{a}-{b}" for a, b in lv["chunks"]]
        fig = go.Figure([go.Scatter(x=x, y=lv[key], mode="lines+markers", name=label, line={"color": color})
                         for (key, label), color in zip((("color", "colour right"), ("shape", "shape right"),
                                                         ("color_shape", "colour and shape right")), COLORS)])
        ta = lv["through_all"]
        fig.update_layout(title=f"{name} model, {lv['frames']}-frame videos (k = {lv['k']}, n = {lv['n']}): per chunk; "
                                f"right through all chunks: colour {ta['color']:.2f}, shape {ta['shape']:.2f}, "
                                f"both {ta['color_shape']:.2f}",
                          xaxis_title="chunk (frames)", yaxis_title="rate", yaxis_range=[-0.02, 1.02],
                          height=420, width=720)
        figs.append(fig)
    return figs


def table(results: dict) -> str:
    """A compact text table of the results."""
    lines = []
    for name, f in results["faithfulness"].items():
        keys = (*f["attrs"], "all")
        splits = [s for s in ("one_object", "two_objects") if f.get(s) and f[s]["n"]]
        head = f"{'k':>5} " + " ".join(f"{a:>6}" for a in keys) + "".join(f" {s.split('_')[0] + '-obj':>8}" for s in splits)
        note = ("all = colour + shape + size + motion" if name == "text"
                else "all = colour + shape + motion: a class has no size")
        prompts = f"{f['n']} test prompt{'s' if f['n'] != 1 else ''}"
        lines += [f"{name} model: {results['models'][name]}, {prompts}, {f['frames']} frames ({note})",
                  head, "-" * len(head)]
        for i, k in enumerate(f["ks"]):
            lines.append(f"{k:>5} " + " ".join(f"{f['rates'][a][i]:6.2f}" for a in keys)
                         + "".join(f" {f[s]['rates']['all'][i]:8.2f}" for s in splits))
        lines.append(f"{'truth':>5} " + " ".join(f"{f['ground_truth'][a]:6.2f}" for a in keys))
        if splits:
            words = [s.split("_")[0] for s in splits]
            lines.append(f"({' / '.join(w + '-obj' for w in words)}: 'all' over the "
                         + " / ".join(str(f[s]["n"]) for s in splits)
                         + f" prompts naming {' / '.join(words)} object{'s' if 'two' in words else ''})")
        lines.append("")
    for name, bo in (results.get("best_of") or {}).items():
        fmt = lambda r: " ".join(f"{a} {r[a]:.2f}" for a in (*bo["attrs"], "all"))  # noqa: E731
        lines += [f"best of {bo['candidates']} ({name}, k = {bo['k']}, n = {bo['n']}): first candidate {fmt(bo['first'])}",
                  f"  reranked {fmt(bo['reranked'])}; any of the {bo['candidates']} all right {bo['oracle_all']:.2f}"]
    pp = results.get("paraphrase")
    if pp:
        fmt = lambda r: ", ".join(f"{a} {r[a]:.2f}" for a in ("color", "motion", "all"))  # noqa: E731
        line = f"paraphrase (text, k = {pp['k']}, n = {pp['n']}): {fmt(pp['rates'])}"
        if pp["baseline"]:
            line += f"; training-style captions: {fmt(pp['baseline'])}"
        lines += [line, f"  e.g. {pp['prompts'][0]!r} for {pp['captions'][0]!r}" if pp["prompts"] else ""]
    for name, cp in (results.get("condition_probe") or {}).items():
        lines.append(f"condition probe ({name}: the true condition most likely for the clip's own tokens, "
                     f"n = {cp['n']}; chance " + ", ".join(f"{a} {cp['chance'][a]:.2f}" for a in cp["attrs"]) + "):")
        lines.append(f"{'k':>7} " + " ".join(f"{a:>6}" for a in cp["attrs"]))
        for i, k in enumerate(cp["ks"]):
            lines.append(f"{k:>7} " + " ".join(f"{cp['rates'][a][i]:6.2f}" for a in cp["attrs"]))
    for name, lv in (results.get("long_video") or {}).items():
        lines.append(f"long video ({name}, {lv['frames']} frames = {lv['time_steps']} steps, k = {lv['k']}, "
                     f"n = {lv['n']}), per chunk colour / shape:")
        lines.append("  " + "  ".join(f"{a}-{b}: {c:.2f}/{s:.2f}" for (a, b), c, s in
                                      zip(lv["chunks"], lv["color"], lv["shape"])))
        ta = lv["through_all"]
        lines.append(f"  right through all chunks: colour {ta['color']:.2f}, shape {ta['shape']:.2f}, "
                     f"both {ta['color_shape']:.2f}")
    return "\n".join(lines).rstrip()


def write_report(results: dict, out: str) -> tuple[str, str]:
    """Write out/eval.json (all numbers) and out/eval.html (plotly figures, library embedded)."""
    return evaluate_tokenizer.write_report(results, out, "Generator evaluation", table(results), _figures(results))


# ----------------------------------------------------------------------------- command
def evaluate(gens: dict[str, VideoGenerator], models: dict[str, str], n: int = 64, n_long: int = 8, ks=None,
             frames: int = 17, long_frames: int = 81, seed: int = 0, batch: int = 16, paraphrases: bool = True,
             long: bool = True, likelihood: bool = True, n_best_of: int = 0, **sampler) -> dict:
    """All evaluations for the loaded generators ({"text": gen, "class": gen}, either may be missing);
    models names their folders for the report."""
    t0 = time.time()
    any_gen = next(iter(gens.values()))
    clips = shapes.fixed_split("test", n, frames)
    res = {"models": models, "n": n, "frames": frames, "faithfulness": {}, "paraphrase": None, "long_video": None,
           "condition_probe": None, "best_of": None}
    for name, gen in gens.items():
        res["faithfulness"][name] = faithfulness(gen, clips, ks, frames, seed, batch, **sampler)
    if n_best_of > 1:
        res["best_of"] = {name: best_of(gen, clips, n_best_of, None, frames, seed, batch, **sampler)
                          for name, gen in gens.items()}
    if likelihood:
        res["condition_probe"] = {name: condition_probe(gen, clips, ks) for name, gen in gens.items()}
    if paraphrases and "text" in gens:
        res["paraphrase"] = paraphrase(gens["text"], clips, None, frames, seed, batch, **sampler)
    if long and n_long > 0:
        long_clips = shapes.fixed_split("test", n_long, long_frames)
        res["long_video"] = {name: long_video(gen, long_clips, long_frames, None, seed, batch, **sampler)
                             for name, gen in gens.items()}
    defaults = {name: {"temperature": g.cfg.temperature, "top_k": g.cfg.top_k, "top_p": g.cfg.top_p,
                       "guidance": g.cfg.guidance, "decode_guidance": g.decode_guidance()
                       if g.decode_guidance() is not None else g.tokenizer.tokenizer.cfg.guidance,
                       "decode_steps": g.tokenizer.tokenizer.cfg.sample_steps} for name, g in gens.items()}
    res["settings"] = {"ks": next(iter(res["faithfulness"].values()))["ks"], "K": any_gen.cfg.K, "seed": seed,
                       "batch": batch, "generator_defaults": defaults, **_sampler(**sampler)}
    res.update({"elapsed_s": time.time() - t0, "torch": torch.__version__, "device": str(any_gen.device),
                "threads": torch.get_num_threads()})
    return res


def _load(path: str, default: str, tokenizer, device: str, dtype=None) -> VideoGenerator | None:
    """A generator, or None for "none" and for a default folder that does not exist (not trained yet)."""
    if path.lower() == "none":
        return None
    if path == default and not os.path.isdir(path):
        print(f"no generator at {os.path.relpath(path)}: skipped")
        return None
    return VideoGenerator.from_pretrained(path, tokenizer=tokenizer, device=device, dtype=dtype)


def share_tokenizers(gens: dict[str, VideoGenerator], device: str, dtype=None) -> dict[str, str]:
    """Give each generator that has not got one loaded the tokenizer it names (VideoGenerator.from_pretrained's
    default: the one it was trained with, else assets/tokenizer), loading each folder or repo id once, so two
    generators of one tokenizer share it. Returns {name: where its tokenizer came from} for those it loaded."""
    from .pipeline import VideoFlexTok
    loaded, where = {}, {}
    for name, g in gens.items():
        spec = g._tokenizer
        if not isinstance(spec, str):  # a VideoFlexTok given by the caller, or already loaded
            continue
        key = os.path.realpath(spec) if os.path.isdir(spec) else spec
        if key not in loaded:
            loaded[key] = VideoFlexTok.from_pretrained(spec, device=device, dtype=dtype)
        g._tokenizer, where[name] = loaded[key], spec
    return where


def main(argv=None):
    p = argparse.ArgumentParser(formatter_class=HelpFormatter, prog="flexvid eval-generator",
                                description=__doc__.split("\n")[0])
    p.add_argument("--text-model", default=DEFAULT_MODELS["text"],
                   help="text-to-video generator folder or repo id; 'none' skips it (default: assets/generator-text)")
    p.add_argument("--class-model", default=DEFAULT_MODELS["class"],
                   help="class-to-video generator folder or repo id; 'none' skips it (default: assets/generator-class)")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer folder or repo id for both generators (default: each generator's own, the one "
                        "its config.json names, else assets/tokenizer)")
    p.add_argument("--n", type=int, default=64, help="test prompts for faithfulness and paraphrases")
    p.add_argument("--n-long", type=int, default=8, help="prompts for the 81-frame check")
    p.add_argument("--ks", type=int, nargs="+", default=None, help="k values (default the ladder 1, 2, 4, ..., K)")
    p.add_argument("--frames", type=int, default=17, help="frames of the faithfulness and paraphrase videos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decode-steps", type=int, default=None, help="decoder Euler steps (default: the tokenizer's)")
    p.add_argument("--decode-guidance", type=float, default=None,
                   help="decoder guidance (default: each generator's decode_guidance, else the tokenizer's)")
    p.add_argument("--guidance", type=float, default=None, help="generator guidance (default: the model's)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the model's)")
    p.add_argument("--batch", type=int, default=16, help="prompts per generate call")
    p.add_argument("--device", default="auto")
    add_dtype_argument(p)
    p.add_argument("--skip-long", action="store_true", help="skip the 81-frame check")
    p.add_argument("--skip-paraphrase", action="store_true", help="skip the paraphrase check")
    p.add_argument("--skip-condition-probe", action="store_true", help="skip the likelihood check of the conditions")
    p.add_argument("--best-of", type=int, default=4,
                   help="candidates per prompt for the best-of-N check at k = K (the reranker; 0 skips it)")
    p.add_argument("--reranker", default=None, metavar="FOLDER",
                   help="the best-of-N scorer, a train-reranker folder (default: the embedded assets/reranker)")
    p.add_argument("--out", default="eval/generator")
    add_threads_argument(p)
    args = p.parse_args(argv)
    set_threads(args.threads)
    if args.n < 1 or args.n_long < 0 or not 1 <= args.batch <= 64:
        raise ValueError(f"--n must be >= 1, --n-long >= 0 and --batch in [1, 64], got {args.n}, {args.n_long}, "
                         f"{args.batch}")
    from .generate import MAX_BATCH
    if args.best_of != 0 and not 2 <= args.best_of <= MAX_BATCH:  # said now, not after the faithfulness ladder
        raise ValueError(f"--best-of must be 0 (skip) or from 2 to {MAX_BATCH}, got {args.best_of}")
    if args.frames < 5:
        raise ValueError(f"--frames must be at least 5 (the probe reads motion across time steps), got {args.frames}")

    from .pipeline import VideoFlexTok
    # every error a ValueError, which flexvid.cli prints as one line with exit status 2, before any work
    evaluate_tokenizer.check_report(args.out)  # before the evaluation, not after it
    tok = None if args.tokenizer is None else \
        VideoFlexTok.from_pretrained(args.tokenizer, device=args.device, dtype=args.dtype)
    gens = {name: g for name, g in (
        ("text", _load(args.text_model, DEFAULT_MODELS["text"], tok, args.device, args.dtype)),
        ("class", _load(args.class_model, DEFAULT_MODELS["class"], tok, args.device, args.dtype))) if g is not None}
    if not gens:
        raise ValueError("no generator to evaluate: train one, or name one with --text-model / --class-model")
    tokenizers = {name: args.tokenizer for name in gens} if tok is not None else \
        share_tokenizers(gens, args.device, args.dtype)
    if args.reranker is not None and args.best_of:  # loaded (and checked) now, not after the faithfulness ladder
        from .rerank import Reranker
        reranker = Reranker.from_pretrained(args.reranker)
        for g in gens.values():
            g.reranker = reranker
    for g in gens.values():
        _ = g.tokenizer  # the property checks K and the codebook against the tokenizer
        if args.ks and not all(1 <= k <= g.cfg.K for k in args.ks):
            raise ValueError(f"--ks must lie in [1, {g.cfg.K}], got {args.ks}")
        frames_to_steps(args.frames, g.cfg.max_t)
        try:
            g.tokenizer._check_sampler(args.decode_steps, args.decode_guidance, None)
        except ValueError as e:  # named as the options are
            raise ValueError(f"--decode-{e}") from None
        if not args.skip_long and args.n_long:
            frames_to_steps(81, g.cfg.max_t)
    models = {"text": args.text_model, "class": args.class_model}
    res = evaluate(gens, {name: display_name(models[name]) for name in gens}, args.n, args.n_long, args.ks, args.frames,
                   seed=args.seed, batch=args.batch, paraphrases=not args.skip_paraphrase, long=not args.skip_long,
                   likelihood=not args.skip_condition_probe, n_best_of=args.best_of,
                   temperature=args.temperature, guidance=args.guidance, decode_steps=args.decode_steps,
                   decode_guidance=args.decode_guidance)
    res["tokenizer"] = {name: display_name(tokenizers[name]) for name in gens}
    res["settings"].update(dtype=str(next(iter(gens.values())).tokenizer.dtype).removeprefix("torch."),
                           n_long=args.n_long if not args.skip_long else 0, best_of=args.best_of,
                           reranker=display_name(args.reranker) if args.reranker and args.best_of else None,
                           skipped=[name for name, skip in (("long", args.skip_long), ("paraphrase", args.skip_paraphrase),
                                                            ("condition_probe", args.skip_condition_probe)) if skip],
                           command=command_line("eval-generator", argv))
    print(table(res))
    json_path, html_path = write_report(res, args.out)
    print(f"wrote {json_path} and {html_path} ({res['elapsed_s']:.0f} s)")
    return res


if __name__ == "__main__":  # python -m / torchrun -m: errors in one line, as the flexvid command
    from flexvid.cli import run_module
    run_module("eval-generator")
