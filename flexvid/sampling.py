"""Autoregressive sampling for the generators, split as in gpt-fast: prefill, decode_one_token, decode_n_tokens.

A request is t time steps with a budget of k tokens per step. The sampler writes exactly t * k tokens,
the first k of every step, one per model call after the prefill, and stops: a small budget is cheaper,
not generated and thrown away. Classifier-free guidance (Ho & Salimans, arXiv 2207.12598) runs the
conditional and null prefixes as one batch of 2B and mixes their logits:
    logits = null + guidance * (cond - null).
Tokens are drawn with the Gumbel-max trick from an explicit torch.Generator (no host sync in the loop),
after temperature, top-k and nucleus (top-p, Holtzman et al., arXiv 1904.09751) filtering.

generate_reference recomputes the whole prefix for every token (nanoGPT's generate): slow, but it has
no cache, and with the same generator it must draw the same tokens. Tests and benchmarks use it.

Letters: B batch, t time steps, k tokens per step, C codebook size.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .generator import Generator
from .training import is_int, is_real


# ----------------------------------------------------------------------------- token choice
def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """(B, C) logits -> temperature-scaled logits with -inf outside top-k and the top-p nucleus."""
    logits = logits.float() / max(temperature, 1e-5)
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass (keeps the first)
        drop = probs.cumsum(-1) - probs >= top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def sample(logits: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None,
           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """(B, C) logits -> (B,) token ids. Gumbel-max: argmax(p / E) with E ~ Exp(1) draws from p.

    generator: one for the whole batch, or G of them for G equal groups of consecutive rows, each group's
    draws its own generator's (so a group samples as it would alone with that generator)."""
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
    if generator is None or isinstance(generator, torch.Generator):
        e = torch.empty_like(probs).exponential_(1.0, generator=generator)
    else:
        e = torch.cat([torch.empty_like(part).exponential_(1.0, generator=g)
                       for part, g in zip(probs.chunk(len(generator)), generator)])
    return torch.argmax(probs / e, dim=-1)


def guided(logits: torch.Tensor, guidance: float) -> torch.Tensor:
    """Mix the conditional and null halves of a (2B, ..., C) batch -> (B, ..., C); guidance 1 = no mixing."""
    cond, null = logits.chunk(2)
    return null + guidance * (cond - null)


def _with_null(model: Generator, cond: torch.Tensor, use_cfg: bool):
    """Condition prefix for the batch: (B, n, D), or (2B, n, D) with the null half when guiding."""
    B = cond.shape[0]
    null = torch.zeros(B, dtype=torch.bool, device=cond.device)
    if use_cfg:
        cond, null = torch.cat([cond, cond]), torch.cat([null, ~null])
    return model.prefix(cond, null)


# ----------------------------------------------------------------------------- cached decoding
def prefill(model: Generator, prefix: torch.Tensor, k: int) -> torch.Tensor:
    """Write the condition prefix (B, n_cond, D) into the cache -> logits (B, C) for token (0, 0)."""
    input_pos = torch.arange(prefix.shape[1], device=prefix.device)
    return model.run(prefix, input_pos, k, cached=True)[:, -1]


def decode_one_token(model: Generator, token: torch.Tensor, input_pos: torch.Tensor, k: int) -> torch.Tensor:
    """One step: token ids (B,) at slot input_pos (1,) -> logits (B, C) for the next token."""
    h = model.embed_tokens(token[:, None], input_pos, k)  # (B, 1, D)
    return model.run(h, input_pos, k, cached=True)[:, -1]


def decode_n_tokens(model: Generator, logits: torch.Tensor, n: int, k: int, generator, guidance: float,
                    temperature: float, top_k: int, top_p: float, callback=None, step_fn=decode_one_token) -> torch.Tensor:
    """From the prefill's logits, draw n tokens, feeding each back through step_fn -> (B, n)."""
    use_cfg = guidance != 1.0
    n_cond = model.cfg.n_cond
    out = []
    input_pos = torch.tensor([n_cond], device=logits.device)
    for i in range(n):
        token = sample(guided(logits, guidance) if use_cfg else logits, generator, temperature, top_k, top_p)  # (B,)
        out.append(token)
        if callback is not None:
            callback(i + 1, n)
        if i + 1 < n:  # the last token is never fed back
            logits = step_fn(model, torch.cat([token, token]) if use_cfg else token, input_pos, k)
            input_pos = input_pos + 1
    return torch.stack(out, dim=1)


