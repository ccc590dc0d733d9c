"""Best-of-N sampling for the generators: a learned scorer of how well a decoded video shows its condition.

A generator's samples vary: on validation prompts one of four grids often has every attribute right
when the first does not, and the generator's own likelihood does not tell which (docs/training-notes.md). The scorer
here is a separate model that reads the decoded videos: the shapes-world perception network of
`flexvid.teacher` (per 4 x 4 cell of every frame: colour, shape, size and direction of the object on
it, or background), trained on blurred and noisy renders (`--augment`) so that it reads decoded
videos too, and, for text prompts, a prompt reader that reads the main object's colour, shape, size and
motion from the prompt's all-MiniLM-L6-v2 embeddings: an `AttentionReader` over its word pieces (one
learned query per attribute; the default) or a `PromptReader`, linear heads on the sentence embedding,
fitted to training captions and their rewordings in the training vocabulary (never the paraphrase
test's words).

The score of a video for a condition is the log-probability, under the perception network, that the
cells of the prompted colour (weighted by how sure it is of that colour) show the prompted shape, size
and motion, plus the log of how clearly that colour is there at all; for a text prompt every term is an
expectation under the prompt reader's distributions. `VideoGenerator.generate(..., best_of=N)` samples
N grids per condition, decodes them in one batch and keeps the best-scoring one.

    flexvid train-teacher --out-dir runs/scorer --frames 17 --augment --steps 2000 --time-limit 1100
    flexvid train-reranker --teacher runs/scorer/export --out assets/reranker
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import shapes
from .hub import check_output, read_json, save_safetensors, write_json
from .pipeline import OUT_OF_RANGE
from .teacher import ShapesTeacher, TeacherConfig, load_teacher

FORMAT = "flexvid-reranker"
DEFAULT_RERANKER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "reranker")
ATTRS = ("color", "shape", "size", "motion")
NAMES = {"color": shapes.COLOR_NAMES, "shape": shapes.SHAPES, "size": shapes.SIZE_NAMES, "motion": shapes.MOTIONS}


class PromptReader(nn.Module):
    """Sentence embedding (B, dim) -> {attr: logits (B, n_values)} for the main object of a prompt."""

    def __init__(self, dim: int = 384):
        super().__init__()
        self.dim = dim
        self.heads = nn.ModuleDict({a: nn.Linear(dim, len(NAMES[a])) for a in ATTRS})

    def forward(self, emb: torch.Tensor) -> dict:
        return {a: h(emb) for a, h in self.heads.items()}


class AttentionReader(nn.Module):
    """Word-piece embeddings (B, n, dim), zero rows as padding -> {attr: logits (B, n_values)}: one learned
    query per attribute (plus a learned bias per position) pools the word pieces, a linear head reads
    the pooled vector. A pooled sentence vector mixes the objects of a two-object prompt; attending to
    the word pieces keeps the main object's (the first named) apart."""

    def __init__(self, dim: int = 384, tokens: int = 24):
        super().__init__()
        self.dim, self.tokens = dim, tokens
        self.query = nn.Parameter(torch.zeros(len(ATTRS), dim))
        self.pos = nn.Parameter(torch.zeros(tokens, len(ATTRS)))
        self.heads = nn.ModuleDict({a: nn.Linear(dim, len(NAMES[a])) for a in ATTRS})

    def forward(self, emb: torch.Tensor) -> dict:
        emb = emb.float()
        pad = emb.abs().sum(-1) == 0  # (B, n)
        att = torch.einsum("bnd,ad->bna", emb, self.query) * 10 + self.pos[:emb.shape[1]]
        att = att.masked_fill(pad[..., None], -1e9).softmax(1)
        pooled = torch.einsum("bna,bnd->bad", att, emb)
        return {a: self.heads[a](pooled[:, j]) for j, a in enumerate(ATTRS)}


READERS = {"linear": PromptReader, "attention": AttentionReader}
READER_TOKENS = 24  # word pieces the attention reader reads


