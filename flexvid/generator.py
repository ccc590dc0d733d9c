"""The autoregressive generators: decoder-only transformers that write VideoFlexTok token grids.

A clip's tokens form a (t, K) grid: t latent time steps, K ordered tokens per step, coarse to fine. The
generator reads the grid time-major (step 0's tokens 0..K-1, then step 1's, ...) after a prefix of
condition tokens: a learned class embedding (class-to-video), or for text-to-video a linear projection
of the text encoder's output, either one pooled sentence embedding (text_tokens = 0) or one prefix slot
per word piece (text_tokens = n: the prompt's word-piece embeddings, padding slots replaced by a learned
pad embedding), with a learned null condition for classifier-free guidance (Ho & Salimans, arXiv
2207.12598), as the VideoFlexTok generators do (arXiv 2604.12887).

Token budget. A request with k tokens per step keeps only the first k tokens of each step: the model
sees the sequence (0,0) .. (0,k-1), (1,0) .. (1,k-1), ... and never the tokens it would discard, so
sampling with a small budget stops early instead of generating and dropping. Training draws one k per
batch (powers of two up to K, like the tokenizer's nested dropout) and trains on exactly that sequence.
Two things make every k one model:
- rotary positions (RoFormer, arXiv 2104.09864) carry the true (time step, index in step) of each
  token, one half of each head rotated by each, so a token keeps its place whatever k is;
- each input also embeds where the *next* token sits in its step (0 when this token closes a step of
  the budget), so the prediction after token (s, k-1) knows it is the start of step s + 1.

Otherwise a LLaMA-style stack as in gpt-fast: pre-norm RMSNorm, QK-norm, SwiGLU, a preallocated KV cache
(setup_caches) for one-token decoding. Sampling loops live in flexvid/sampling.py.

Letters: B batch, t time steps, K tokens per step, k kept per step, L sequence length, D width,
nh heads, hd head dim, C codebook size, V padded vocab.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .layers import Attention, RMSNorm, SwiGLU


@dataclass
class GeneratorConfig:
    dim: int = 192
    n_layers: int = 6
    n_heads: int = 3
    K: int = 32  # tokens per time step, the tokenizer's n_registers
    max_t: int = 21  # time steps the positions cover: 21 steps = 81 frames (10 s at 8 fps)
    codebook_size: int = 1000  # the tokenizer's FSQ codes
    cond: str = "class"  # "class" or "text"
    n_classes: int = 90  # shapes-world classes (colour x shape x motion); one more is the null class
    text_dim: int = 384  # sentence-embedding size (all-MiniLM-L6-v2)
    text_tokens: int = 0  # 0: one pooled sentence embedding; n > 0: n word-piece embeddings (n_cond = n)
    n_cond: int = 1  # condition tokens in the prefix
    p_null: float = 0.1  # training clips whose condition becomes the null one (for guidance)
    nested: str = "pow2"  # k per training batch from 1, 2, 4, ..., K ("pow2") or 1..K ("uniform")
    rope_base: float = 10_000.0
    # default sampling settings
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    guidance: float = 3.0  # classifier-free guidance on the logits; 1 = off
    # the tokenizer decoder's guidance for this model's grids (None: the tokenizer's own default, which
    # is measured on encoded clips; sampled grids are not encoded clips, so they get their own)
    decode_guidance: float | None = None

    def __post_init__(self):
        if self.cond not in ("class", "text"):
            raise ValueError(f"cond must be 'class' or 'text', got {self.cond!r}")
        if self.nested not in ("pow2", "uniform"):
            raise ValueError(f"nested must be 'pow2' or 'uniform', got {self.nested!r}")
        for name, lo, hi in (("dim", 4, 65536), ("n_layers", 1, 1024), ("n_heads", 1, 1024), ("K", 1, 4096),
                             ("max_t", 1, 65536), ("codebook_size", 2, 2**24), ("n_classes", 1, 2**24),
                             ("text_dim", 1, 65536), ("n_cond", 1, 4096), ("top_k", 0, 2**24)):
            v = getattr(self, name)  # before any size is built from it (a config from a file or a repo)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        for name, lo, hi in (("rope_base", 1.0, 1e12), ("p_null", 0.0, 1.0), ("temperature", 1e-6, 100.0),
                             ("top_p", 1e-6, 1.0), ("guidance", 0.0, 100.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:  # NaN fails too
                raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {v!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.decode_guidance is not None and not (isinstance(self.decode_guidance, (int, float))
                                                     and 0 <= self.decode_guidance <= 100):
            raise ValueError(f"decode_guidance must be None or a number in [0, 100], got {self.decode_guidance!r}")
        if self.text_tokens < 0 or (self.text_tokens and (self.cond != "text" or self.n_cond != self.text_tokens)):
            raise ValueError(f"text_tokens={self.text_tokens} needs cond='text' and n_cond equal to it "
                             f"(got cond={self.cond!r}, n_cond={self.n_cond})")
        self.head_dim = self.dim // self.n_heads
        if self.head_dim % 4:
            raise ValueError(f"head_dim {self.head_dim} must be a multiple of 4 (two rotary halves of pairs)")
        if self.K < 1 or self.max_t < 1 or self.n_cond < 1 or self.codebook_size < 2:
            raise ValueError(f"bad sizes: K={self.K}, max_t={self.max_t}, n_cond={self.n_cond}, "
                             f"codebook_size={self.codebook_size}")
        # one special input id, BOS, marks the condition slots; the vocab is padded to a multiple of 64
        # so the embedding and output matmuls stay aligned (nanoGPT pads 50257 to 50304)
        self.bos_id = self.codebook_size
        self.vocab_size = 64 * math.ceil((self.codebook_size + 1) / 64)
        self.max_seq = self.n_cond + self.max_t * self.K


GENERATOR_CONFIGS = {
    # shapes world on a CPU, for the tiny tokenizer (32 tokens per step, 1000 codes): about 3M parameters
    "tiny": GeneratorConfig(),
    # width 64 x depth, for the same tokens
    "d12": GeneratorConfig(dim=768, n_layers=12, n_heads=12),
    # the paper's scale (1.1B in the blocks, 1.3B with the 64k-code embeddings), for the release
    # tokenizers: 256 tokens per step, 64,000 codes
    "d28": GeneratorConfig(dim=1792, n_layers=28, n_heads=28, K=256, codebook_size=64_000, guidance=5.0),
}


# ----------------------------------------------------------------------------- rotary positions
def rotary_tables(head_dim: int, n_pos: int, base: float) -> torch.Tensor:
    """(n_pos, head_dim // 4, 2) cos and sin for one rotary half (head_dim // 2 channels)."""
    n_freq = head_dim // 4
    freqs = 1.0 / base ** (torch.arange(n_freq, dtype=torch.float32) / n_freq)
    angles = torch.outer(torch.arange(n_pos, dtype=torch.float32), freqs)  # (n_pos, hd/4)
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def apply_rotary(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of x (B, nh, L, hd) by rope (L, hd // 2, 2) (cos, sin); fp32 for the angles."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)  # (B, nh, L, hd/2, 2)
    cos, sin = rope[..., 0], rope[..., 1]  # (L, hd/2)
    out = torch.stack([xs[..., 0] * cos - xs[..., 1] * sin, xs[..., 1] * cos + xs[..., 0] * sin], dim=-1)
    return out.flatten(-2).to(x.dtype)


# ----------------------------------------------------------------------------- KV cache and blocks
class KVCache(nn.Module):
    """Preallocated keys and values (gpt-fast): slots written by their input positions."""

    def __init__(self, max_batch: int, max_seq: int, n_heads: int, head_dim: int, dtype=torch.float32):
        super().__init__()
        shape = (max_batch, n_heads, max_seq, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """input_pos (L,), k and v (B, nh, L, hd) -> the whole cache of the batch (B, nh, max_seq, hd)."""
        B = k.shape[0]
        self.k_cache[:B, :, input_pos] = k.to(self.k_cache.dtype)
        self.v_cache[:B, :, input_pos] = v.to(self.v_cache.dtype)
        return self.k_cache[:B], self.v_cache[:B]


class RotaryAttention(Attention):
    """Attention (QK-norm, fused wqkv) with 2D rotary positions and an optional KV cache."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__(dim, n_heads)
        self.kv_cache: KVCache | None = None

    def forward(self, x, rope, mask=None, input_pos=None):  # x (B, L, D), rope (L, hd/2, 2)
        q, k, v = self.qkv(x)  # (B, nh, L, hd)
        q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        if self.kv_cache is not None and input_pos is not None:
            k, v = self.kv_cache.update(input_pos, k, v)  # (B, nh, max_seq, hd)
            y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(rearrange(y, "b nh l hd -> b l (nh hd)"))


class GenBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.attention_norm, self.attention = RMSNorm(dim), RotaryAttention(dim, n_heads)
        self.ffn_norm, self.feed_forward = RMSNorm(dim), SwiGLU(dim)

    def forward(self, x, rope, mask=None, input_pos=None):
        x = x + self.attention(self.attention_norm(x), rope, mask, input_pos)
        return x + self.feed_forward(self.ffn_norm(x))


# ----------------------------------------------------------------------------- the generator
class Generator(nn.Module):
    """Decoder-only transformer over a condition prefix and a time-major token grid.

    forward(tokens, cond, null) is the cache-free path (training and the test reference);
    setup_caches + prefix/embed_tokens/decode run one token at a time (flexvid.sampling)."""

    def __init__(self, cfg: GeneratorConfig, verbose: bool = True):
        super().__init__()
        self.cfg = cfg
        D = cfg.dim
        if cfg.cond == "class":
            self.cond_embedder = nn.Embedding(cfg.n_classes + 1, cfg.n_cond * D)  # last row: the null class
        elif cfg.text_tokens:  # one prefix slot per word piece; all-zero rows are padding
            self.cond_embedder = nn.Linear(cfg.text_dim, D)
            self.pad_text = nn.Parameter(torch.zeros(D))
            self.null_text = nn.Parameter(torch.zeros(cfg.n_cond * D))
        else:
            self.cond_embedder = nn.Linear(cfg.text_dim, cfg.n_cond * D)
            self.null_text = nn.Parameter(torch.zeros(cfg.n_cond * D))  # the null condition's embedding
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, D)
        self.next_embeddings = nn.Embedding(cfg.K, D)  # index in step of the token to predict next
        self.layers = nn.ModuleList([GenBlock(D, cfg.n_heads) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(D)
        self.output = nn.Linear(D, cfg.vocab_size, bias=False)
        # rotary tables: time (condition slots at 0, step s at s + 1) and index in step
        self.register_buffer("rope_time", rotary_tables(cfg.head_dim, cfg.max_t + 1, cfg.rope_base), persistent=False)
        self.register_buffer("rope_step", rotary_tables(cfg.head_dim, max(cfg.K, cfg.n_cond), cfg.rope_base),
                             persistent=False)
        self.causal_mask: torch.Tensor | None = None
        self.max_batch = 0
        self.initialize_weights()
        if verbose:
            print(f"generator ({cfg.cond}): {self.num_params() / 1e6:.2f}M parameters")

    def initialize_weights(self):
        std = 0.02
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=std)
        # scaled residual init (GPT-2, nanoGPT): the branches that add to the residual stream
        for layer in self.layers:
            nn.init.normal_(layer.attention.wo.weight, std=std / math.sqrt(2 * self.cfg.n_layers))
            nn.init.normal_(layer.feed_forward.w2.weight, std=std / math.sqrt(2 * self.cfg.n_layers))
        # zero output layer: the first predictions are uniform over the codes (loss starts at ln C)
        nn.init.zeros_(self.output.weight)
        if self.cfg.cond == "text":
            nn.init.normal_(self.null_text, std=std)
        if self.cfg.text_tokens:
            nn.init.normal_(self.pad_text, std=std)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ positions
    def slot_positions(self, input_pos: torch.Tensor, k: int):
        """Cache slots (L,) -> time index, index in step and next token's index in step, each (L,).

        Slots < n_cond hold the condition (time 0, index = slot); slot n_cond + n holds token n of the
        k-per-step sequence, i.e. step n // k (time n // k + 1), index n % k."""
        n = input_pos - self.cfg.n_cond
        is_cond = n < 0
        n = n.clamp(min=0)
        time = torch.where(is_cond, 0, n // k + 1)
        index = torch.where(is_cond, input_pos, n % k)
        nxt = torch.where(is_cond, 0, (n + 1) % k)
        return time, index, nxt

    def rope(self, input_pos: torch.Tensor, k: int) -> torch.Tensor:
        time, index, _ = self.slot_positions(input_pos, k)
        return torch.cat([self.rope_time[time], self.rope_step[index]], dim=1)  # (L, hd/2, 2)

    # ------------------------------------------------------------------ embeddings
    def prefix(self, cond: torch.Tensor, null: torch.Tensor | None = None) -> torch.Tensor:
        """Condition prefix (B, n_cond, D). cond: class labels (B,), text embeddings (B, text_dim) or, with
        text_tokens, (B, text_tokens, text_dim); null (B,) bool replaces a condition with the null one."""
        cfg = self.cfg
        B = cond.shape[0]
        if null is None:
            null = torch.zeros(B, dtype=torch.bool, device=cond.device)
        if cfg.cond == "class":
            c = self.cond_embedder(torch.where(null, cfg.n_classes, cond.long()))  # (B, n_cond * D)
        elif cfg.text_tokens:
            c = self.cond_embedder(cond.to(self.cond_embedder.weight.dtype))  # (B, n_cond, D)
            pad = (cond == 0).all(-1, keepdim=True)  # (B, n_cond, 1)
            c = torch.where(pad, self.pad_text.to(c.dtype), c)
            c = torch.where(null[:, None, None], self.null_text.view(cfg.n_cond, -1).to(c.dtype), c)
        else:
            c = self.cond_embedder(cond.to(self.cond_embedder.weight.dtype))
            c = torch.where(null[:, None], self.null_text.to(c.dtype), c)  # (B, n_cond * D)
        if c.ndim == 2:
            c = rearrange(c, "b (n d) -> b n d", n=cfg.n_cond)
        bos = self.tok_embeddings.weight[cfg.bos_id]
        return c + bos + self.next_embeddings.weight[0]  # the last slot predicts token (0, 0)

    def embed_tokens(self, idx: torch.Tensor, input_pos: torch.Tensor, k: int) -> torch.Tensor:
        """Token ids (B, L) at cache slots input_pos (L,) -> (B, L, D)."""
        _, _, nxt = self.slot_positions(input_pos, k)
        return self.tok_embeddings(idx) + self.next_embeddings(nxt)

    # ------------------------------------------------------------------ transformer
    def run(self, h: torch.Tensor, input_pos: torch.Tensor, k: int, cached: bool) -> torch.Tensor:
        """Embeddings (B, L, D) at slots input_pos (L,) -> logits over the codes (B, L, C)."""
        rope = self.rope(input_pos, k)
        mask = None
        if cached:
            assert self.causal_mask is not None, "call setup_caches first"
            mask = self.causal_mask[None, None, input_pos]  # (1, 1, L, max_seq)
        for layer in self.layers:
            h = layer(h, rope, mask, input_pos if cached else None)
        return self.output(self.norm(h))[..., :self.cfg.codebook_size].float()  # (B, L, C)

    def forward(self, tokens: torch.Tensor, cond: torch.Tensor, null: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits, no cache. tokens (B, t, k): the first k tokens of each of t steps;
        cond (B,) labels or (B, text_dim) embeddings; null (B,) bool. -> (B, t * k, C): row i predicts
        token i of the time-major sequence."""
        B, t, k = tokens.shape
        n_cond = self.cfg.n_cond
        if t > self.cfg.max_t or k > self.cfg.K:
            raise ValueError(f"tokens {tuple(tokens.shape)} exceed max_t={self.cfg.max_t}, K={self.cfg.K}")
        seq = rearrange(tokens, "b t k -> b (t k)")[:, :-1]  # (B, t*k - 1): the last token is only a target
        pos = torch.arange(n_cond + seq.shape[1], device=tokens.device)
        h = torch.cat([self.prefix(cond, null), self.embed_tokens(seq, pos[n_cond:], k)], dim=1)  # (B, n_cond + tk - 1, D)
        return self.run(h, pos, k, cached=False)[:, n_cond - 1:]  # (B, t*k, C)

    # ------------------------------------------------------------------ KV cache
    def setup_caches(self, max_batch: int, max_seq: int | None = None, dtype: torch.dtype | None = None):
        """Allocate a KV cache per layer for max_batch sequences of max_seq slots (default: the full
        n_cond + max_t * K) in dtype (default: the weights'). Keeps the caches it has when they are big
        enough, so repeated requests allocate nothing."""
        max_seq = self.cfg.max_seq if max_seq is None else max_seq
        if max_seq > self.cfg.max_seq:
            raise ValueError(f"max_seq {max_seq} exceeds the model's {self.cfg.max_seq}")
        device = self.output.weight.device
        dtype = dtype or self.output.weight.dtype
        cache = self.layers[0].attention.kv_cache
        if cache is not None and self.max_batch >= max_batch and self.causal_mask.shape[0] >= max_seq \
                and cache.k_cache.dtype == dtype and cache.k_cache.device == device:
            return
        for layer in self.layers:
            layer.attention.kv_cache = KVCache(max_batch, max_seq, self.cfg.n_heads, self.cfg.head_dim, dtype).to(device)
        self.causal_mask = torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool, device=device))
        self.max_batch = max_batch

    def clear_caches(self):
        for layer in self.layers:
            layer.attention.kv_cache = None
        self.causal_mask, self.max_batch = None, 0
