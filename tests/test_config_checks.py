"""Corrupt model folders and other bad values: a clear ValueError before any work, never a raw torch error."""
import copy
import json
import math
import os
import stat
import time

import numpy as np
import pytest
import torch

from conftest import small_pipeline
from flexvid.hub import check_output, save_safetensors, save_weights
from flexvid.pipeline import VideoFlexTok

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "tokenizer")


def _folder(tmp_path, edit) -> str:
    """A copy of assets/tokenizer with edit(config) applied; the weights are links, not copies."""
    cfg = json.loads(open(os.path.join(ASSETS, "config.json")).read())
    edit(cfg)
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(cfg))  # NaN is written as NaN, which json reads back
    for name in ("vae.safetensors", "tokenizer.safetensors"):
        os.symlink(os.path.join(ASSETS, name), out / name)
    return str(out)


def _set(section, **values):
    return lambda cfg: cfg[section].update(values)


@pytest.mark.parametrize("edit, message", [
    (_set("vae", z_channels=None), "z_channels"),
    (_set("vae", dims=[-48, 96, 128]), r"dims must be 1 to 16 integers in \[1, 65536\]"),
    (_set("vae", z_channels=-1), r"z_channels must be an integer in \[1, 4096\]"),
    (_set("vae", patch=0), "patch"),
    (_set("vae", spatial_down=[True, True, True]), "first level cannot downsample"),
    (_set("vae", latent_std=[1.0, 1.0, 1.0]), "latent_std has 3 values for 16"),
    (_set("vae", latent_mean=[0.0] * 15), "latent_mean has 15 values"),
    (_set("vae", latent_std=[math.nan] * 16), "latent_std"),
    (_set("vae", latent_std=[0.0] * 16), "latent_std must be positive"),
    (_set("vae", latent_mean=[math.inf] * 16), "latent_mean"),
    (_set("tokenizer", levels=[-1, 8, 8]), "levels must be integers >= 3"),
    (_set("tokenizer", levels=[2, 8, 8, 8]), "levels must be integers >= 3"),  # the FSQ library's assert
    (_set("tokenizer", levels=[1000, 1000, 1000, 1000]), "codes; at most"),
    (_set("tokenizer", n_registers=0), "n_registers"),
    (_set("tokenizer", enc_heads=None), "enc_heads"),
    (_set("tokenizer", sample_steps=0), "sample_steps"),
    (_set("tokenizer", max_t=1), "max_t must be at least 2"),  # one-frame chunks: chunking never moved on
    (_set("tokenizer", guidance=math.nan), "guidance"),
    (_set("tokenizer", guidance_mode="xyz"), "guidance_mode"),
    (_set("tokenizer", z_channels=8), "16 latent channels, the tokenizer expects 8"),
])
def test_corrupt_config_values_are_clear_errors(tmp_path, edit, message):
    path = _folder(tmp_path, edit)
    with pytest.raises(ValueError, match=message) as info:
        VideoFlexTok.from_pretrained(path, device="cpu")
    assert path in str(info.value)  # the message names the folder


@pytest.mark.parametrize("n, message", [(60_000, "tokenizer.safetensors does not match the model: size mismatch"),
                                        (2_000_000, r"n_registers must be an integer in \[1, 65536\]"),
                                        (10 ** 9, r"n_registers must be an integer in \[1, 65536\]")])
def test_sizes_are_checked_against_the_weights_before_building(tmp_path, n, message):
    """2e6 registers used to build an 814M-parameter model (11.7 s) before the weights refused it, 1e9 a
    raw allocator error: a size past the config's bounds is refused as such, and one within them by the
    meta-device build, which compares shapes with the file's header first."""
    path = _folder(tmp_path, _set("tokenizer", n_registers=n))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        VideoFlexTok.from_pretrained(path, device="cpu")
    assert time.perf_counter() - start < 5.0


def test_huge_vae_width_is_refused_by_the_header(tmp_path):
    path = _folder(tmp_path, _set("vae", dims=[48, 96, 60_000]))  # 25 GB of convolution weights
    with pytest.raises(ValueError, match="vae.safetensors does not match the model"):
        VideoFlexTok.from_pretrained(path, device="cpu")


def test_weights_that_are_a_folder(tmp_path):
    path = _folder(tmp_path, lambda cfg: None)
    os.remove(os.path.join(path, "vae.safetensors"))
    os.mkdir(os.path.join(path, "vae.safetensors"))
    with pytest.raises(ValueError, match="is a folder"):
        VideoFlexTok.from_pretrained(path, device="cpu")


def test_the_shipped_model_still_loads(tmp_path):
    tok = VideoFlexTok.from_pretrained(_folder(tmp_path, lambda cfg: None), device="cpu")
    assert tok.n_tokens == 32 and tok.vae.latent_std.shape == (1, 16, 1, 1, 1)


def test_tokenize_refuses_non_finite_latents():
    pipe = small_pipeline()
    video = torch.rand(3, 5, 64, 64) * 2 - 1
    before = pipe.tokenize(video)[0]
    for part in ("vae", "tokenizer"):
        bad = copy.deepcopy(pipe)
        with torch.no_grad():
            net = bad.vae.enc_out[-1].conv if part == "vae" else bad.tokenizer.quantizer.proj_in
            net.bias.fill_(float("nan"))
        with pytest.raises(ValueError, match="not finite"):  # FSQ rounded NaN to the id -2**31
            bad.tokenize(video)
    assert torch.equal(pipe.tokenize(video)[0], before)


