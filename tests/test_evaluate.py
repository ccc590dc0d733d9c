"""Tests for flexvid.evaluate: metrics, the rate-distortion ladder, the checks and the report, on a tiny
random tokenizer built here (untrained: the numbers mean nothing, the plumbing is what is tested)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from flexvid import evaluate as ev
from flexvid import probe, shapes
from flexvid.pipeline import VideoFlexTok
from flexvid.shapes import fixed_split, to_tensor
from flexvid.tokenizer import FlexTokenizer, TokenizerConfig
from flexvid.vae import VAE_CONFIGS, VideoVAE

K = 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    vae = VideoVAE(VAE_CONFIGS["tiny"])
    cfg = TokenizerConfig(z_channels=vae.cfg.z_channels, latent_size=64 // vae.cfg.spatial_factor, n_registers=K,
                          enc_dim=64, enc_layers=1, enc_heads=2, dec_dim=64, dec_layers=1, dec_heads=2)
    folder = str(tmp_path_factory.mktemp("tiny_tokenizer"))
    VideoFlexTok(vae, FlexTokenizer(cfg), device="cpu").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tok(model_dir):
    return VideoFlexTok.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def clips():
    return fixed_split("test", 2, 17)


# ----------------------------------------------------------------------------- metrics
def test_psnr_ssim_identical_and_different(clips):
    v = to_tensor(clips[0].video)
    assert ev.psnr_video(v, v) == pytest.approx(ev.PSNR_CAP_DB)
    assert ev.ssim_video(v, v) == pytest.approx(1.0, abs=1e-5)
    noisy = (v + 0.1 * torch.randn(v.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert 15 < ev.psnr_video(noisy, v) < 40
    assert ev.ssim_video(noisy, v) < 0.9
    other = to_tensor(clips[1].video)
    assert ev.psnr_video(other, v) < ev.psnr_video(noisy, v)
    assert ev.psnr_frames(noisy, v).shape == (17,) and ev.ssim_frames(noisy, v).shape == (17,)
    # uint8 (T, H, W, 3) videos are accepted and agree with their float form
    assert ev.psnr_video(clips[1].video, clips[0].video) == pytest.approx(ev.psnr_video(other, v), abs=1e-4)


def test_metric_input_errors(clips):
    v = to_tensor(clips[0].video)
    with pytest.raises(ValueError, match="shape"):
        ev.psnr_video(v, v[:, :5])
    with pytest.raises(ValueError, match="uint8"):
        ev.ssim_video(clips[0].video.astype(np.float32), v)
    # tensors that would be clamped into plausible but wrong scores: pixel values, NaN
    u8 = torch.from_numpy(clips[0].video).permute(3, 0, 1, 2).contiguous()  # (3, T, H, W) uint8
    with pytest.raises(ValueError, match="must be float in .-1, 1., got torch.uint8"):
        ev.psnr_video(u8, v)
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\], got \[0, \d+\]: convert uint8"):
        ev.ssim_video(u8.float(), v)
    nan = v.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ev.psnr_frames(v, nan)
    assert ev.psnr_video(v * 1.2, v) < ev.PSNR_CAP_DB  # a decode's small overshoot is clamped, not refused


def test_a_nan_in_the_results_is_null_in_eval_json(tmp_path):
    """eval.json is strict JSON: an SSIM of frames under 11 px (NaN) is written as null, not NaN."""
    import json
    ev.write_report({"model": "m", "reconstruction": {"ssim": {"1": float("nan"), "2": 0.5}, "k": [1, 2]}},
                    str(tmp_path), figures=[], text="")
    text = (tmp_path / "eval.json").read_text()
    assert "NaN" not in text and json.loads(text)["reconstruction"]["ssim"] == {"1": None, "2": 0.5}
    with pytest.raises(ValueError, match="at least one frame"):
        ev.psnr_video(torch.zeros(3, 0, 8, 8), torch.zeros(3, 0, 8, 8))


def test_ssim_of_frames_too_small_for_its_window_is_nan():
    """Under 11 px pytorch-msssim skips its smoothing and two unrelated noise clips scored 0.68: NaN instead,
    as the app gives no SSIM there."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(3, 5, 8, 8, generator=g) * 2 - 1 for _ in range(2))
    assert torch.isnan(ev.ssim_frames(a, b)).all() and ev.ssim_frames(a, b).shape == (5,)
    assert np.isnan(ev.ssim_video(a, b)) and ev.psnr_video(a, b) < 10
    big = torch.rand(3, 2, 11, 11, generator=g) * 2 - 1
    assert ev.ssim_video(big, big) == pytest.approx(1.0, abs=1e-5)