def check_request(model: Generator, cond: torch.Tensor, t: int, k: int, temperature: float, top_k: int,
                  top_p: float, guidance: float) -> None:
    cfg = model.cfg
    if not is_int(t) or not 1 <= t <= cfg.max_t:
        raise ValueError(f"t (time steps) must be an integer in [1, {cfg.max_t}], got {t!r}")
    if not is_int(k) or not 1 <= k <= cfg.K:
        raise ValueError(f"k (tokens per step) must be an integer in [1, {cfg.K}], got {k!r}")
    if not is_real(temperature) or not 0 < temperature < float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not is_int(top_k) or not 0 <= top_k <= cfg.codebook_size:
        raise ValueError(f"top_k must be an integer in [0, {cfg.codebook_size}] (0 = off), got {top_k!r}")
    if not is_real(top_p) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be a number in (0, 1], got {top_p!r}")
    if not is_real(guidance) or not 0 <= guidance <= 100:
        raise ValueError(f"guidance must be a number in [0, 100], got {guidance!r}")
    want = (cond.shape[0],) if cfg.cond == "class" else (cond.shape[0], *text_shape(cfg))
    if cond.ndim != len(want) or tuple(cond.shape) != want or cond.shape[0] < 1:
        raise ValueError(f"cond must have shape {want} for a {cfg.cond} model, got {tuple(cond.shape)}")


def check_generators(generator, B: int) -> None:
    """One generator (or None), or a list of them whose number divides the batch (see sample)."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if not isinstance(generator, (list, tuple)) or not generator or B % len(generator) \
            or not all(isinstance(g, torch.Generator) for g in generator):
        raise ValueError(f"generator must be a torch.Generator or a list of them whose length divides the batch "
                         f"({B}), got {generator!r}")


def text_shape(cfg) -> tuple[int, ...]:
    """One prompt's embedding as a text generator takes it: (text_dim,) or (text_tokens, text_dim)."""
    return (cfg.text_tokens, cfg.text_dim) if cfg.text_tokens else (cfg.text_dim,)


@torch.no_grad()
def generate(model: Generator, cond: torch.Tensor, t: int, k: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, guidance: float = 1.0, generator=None,
             callback: Callable[[int, int], None] | None = None, compile: bool = False) -> torch.Tensor:
    """Sample token grids. cond: class labels (B,) or text embeddings (B, *text_shape) on the model's device.
    generator: a torch.Generator, or a list of them for equal groups of rows (see sample).

    t time steps with k tokens per step: exactly t * k tokens are drawn. Returns (B, t, k) token ids, the
    first k tokens of each step. callback(done, total) runs after each token (progress bars)."""
    check_request(model, cond, t, k, temperature, top_k, top_p, guidance)
    check_generators(generator, cond.shape[0])
    t, k, top_k, temperature, top_p, guidance = int(t), int(k), int(top_k), float(temperature), float(top_p), float(guidance)
    use_cfg = guidance != 1.0
    B = cond.shape[0]
    prefix = _with_null(model, cond, use_cfg)  # (B or 2B, n_cond, D)
    device = cond.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    model.setup_caches(prefix.shape[0], model.cfg.n_cond + t * k, dtype)  # the request's budget, no more
    step_fn = compiled_decode_one_token() if compile else decode_one_token
    logits = prefill(model, prefix, k)
    tokens = decode_n_tokens(model, logits, t * k, k, generator, guidance, temperature, top_k, top_p, callback, step_fn)
    return tokens.view(B, t, k)


_COMPILED = {}


def compiled_decode_one_token():
    """decode_one_token under torch.compile (gpt-fast compiles exactly this piece); built once."""
    if "fn" not in _COMPILED:
        mode = "reduce-overhead" if torch.cuda.is_available() else None
        _COMPILED["fn"] = torch.compile(decode_one_token, mode=mode, fullgraph=True, dynamic=False)
    return _COMPILED["fn"]


# ----------------------------------------------------------------------------- cache-free reference
@torch.no_grad()
def generate_reference(model: Generator, cond: torch.Tensor, t: int, k: int, temperature: float = 1.0,
                       top_k: int = 0, top_p: float = 1.0, guidance: float = 1.0,
                       generator=None, callback=None) -> torch.Tensor:
    """generate without a KV cache: every token recomputes the whole prefix. Same draws, same tokens."""
    check_request(model, cond, t, k, temperature, top_k, top_p, guidance)
    check_generators(generator, cond.shape[0])
    t, k, top_k, temperature, top_p, guidance = int(t), int(k), int(top_k), float(temperature), float(top_p), float(guidance)
    use_cfg = guidance != 1.0
    B = cond.shape[0]
    cond2 = torch.cat([cond, cond]) if use_cfg else cond
    null = torch.zeros(cond2.shape[0], dtype=torch.bool, device=cond.device)
    if use_cfg:
        null[B:] = True
    seq = torch.zeros(cond2.shape[0], 0, dtype=torch.long, device=cond.device)
    n = t * k
    for i in range(n):
        # pad the partial sequence to whole steps; forward's row i predicts token i, row i only sees < i
        steps = i // k + 1
        grid = torch.cat([seq, seq.new_zeros(seq.shape[0], steps * k - i)], dim=1).view(-1, steps, k)
        logits = model(grid, cond2, null)[:, i]  # (B or 2B, C)
        token = sample(guided(logits, guidance) if use_cfg else logits, generator, temperature, top_k, top_p)
        seq = torch.cat([seq, (torch.cat([token, token]) if use_cfg else token)[:, None]], dim=1)
        if callback is not None:
            callback(i + 1, n)
    return seq[:B].view(B, t, k)