# ----------------------------------------------------------------------------- outputs
def test_output_paths_with_a_nul_byte_are_refused(tmp_path):
    with pytest.raises(ValueError, match="NUL byte"):
        check_output(str(tmp_path / "a\x00b.mp4"))
    with pytest.raises(ValueError, match="--out: .*NUL byte"):
        check_output(str(tmp_path / "d\x00ir"), folder=True, name="--out")
    assert os.listdir(tmp_path) == []


def test_a_place_that_cannot_be_written_in_is_refused_before_any_work(tmp_path, monkeypatch):
    """A folder that os.access calls writable but that is not (root on a read-only mount, /proc) is found
    out by a file made and removed at once; a writable one is left as it was."""
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: True)  # as it answers root
    for folder in (False, True):
        with pytest.raises(ValueError, match=r"--out: cannot write the output .*'/proc' cannot be written in"):
            check_output("/proc/flexvid-none/out.mp4", folder=folder, name="--out")
    assert check_output(tmp_path / "a" / "b.mp4") == tmp_path / "a" / "b.mp4" and os.listdir(tmp_path) == []


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_weights_are_written_with_the_umask_mode(tmp_path, mask):
    """safetensors 0.8 creates its files 0600 whatever the umask; others must be able to read exports."""
    old = os.umask(mask)
    try:
        save_weights(torch.nn.Linear(2, 3), str(tmp_path / "a" / "w.safetensors"))
        save_safetensors({"x": torch.arange(6).view(2, 3).t()}, str(tmp_path / "x.safetensors"), {"k": "v"})
    finally:
        os.umask(old)
    for name in ("a/w.safetensors", "x.safetensors"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~mask, name
    from safetensors import safe_open
    with safe_open(str(tmp_path / "x.safetensors"), "pt") as f:
        assert f.metadata() == {"k": "v"} and torch.equal(f.get_tensor("x"), torch.arange(6).view(2, 3).t())
    assert sorted(os.listdir(tmp_path)) == ["a", "x.safetensors"]  # no temporary file left


# ----------------------------------------------------------------------------- the reranker
@pytest.fixture(scope="module")
def reranker():
    from flexvid.rerank import PromptReader, Reranker
    from flexvid.teacher import ShapesTeacher, TeacherConfig
    torch.manual_seed(0)
    return Reranker(ShapesTeacher(TeacherConfig()), PromptReader(384))


def test_reranker_refuses_bad_videos(reranker):
    v = torch.rand(2, 3, 5, 64, 64) * 2 - 1
    ok = reranker.score(v, [3, 4], "class")
    assert ok.shape == (2,) and torch.isfinite(ok).all()
    assert torch.allclose(reranker.score(list(v), [3, 4], "class"), ok)
    for bad, message in (([], "non-empty list"), ([v[0], v[1, :, :1]], "one shape"), (v.numpy(), "ndarray"),
                         (list(v.numpy()), "ndarray"), (torch.full_like(v, float("nan")), "NaN"),
                         (((v + 1) * 127.5).to(torch.uint8), "uint8"), ((v + 1) * 127.5, r"\[-1, 1\]"),
                         (v[:0], "B conditions")):
        with pytest.raises(ValueError, match=message):
            reranker.score(bad, [3, 4], "class")


def test_reranker_weights_are_readable_by_others(reranker, tmp_path):
    old = os.umask(0o022)
    try:
        reranker.save_pretrained(str(tmp_path / "r"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "r" / "model.safetensors").st_mode) == 0o644
    assert sorted(os.listdir(tmp_path / "r")) == ["config.json", "model.safetensors"]


def test_commands_report_corrupt_models_and_nul_paths_in_one_line(tmp_path, capsys):
    from flexvid import cli, video_io
    clip = str(tmp_path / "c.mp4")
    video_io.write_video(clip, np.zeros((5, 64, 64, 3), np.uint8), fps=8.0)
    cases = [(_folder(tmp_path, _set("vae", z_channels=None)), str(tmp_path / "r1"), "z_channels"),
             (ASSETS, str(tmp_path / "r\x00"), "NUL byte")]
    for model, out, message in cases:
        assert cli.main(["reconstruct", clip, "--model", model, "--steps", "1", "--out", out]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert sorted(os.listdir(tmp_path)) == ["c.mp4", "model"]


def test_the_embedded_default_loads_from_anywhere_and_a_missing_name_is_one_line(tmp_path, monkeypatch):
    """from_pretrained() with no name is the embedded tokenizer whatever the working directory; a name that
    is no folder here and that the Hub cannot give is one line naming where relative paths start."""
    import huggingface_hub
    from flexvid.generate import VideoGenerator
    monkeypatch.chdir(tmp_path)
    assert VideoFlexTok.from_pretrained(device="cpu").n_tokens == 32
    gen = VideoGenerator.from_pretrained(device="cpu")  # the embedded text-to-video model, with its tokenizer
    assert gen.cfg.cond == "text" and gen.tokenizer.n_tokens == 32

    def offline(*a, **kw):
        raise OSError("We couldn't connect to the Hub.\nGot: ConnectError\nPlease check your connection.")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ValueError) as e:
        VideoFlexTok.from_pretrained("assets/tokenizer", device="cpu")  # the README's path, from elsewhere
    msg = str(e.value)
    assert "\n" not in msg and "'assets/tokenizer' is no folder here" in msg and str(tmp_path) in msg
    assert "ConnectError" in msg