def test_psnr_matches_mse_definition():
    a, b = torch.zeros(3, 5, 8, 8), torch.full((3, 5, 8, 8), 0.2)  # error 0.1 of the 2-wide range
    assert ev.psnr_video(a, b) == pytest.approx(20.0, abs=1e-4)


# ----------------------------------------------------------------------------- checks
def test_monotone_check_flags_drops():
    assert ev.monotone_check([1, 2, 4], [10.0, 12.0, 11.9])["monotone"]
    res = ev.monotone_check([1, 2, 4], [10.0, 12.0, 11.5])
    assert not res["monotone"] and res["drops"] == [{"k_best": 2, "k": 4, "drop_db": pytest.approx(0.5)}]
    # small steps down add up: measured against the best at any smaller k, not the previous k
    assert not ev.monotone_check([1, 2, 4, 8], [12.0, 11.85, 11.75, 11.7])["monotone"]
    # order of the inputs does not matter
    assert not ev.monotone_check([4, 1, 2], [11.0, 10.0, 12.0])["monotone"]


def test_seam_frames():
    assert ev.seam_frames(81, 17) == [16, 17, 32, 33, 48, 49, 64, 65]
    assert ev.seam_frames(17, 17) == []


# ----------------------------------------------------------------------------- evaluations
def test_rate_distortion_every_k(tok, clips):
    res = ev.rate_distortion(tok, clips, ks=[4, 1, 8], keep_videos=True, steps=2, seed=3)
    assert res["ks"] == [1, 4, 8]
    for key in ("psnr", "ssim", "psnr_clips", "ssim_clips"):
        assert len(res[key]) == 3
    assert all(len(c) == len(clips) for c in res["psnr_clips"])
    assert all(np.isfinite(res["psnr"])) and all(-1 <= s <= 1 for s in res["ssim"])
    assert set(res["videos"]) == {1, 4, 8}
    assert res["videos"][1][0].shape == (17, 64, 64, 3) and res["videos"][1][0].dtype == np.uint8


def test_semantics_ground_truth_is_perfect(clips):
    res = ev.semantics({2: [c.video for c in clips], 1: [np.zeros_like(c.video) for c in clips]}, clips)
    assert res["ks"] == [1, 2]
    assert res["ground_truth"]["all"] == 1.0
    assert res["rates"]["all"] == [0.0, 1.0]
    assert set(res["rates"]) == set(ev.ATTRS)


def test_vae_ceiling(tok, clips):
    res = ev.vae_ceiling(tok, clips)
    assert np.isfinite(res["psnr"]) and -1 <= res["ssim"] <= 1
    assert set(res["semantics"]) == set(ev.ATTRS) and all(0 <= r <= 1 for r in res["semantics"].values())
    # the probe's rates are the ones of the round-tripped videos
    truth = probe.score_videos(tok.autoencode([shapes.to_tensor(c.video) for c in clips]), clips)
    assert res["semantics"] == {a: truth[a] for a in ev.ATTRS}


def _results(lv=None):
    ks = [1, 2, 4]
    return {"model": "m", "n": 2, "settings": {"ks": ks, "K": 4}, "psnr_full_k": 12.0,
            "rate_distortion": {"ks": ks, "psnr": [10.0, 11.0, 12.0], "ssim": [0.5, 0.6, 0.7]},
            "vae": {"psnr": 30.0, "ssim": 0.9}, "monotone": ev.monotone_check(ks, [10.0, 11.0, 12.0]),
            "semantics": {"ks": ks, "rates": {a: [0.2, 0.5, 0.9] for a in ev.ATTRS},
                          "ground_truth": dict.fromkeys(ev.ATTRS, 1.0)},
            "long_video": lv}


def test_write_report(tmp_path):
    json_path, html_path = ev.write_report(_results(), str(tmp_path / "r"))
    assert os.path.isfile(json_path) and os.path.isfile(html_path)
    assert json.load(open(json_path))["rate_distortion"]["psnr"] == [10.0, 11.0, 12.0]
    html = open(html_path).read()
    assert "PSNR vs k" in html and "plotly" in html.lower()
    assert "monotone" in ev.table(_results())


