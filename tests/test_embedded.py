"""The embedded default tokenizer (assets/tokenizer) on held-out shapes-world clips.

Floors sit below the figures that `flexvid eval-tokenizer` measured for the committed weights (see the
README), so a regression in the weights, the loader or the sampler shows up here.
"""
import os

import pytest
import torch

from flexvid import probe, shapes
from flexvid.cli import DEFAULT_TOKENIZER
from flexvid.evaluate import psnr_video
from flexvid.pipeline import VideoFlexTok

PSNR_FLOOR_FULL_K = float(os.environ.get("FLEXVID_PSNR_FLOOR", "20.0"))

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(DEFAULT_TOKENIZER, "config.json")),
                                reason="no embedded tokenizer under assets/tokenizer")


@pytest.fixture(scope="module")
def tok():
    return VideoFlexTok.from_pretrained(DEFAULT_TOKENIZER, device="cpu")


@pytest.fixture(scope="module")
def held_out():
    # single-object test clips, so the probe's answer is unambiguous
    clips = [c for c in shapes.fixed_split("test", 24) if len(c.objects) == 1][:6]
    return clips, torch.stack([shapes.to_tensor(c.video) for c in clips])


def test_embedded_model_loads_with_its_config(tok):
    assert tok.size == 64 and tok.fps == 8.0 and tok.chunk_frames == 17
    assert tok.ladder()[0] == 1 and tok.ladder()[-1] == tok.n_tokens


def test_reconstructs_held_out_clips_above_floor(tok, held_out):
    clips, x = held_out
    grids = tok.tokenize(x)
    full = torch.stack(tok.detokenize(grids, k=tok.n_tokens, seed=0))
    one = torch.stack(tok.detokenize(grids, k=1, seed=0))
    p_full = sum(psnr_video(a, b) for a, b in zip(full, x)) / len(x)
    p_one = sum(psnr_video(a, b) for a, b in zip(one, x)) / len(x)
    assert p_full >= PSNR_FLOOR_FULL_K, (p_full, p_one)
    assert p_full >= p_one - 0.2  # more tokens never hurt (beyond noise)
    rates = probe.score_videos(list(full), clips)
    assert rates["color"] >= 0.5, rates
