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

PSNR_FLOOR_FULL_K = 17.0  # measured: 18.6 dB on the test split (README); the VAE alone: 28.7 dB

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


def reconstruct(tok, x, k):
    grids = tok.tokenize(x)
    return torch.stack(tok.detokenize(grids, k=k, seed=0))


def test_reconstructs_held_out_clips_above_floor(tok, held_out):
    _, x = held_out
    full, one = reconstruct(tok, x, tok.n_tokens), reconstruct(tok, x, 1)
    p_full = sum(psnr_video(a, b) for a, b in zip(full, x)) / len(x)
    p_one = sum(psnr_video(a, b) for a, b in zip(one, x)) / len(x)
    assert p_full >= PSNR_FLOOR_FULL_K, (p_full, p_one)
    assert p_full >= p_one - 0.2  # more tokens never hurt (beyond noise)
    # the reconstruction depends on the clip: another clip's tokens decode further from it
    other = reconstruct(tok, x.roll(1, 0), tok.n_tokens)
    p_other = sum(psnr_video(a, b) for a, b in zip(other, x)) / len(x)
    assert p_full > p_other, (p_full, p_other)


@pytest.mark.xfail(strict=True, reason="issue 2: the embedded tokenizer, trained for 4000 CPU steps, does not yet "
                                       "reconstruct the objects; when it does, this becomes a plain test")
def test_recovers_the_main_object(tok, held_out):
    clips, x = held_out
    rates = probe.score_videos(list(reconstruct(tok, x, tok.n_tokens)), clips)
    assert rates["color"] >= 0.8 and rates["motion"] >= 0.8, rates