# ----------------------------------------------------------------------------- the token probe
def test_linear_probe_finds_signal_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 6, (600,), generator=g)
    noise = torch.randn(600, 20, generator=g)
    informative = noise.clone()
    informative[torch.arange(600), y] += 4.0  # feature y carries class y
    assert ev._linear_probe(informative[:400], y[:400], informative[400:], y[400:], 6) > 0.95
    assert ev._linear_probe(noise[:400], y[:400], noise[400:], y[400:], 6) < 0.35  # chance is 1/6


def test_attribute_labels_follow_the_specification(clips):
    labels = ev._attribute_labels(clips)
    for i, c in enumerate(clips):
        o = c.objects[0]
        assert list(shapes.COLORS)[labels["color"][i]] == o.color
        assert shapes.MOTIONS[labels["motion"][i]] == o.motion
        assert list(shapes.SIZES)[labels["size"][i]] == o.size and shapes.SHAPES[labels["shape"][i]] == o.shape


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow  # two fresh processes for the memory check
def test_main_end_to_end(model_dir, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "eval")
    monkeypatch.chdir(os.path.dirname(model_dir))
    res = ev.main(["--model", model_dir, "--n", "2", "--n-long", "1", "--steps", "2", "--device", "cpu",
                   "--token-probe", "12", "--out", out])
    data = json.load(open(os.path.join(out, "eval.json")))
    for key in ("model", "n", "settings", "rate_distortion", "vae", "monotone", "psnr_full_k", "semantics",
                "long_video", "elapsed_s", "torch", "device"):
        assert key in data
    assert data["rate_distortion"]["ks"] == [1, 2, 4, 8] and data["settings"]["steps"] == 2
    assert data["model"] == os.path.basename(model_dir)  # named relative to the working directory
    lv = data["long_video"]
    assert lv["time_steps"] == [21] and lv["time_steps_ok"] and len(lv["psnr_frames"]) == 81
    assert lv["memory"]["short_mib"] > 0 and lv["memory"]["long_mib"] > 0
    tp = data["token_probe"]
    assert tp["ks"] == [1, 2, 4, 8] and tp["n_train"] == 12 and tp["n_test"] == 2
    assert all(len(tp["rates"][a]) == 4 and all(0 <= r <= 1 for r in tp["rates"][a]) for a in tp["rates"])
    assert os.path.getsize(os.path.join(out, "eval.html")) > 100_000  # plotly.js is embedded
    assert "PSNR monotone" in capsys.readouterr().out
    assert res["n"] == 2


def test_main_rejects_bad_ks(model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"--ks must lie in \[1, "):  # flexvid.cli prints it as one line
        ev.main(["--model", model_dir, "--n", "1", "--ks", "0", "--no-long", "--out", str(tmp_path)])


def test_memory_scaling_compares_medians_of_alternating_runs(monkeypatch):
    seen = []
    values = iter([70.0, 90.0, 40.0, 200.0, 75.0, 95.0])  # short, long, short, long, ...: one outlier each

    def fake_peak(model, T, *a, **kw):
        seen.append(T)
        return next(values)

    monkeypatch.setattr(ev, "peak_memory", fake_peak)
    res = ev.memory_scaling("m", "cpu", None, 17, 81, 16, repeats=3)
    assert seen == [17, 81] * 3
    assert res["short_mib"] == 70.0 and res["long_mib"] == 95.0 and res["ratio"] == pytest.approx(95 / 70)
    assert res["short_runs_mib"] == [70.0, 40.0, 75.0] and res["long_runs_mib"] == [90.0, 200.0, 95.0]
    with pytest.raises(ValueError, match="repeats"):
        ev.memory_scaling("m", repeats=0)


def test_training_and_evaluation_import_without_pyav_and_plotly(tmp_path):
    # a lent GPU machine has the training stack but neither PyAV nor plotly (scripts/device_train.sh):
    # the training, cache and evaluation code must load there; only writing mp4 or HTML needs them
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("av", "plotly"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Block())
        import flexvid.train_vae, flexvid.train_tokenizer, flexvid.train_generator
        from flexvid import evaluate, eval_generator, video_io
        import numpy as np
        try:
            video_io.write_video("x.mp4", np.zeros((1, 8, 8, 3), np.uint8))
        except ModuleNotFoundError as e:
            print("mp4 needs", e.name)
        try:
            evaluate._plotly()
        except ModuleNotFoundError as e:
            print("report needs", e.name)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["mp4", "needs", "av", "report", "needs", "plotly"]