def training_prompts(n: int, start: int = 70_000_000, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """n training captions and n rewordings of them in the training vocabulary, with their main
    object's attribute indices (2n, 4) in the order of ATTRS."""
    from .train_generator import caption_variant
    rng = np.random.default_rng(seed)
    prompts, labels = [], []
    for i in range(start, start + n):
        objs = shapes.clip_objects(shapes.SPLIT_SEEDS["train"], i)
        caption = " and ".join(o.caption() for o in objs)
        row = [NAMES[a].index(getattr(objs[0], a)) for a in ATTRS]
        prompts += [caption, caption_variant(caption, rng)]
        labels += [row, row]
    return prompts, torch.tensor(labels)


def fit_prompt_reader(text_encoder, n: int = 4096, steps: int = 500, lr: float = 1e-2) -> nn.Module:
    """Fit a reader (full batch, Adam) on `training_prompts(n)`: an AttentionReader for a text encoder
    of word pieces (`tokens` > 0), else the linear PromptReader on sentence embeddings."""
    prompts, labels = training_prompts(n)
    emb = text_encoder.encode(prompts).float()
    tokens = getattr(text_encoder, "tokens", 0)
    with torch.random.fork_rng(devices=[]):  # a fixed initialisation that leaves the caller's RNG as it was
        torch.manual_seed(0)
        reader = AttentionReader(emb.shape[-1], tokens) if tokens else PromptReader(emb.shape[-1])
    opt = torch.optim.Adam(reader.parameters(), lr=lr)
    for _ in range(steps):
        out = reader(emb)
        loss = sum(F.cross_entropy(out[a], labels[:, j]) for j, a in enumerate(ATTRS))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return reader.eval().requires_grad_(False)


class Reranker:
    """Scores decoded videos against their conditions; higher is better. `score(videos, conditions, cond)`."""

    def __init__(self, teacher: ShapesTeacher, reader: PromptReader | None = None, text_encoder=None):
        self.teacher = teacher.eval().requires_grad_(False)
        self.reader = reader.eval().requires_grad_(False) if reader is not None else None
        self.text_encoder = text_encoder

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, folder: str = DEFAULT_RERANKER) -> "Reranker":
        from safetensors.torch import load_file
        cfg_path = os.path.join(folder, "config.json")
        if not os.path.exists(cfg_path):
            raise ValueError(f"no reranker at {folder!r} (config.json missing)")
        cfg = read_json(cfg_path)
        if cfg.get("format") != FORMAT:
            raise ValueError(f"{folder!r} is not a flexvid reranker (config format {cfg.get('format')!r})")
        try:  # the modules' initial weights are overwritten: the caller's RNG is left as it was
            state = load_file(os.path.join(folder, "model.safetensors"))
            with torch.random.fork_rng(devices=[]):
                teacher = ShapesTeacher(TeacherConfig(dims=tuple(cfg["teacher"]["dims"]), cell=cfg["teacher"]["cell"],
                                                      window=cfg["teacher"]["window"]))
            teacher.load_state_dict({k[8:]: v.float() for k, v in state.items() if k.startswith("teacher.")})
            kind, tokens = cfg.get("reader", "linear"), int(cfg.get("reader_tokens", 0))
            if kind not in READERS or (kind == "attention") != (tokens > 0):
                raise ValueError(f"unknown prompt reader {kind!r} with {tokens} word pieces")
            with torch.random.fork_rng(devices=[]):
                reader = AttentionReader(cfg["text_dim"], tokens) if tokens else PromptReader(cfg["text_dim"])
            reader.load_state_dict({k[7:]: v.float() for k, v in state.items() if k.startswith("reader.")})
        except Exception as e:  # noqa: BLE001 - a missing, truncated, foreign or mismatched file
            raise ValueError(f"{folder!r} does not hold a loadable reranker: {e}") from None
        from .text import TextEncoder
        # the app scores a few prompts per request: a small prompt cache (24 x 384 floats per prompt)
        return cls(teacher, reader, TextEncoder(cfg.get("text_model", "default"), tokens=tokens, cache_size=256))

    def save_pretrained(self, folder: str, text_model: str = "default") -> None:
        state = {f"teacher.{k}": v.half() if v.is_floating_point() and not k.startswith("feature_") else v
                 for k, v in self.teacher.state_dict().items()}
        state.update({f"reader.{k}": v for k, v in self.reader.state_dict().items()})
        save_safetensors(state, os.path.join(folder, "model.safetensors"))
        tc = self.teacher.cfg
        write_json(os.path.join(folder, "config.json"), {
            "format": FORMAT, "teacher": {"dims": list(tc.dims), "cell": tc.cell, "window": tc.window},
            "text_dim": self.reader.dim, "text_model": text_model, "attributes": {a: NAMES[a] for a in ATTRS},
            "reader": "attention" if isinstance(self.reader, AttentionReader) else "linear",
            "reader_tokens": getattr(self.reader, "tokens", 0)})

    # ------------------------------------------------------------------ targets
    def targets(self, conditions, cond: str) -> dict:
        """{attr: (B, n_values) probabilities} of what each condition asks for (class: no "size")."""
        if cond == "class":
            from .generate import parse_label
            rows = [shapes.class_attributes(parse_label(c)) for c in conditions]  # (colour, shape, motion)
            out = {}
            for j, a in enumerate(("color", "shape", "motion")):
                idx = torch.tensor([NAMES[a].index(r[j]) for r in rows])
                out[a] = F.one_hot(idx, len(NAMES[a])).float()
            return out
        if cond != "text":
            raise ValueError(f"cond must be 'text' or 'class', got {cond!r}")
        if self.reader is None or self.text_encoder is None:
            raise ValueError("this reranker has no prompt reader: it scores class conditions only")
        emb = self.text_encoder.encode(list(conditions))
        return {a: lg.softmax(-1) for a, lg in self.reader(emb).items()}

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score_targets(self, videos: torch.Tensor, targets: dict, batch: int = 16) -> torch.Tensor:
        """videos (B, 3, T, 64, 64) in [-1, 1], targets as from `targets` -> (B,) scores."""
        out = []
        for a in range(0, len(videos), batch):
            v = videos[a:a + batch].float()
            tg = {k: t[a:a + batch] for k, t in targets.items()}
            logits = self.teacher(v)
            pc = logits["color"].float().softmax(1)[:, 1:]  # (b, 6, T, h, w): P(object of colour c here)
            w = torch.einsum("bc,bcthw->bthw", tg["color"], pc)  # the prompted colour's map
            presence = w.flatten(2).amax(-1).clamp_min(1e-4).log().mean(-1)  # clearest cell, per frame
            total = presence
            for attr in ("shape", "size"):
                if attr not in tg:
                    continue
                lp = logits[attr].float()[:, 1:].log_softmax(1)  # (b, n, T, h, w), background left out
                e = torch.einsum("bn,bnthw->bthw", tg[attr], lp)
                total = total + (w * e).flatten(1).sum(-1) / w.flatten(1).sum(-1).clamp_min(1e-6)
            if "motion" in tg and v.shape[2] > 1:
                total = total + (tg["motion"] * self.motion_logprobs(w)).sum(-1)
            out.append(total)
        return torch.cat(out)

    def motion_logprobs(self, w: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
        """(B, T, h, w) map of the prompted colour -> (B, 5) log-probabilities of the world's motions: the
        map's centroid, tracked over the frames (weighted by how much of the colour each frame shows), and
        its least-squares velocity in pixels per frame against each motion's velocity (Gaussian, sigma).
        The per-cell motion head of the perception network is not used: its direction labels are right
        on too few cells (under a quarter of the validation cells)."""
        B, T, h, wd = w.shape
        cell = self.teacher.cfg.cell
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) * cell
        xs = (torch.arange(wd, dtype=torch.float32) + 0.5) * cell
        mass = w.sum((2, 3))  # (B, T)
        cx = (w.sum(2) * xs).sum(-1) / mass.clamp_min(1e-6)
        cy = (w.sum(3) * ys).sum(-1) / mass.clamp_min(1e-6)
        om = mass / (mass + 1.0)  # frames that show (almost) nothing of the colour count little
        t = torch.arange(T, dtype=torch.float32).expand(B, T)
        tm = (om * t).sum(-1, keepdim=True) / om.sum(-1, keepdim=True).clamp_min(1e-6)
        den = (om * (t - tm) ** 2).sum(-1).clamp_min(1e-6)

        def slope(c):
            cm = (om * c).sum(-1, keepdim=True) / om.sum(-1, keepdim=True).clamp_min(1e-6)
            return (om * (t - tm) * (c - cm)).sum(-1) / den

        vel = torch.stack([slope(cx), slope(cy)], -1)  # (B, 2)
        ref = torch.tensor([shapes.VELOCITY[m] for m in shapes.MOTIONS], dtype=torch.float32)  # (5, 2)
        return (-((vel[:, None] - ref[None]) ** 2).sum(-1) / (2 * sigma ** 2)).log_softmax(-1)

    def score(self, videos, conditions, cond: str) -> torch.Tensor:
        """Decoded videos (a list of (3, T, H, W) or one (B, 3, T, H, W) tensor) and their conditions
        (prompts or class labels, one per video) -> (B,) scores."""
        if isinstance(videos, (list, tuple)):
            if not videos or not all(isinstance(v, torch.Tensor) for v in videos):
                raise ValueError("expected a non-empty list of video tensors (3, T, H, W), got "
                                 f"{[type(v).__name__ for v in videos][:5] or 'an empty list'}")
            sizes = sorted({tuple(v.shape) for v in videos})
            if len(sizes) > 1:  # one batch: the same length and size
                raise ValueError(f"videos scored together must have one shape (3, T, H, W), got {sizes[:5]}")
            videos = torch.stack(list(videos))
        if not isinstance(videos, torch.Tensor):
            raise ValueError(f"expected video tensors, got {type(videos).__name__} (torch.from_numpy converts arrays)")
        conditions = list(conditions)
        if videos.ndim != 5 or videos.shape[1] != 3 or len(conditions) != len(videos) or not len(videos):
            raise ValueError(f"expected (B, 3, T, H, W) videos and B conditions, got {tuple(videos.shape)} "
                             f"and {len(conditions)}")
        if not videos.is_floating_point():
            raise ValueError(f"videos must be float tensors in [-1, 1], got {videos.dtype}: "
                             "convert uint8 frames with video_io.to_model")
        if not torch.isfinite(videos).all():
            raise ValueError("videos hold NaN or infinity: nothing to score")
        lo, hi = torch.aminmax(videos)
        if lo < -OUT_OF_RANGE or hi > OUT_OF_RANGE:  # e.g. pixel values 0..255
            raise ValueError(f"video values must lie in [-1, 1], got [{float(lo):.3g}, {float(hi):.3g}]: "
                             "convert uint8 frames with video_io.to_model")
        return self.score_targets(videos, self.targets(conditions, cond))


def reader_accuracy(reranker: Reranker, prompts: list[str], objects: list) -> dict:
    """Per-attribute accuracy of the prompt reader's argmax on prompts whose main object is objects[i]."""
    tg = reranker.targets(prompts, "text")
    return {a: float(np.mean([NAMES[a][int(tg[a][i].argmax())] == getattr(o, a) for i, o in enumerate(objects)]))
            for a in ATTRS}


def main(argv=None):
    from .cli import HelpFormatter
    from .training import add_threads_argument, set_threads
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--teacher", required=True,
                   help="a `flexvid.teacher` export (trained with --augment), or a reranker folder whose network to keep")
    p.add_argument("--out", default="runs/reranker",
                   help="output folder (generate and eval-generator take it as --reranker; the embedded one is "
                        "assets/reranker)")
    p.add_argument("--prompts", type=int, default=4096, help="training captions for the prompt reader (x2 rewordings)")
    p.add_argument("--reader", default="attention", choices=list(READERS),
                   help="prompt reader: attention over word pieces, or linear heads on the sentence embedding")
    add_threads_argument(p)
    args = p.parse_args(argv)
    check_output(args.out, folder=True, name="--out")  # before the fit, not after it
    if args.prompts < 1:  # before the text model loads
        raise ValueError(f"--prompts must be >= 1, got {args.prompts}")
    set_threads(args.threads)
    from .eval_generator import paraphrase_prompt
    from .text import TextEncoder
    cfg_path = os.path.join(args.teacher, "config.json")
    if os.path.exists(cfg_path) and read_json(cfg_path).get("format") == FORMAT:
        teacher = Reranker.from_pretrained(args.teacher).teacher
    else:
        teacher = load_teacher(args.teacher)
    enc = TextEncoder("default", tokens=READER_TOKENS if args.reader == "attention" else 0)
    reranker = Reranker(teacher, fit_prompt_reader(enc, args.prompts), enc)
    val = shapes.fixed_split("val", 256, 1)
    rng = np.random.default_rng(0)
    objs = [c.objects[0] for c in val]
    print("prompt reader, 256 validation captions:", reader_accuracy(reranker, [c.caption for c in val], objs))
    print("prompt reader, 256 paraphrases (words never trained on):",
          reader_accuracy(reranker, [paraphrase_prompt(o, rng) for o in objs], objs))
    reranker.save_pretrained(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":  # python -m / torchrun -m: errors in one line, as the flexvid command
    from flexvid.cli import run_module
    run_module("train-reranker")
