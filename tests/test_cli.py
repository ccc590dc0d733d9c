"""The `flexvid` commands as a user meets them: --help, output folders, threads, the app's port."""
import os
import re
from pathlib import Path

import pytest
import numpy as np
import torch

from conftest import small_pipeline
from flexvid import cli, shapes, video_io
from flexvid.cli import COMMANDS, REPO_ROOT


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tok") / "tok")
    small_pipeline().save_pretrained(path)
    return path


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _help(command, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_every_command_help_shows_its_defaults(capsys):
    texts = {c: _help(c, capsys) for c in COMMANDS}
    for command, text in texts.items():
        assert text.startswith(f"usage: flexvid {command}"), command
        assert str(REPO_ROOT) not in text, command  # "the embedded assets/tokenizer", not this machine's path
    assert "--steps STEPS         (default: 4000)" in texts["train-tokenizer"]
    assert "--latent-cache LATENT_CACHE" in texts["train-tokenizer"] and "(default: 0)" in texts["train-tokenizer"]
    assert "output folder (default: recon)" in texts["reconstruct"]
    assert "(default: clip.mp4)" in " ".join(texts["generate"].split())
    assert "(default: eval/tokenizer)" in texts["eval-tokenizer"]
    assert "--data FOLDER" in texts["eval-tokenizer"] and "--threads" in texts["eval-tokenizer"]
    assert "--text-generator FOLDER_OR_REPO_ID" in texts["app"] and "--class-generator" in texts["app"]
    # an option whose help already names its default is not given a second one
    flat = " ".join(texts["reconstruct"].split())
    assert flat.count("default: the model's") == 4 and "(default: None)" not in flat  # steps, guidance, mode, noise
    # an on/off flag says which; "(0: torch's default)" is no default shown
    teacher, vae = (" ".join(texts[c].split()) for c in ("train-teacher", "train-vae"))
    assert "else fp32 (default: off)" in teacher and "else fp32 (default: on)" in vae
    assert "(0: torch's default) (default: 0)" in teacher and "(default: 0)" in " ".join(texts["app"].split())


def test_reconstruct_replaces_an_earlier_runs_prefixes_and_takes_threads(folder, tmp_path, capsys, threads):
    clip = str(tmp_path / "c.mp4")
    video_io.write_video(clip, shapes.make_clip(0, 1, 9).video, fps=8)
    out = tmp_path / "recon"
    common = [clip, "--model", folder, "--steps", "1", "--upscale", "1", "--max-frames", "9", "--out", str(out)]
    assert cli.main(["reconstruct", *common, "--k", "1", "4"]) == 0
    assert sorted(os.listdir(out)) == ["k001.mp4", "k004.mp4", "metrics.csv", "original.mp4", "side_by_side.mp4",
                                     "tokens.npz"]
    (out / "notes.txt").write_text("mine")
    (out / "k007.mp4").mkdir()  # a folder named like an output is the user's: left alone (it crashed the run)
    capsys.readouterr()
    assert cli.main(["reconstruct", *common, "--k", "2", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    # k004 and k001 were another run's: gone, and said; a file of the user's stays
    assert sorted(os.listdir(out)) == ["k002.mp4", "k007.mp4", "metrics.csv", "notes.txt", "original.mp4",
                                     "side_by_side.mp4", "tokens.npz"]
    assert "removed k001.mp4, k004.mp4" in capsys.readouterr().out
    assert cli.main(["reconstruct", *common, "--k", "1", "--threads", "-1"]) == 2
    assert "--threads must be an integer >= 0" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["k002.mp4", "k007.mp4", "metrics.csv", "notes.txt", "original.mp4",
                                     "side_by_side.mp4", "tokens.npz"]


def test_reconstruct_reports_its_metrics_and_labels_its_side_by_side(folder, tmp_path, capsys):
    """PSNR / SSIM per k, printed and in metrics.csv, as eval-tokenizer measures them; the side-by-side has
    the original and the k in ascending order whatever order --k gave, each tile labelled; original.mp4 is
    the clip as the model saw it; what reading did to the clip is said; a --k beyond K is refused before
    the clip is read."""
    from flexvid.evaluate import psnr_video
    from flexvid.pipeline import VideoFlexTok
    clip = str(tmp_path / "c.mp4")
    video_io.write_video(clip, np.repeat(np.repeat(shapes.make_clip(0, 1, 17).video, 2, 1), 2, 2), fps=16)
    out = tmp_path / "recon"
    assert cli.main(["reconstruct", clip, "--model", folder, "--steps", "1", "--upscale", "2", "--k", "4", "1",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ("c.mp4: 128x128 at 16 fps, 17 frames read; 8 frames at 8 fps, padded to 9 (1 + 4n; the last frame "
            "repeated; the videos, PSNR and SSIM are of its own 8); resized and centre-cropped to 64x64") in printed
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "k,tokens,bits,psnr_db,ssim" and [r.split(",")[0] for r in rows[1:]] == ["1", "4"]
    original, _ = video_io.read_video(out / "original.mp4")
    assert original.shape == (8, 128, 128, 3)  # 64 px at --upscale 2; the clip's own 8 frames, not the padding
    tok = VideoFlexTok.from_pretrained(folder, device="cpu")
    x = video_io.to_model(video_io.prepare_video(*video_io.read_video(clip), target_fps=8, size=64))
    k4 = video_io.to_model(video_io.read_video(out / "k004.mp4")[0][:, ::2, ::2])
    assert k4.shape[1] == 8 and abs(float(rows[2].split(",")[3]) - psnr_video(x[:, :8], k4)) < 1.0  # H.264's loss aside
    again = tok.reconstruct(x, ks=[1, 4], steps=1, seed=0)[4]  # the same decode: the metrics of the clip's own 8
    own, padded = psnr_video(x[:, :8], again[:, :8]), psnr_video(x, again)  # frames, not of the padding's ninth
    assert abs(float(rows[2].split(",")[3]) - own) < 1e-3 and abs(own - padded) > 1e-3, (rows[2], own, padded)
    saved = np.load(out / "tokens.npz")  # what the tokens were made in, and how many frames are the clip's own
    assert (int(saved["frames"]), int(saved["own_frames"]), str(saved["dtype"])) == (9, 8, str(tok.dtype)[6:])
    assert f"{float(rows[2].split(',')[3]):.2f}" in printed
    tiles, _ = video_io.read_video(out / "side_by_side.mp4")
    assert tiles.shape[:3] == (8, 128, 3 * 128 + 2 * 2)  # original, k = 1, k = 4 at 2x, 2 px between
    corner = (slice(None), slice(100, 128), slice(0, 40))  # the label's corner differs from the bare clip
    assert np.abs(tiles[:, :, :128][corner].astype(int) - original[corner].astype(int)).mean() > 5
    assert tok.n_tokens < 99
    assert cli.main(["reconstruct", str(tmp_path / "missing.mp4"), "--model", folder, "--k", "99",
                     "--out", str(tmp_path / "r2")]) == 2
    assert f"--k must lie in [1, {tok.n_tokens}]" in capsys.readouterr().err  # the k, before the missing clip


def test_reconstruct_without_an_ssim_writes_an_empty_field(folder, tmp_path, capsys, monkeypatch):
    """Frames under 11 px have no SSIM (NaN): the table says "-" and metrics.csv leaves the field empty."""
    from flexvid import evaluate
    monkeypatch.setattr(evaluate, "ssim_video", lambda a, b: float("nan"))
    clip = str(tmp_path / "c.mp4")
    video_io.write_video(clip, shapes.make_clip(0, 1, 5).video, fps=8)
    assert cli.main(["reconstruct", clip, "--model", folder, "--steps", "1", "--upscale", "1", "--k", "2",
                     "--out", str(tmp_path / "o")]) == 0
    assert re.search(r"\n +2 +\d+ +[\d,]+ +[\d.]+ +-\n", capsys.readouterr().out)
    row = (tmp_path / "o" / "metrics.csv").read_text().splitlines()[1]
    assert row.startswith("2,") and row.endswith(",") and "nan" not in row


def test_reconstruct_says_how_the_clip_was_fitted_to_1_plus_4n_frames(folder, tmp_path, capsys):
    """18 frames at 8 fps are padded to 21 or, under --max-frames 20, cut to 17: both said (the cut was not)."""
    clip = str(tmp_path / "c.mp4")
    video_io.write_video(clip, shapes.make_clip(0, 1, 21).video[:18], fps=8)
    common = [clip, "--model", folder, "--steps", "1", "--upscale", "1", "--k", "1"]
    assert cli.main(["reconstruct", *common, "--out", str(tmp_path / "a")]) == 0
    said = capsys.readouterr().out
    assert "18 frames read; 18 frames at 8 fps, padded to 21 (1 + 4n; the last frame repeated; the videos, " \
        "PSNR and SSIM are of its own 18)" in said, said
    assert "21 frames -> tokens (6, 8), read, tokenized and decoded at 1 k in" in said
    assert cli.main(["reconstruct", *common, "--max-frames", "20", "--out", str(tmp_path / "b")]) == 0
    said = capsys.readouterr().out
    assert "18 frames read; cut to its first 17 frames at 8 fps (--max-frames 20; a clip is 1 + 4n frames)" in said


def test_a_refused_or_interrupted_reconstruct_leaves_no_folder_it_made(folder, tmp_path, capsys, monkeypatch):
    from flexvid.pipeline import VideoFlexTok
    (tmp_path / "kept").mkdir()  # an empty folder that was there stays
    monkeypatch.chdir(tmp_path)
    for out in (tmp_path / "new" / "a" / "b", tmp_path / "kept" / "x" / "y", "new/../out2", "kept/./z/"):
        assert cli.main(["reconstruct", str(tmp_path / "missing.mp4"), "--model", folder, "--out", str(out)]) == 2
        assert "file not found" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["kept"] and os.listdir(tmp_path / "kept") == []

    def interrupt(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(VideoFlexTok, "from_pretrained", interrupt)
    assert cli.main(["reconstruct", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "new" / "c")]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "flexvid reconstruct: interrupted" and sorted(os.listdir(tmp_path)) == ["kept"]

    def broken(*a, **k):  # a pipe other than stdout (a worker's) breaking is an error, not a reader gone
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(VideoFlexTok, "from_pretrained", broken)
    with pytest.raises(BrokenPipeError):
        cli.main(["reconstruct", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "new")])


def test_reconstruct_writes_every_file_though_its_reader_closes_stdout(folder, tmp_path):
    """`flexvid reconstruct ... | head -1` with unbuffered output (Docker, CI): every file is written, and the
    closed pipe gives no traceback (the table's first line killed the run after original.mp4)."""
    import subprocess
    import sys
    clip = str(tmp_path / "c.mp4")
    video_io.write_video(clip, shapes.make_clip(0, 1, 9).video, fps=8)
    out = tmp_path / "r"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "flexvid", "reconstruct", clip, "--model", folder, "--steps", "1",
                          "--upscale", "1", "--k", "1", "2", "--out", str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, cwd=str(REPO_ROOT))
    p.stdout.close()  # the reader is gone before the first line
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) in (0, 1) and "Traceback" not in err and "Exception ignored" not in err, err
    assert sorted(os.listdir(out)) == ["k001.mp4", "k002.mp4", "metrics.csv", "original.mp4", "side_by_side.mp4",
                                     "tokens.npz"]


def test_reconstruct_says_it_read_a_variable_frame_rate_by_its_timestamps(folder, tmp_path, capsys):
    from test_video_io import _vfr_webm
    _vfr_webm(tmp_path / "vfr.webm", [40] * 4 + [2000] + [40] * 4)
    assert cli.main(["reconstruct", str(tmp_path / "vfr.webm"), "--model", folder, "--steps", "1", "--upscale", "1",
                     "--k", "1", "--out", str(tmp_path / "r")]) == 0
    said = capsys.readouterr().out
    assert "at a variable frame rate, read at 25 fps by its timestamps" in said and "repeated over gaps" in said
    frames, fps = video_io.read_video(tmp_path / "r" / "original.mp4")
    assert abs(len(frames) / fps - 2.32) <= 0.5  # its 2.3 s, not 10 frames at 25 fps


def test_reconstruct_says_a_clip_was_cut_short_or_a_still_image(folder, tmp_path, capsys):
    from flexvid import shapes
    video_io.write_video(tmp_path / "whole.mp4", shapes.make_clip(0, 1, 65).video, fps=8)
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:len(data) // 2])
    assert cli.main(["reconstruct", str(tmp_path / "cut.mp4"), "--model", folder, "--steps", "1", "--upscale", "1",
                     "--k", "1", "--out", str(tmp_path / "r")]) == 0
    said = capsys.readouterr().out
    assert "though its header says 8.12 s (cut short or damaged?)" in said, said
    import cv2
    cv2.imwrite(str(tmp_path / "still.png"), np.full((48, 64, 3), 90, np.uint8))
    (tmp_path / "still.mp4").write_bytes((tmp_path / "still.png").read_bytes())  # an image renamed
    assert cli.main(["reconstruct", str(tmp_path / "still.mp4"), "--model", folder, "--steps", "1", "--upscale", "1",
                     "--k", "1", "--out", str(tmp_path / "s")]) == 0
    said = capsys.readouterr().out
    assert "a single frame (a still image?)" in said and "cut short" not in said, said
    assert "64x48 at 25 fps, 1 frame read; " in said and "; 1 frame at 8 fps" in said, said


def test_reconstruct_checks_every_file_it_will_write_before_the_work(folder, tmp_path, capsys, monkeypatch):
    """A folder named as one of the files in --out is refused before the clip is tokenized, in one line, and
    nothing is written; the closing line names the files this run wrote."""
    from flexvid.pipeline import VideoFlexTok
    clip = str(tmp_path / "c.mp4")
    video_io.write_video(clip, shapes.make_clip(0, 1, 9).video, fps=8)
    common = [clip, "--model", folder, "--steps", "1", "--upscale", "1", "--k", "4"]
    for taken in ("metrics.csv", "k004.mp4"):
        out = tmp_path / f"out_{taken}"
        (out / taken).mkdir(parents=True)
        monkeypatch.setattr(VideoFlexTok, "tokenize", lambda *a, **k: pytest.fail("tokenized before the check"))
        assert cli.main(["reconstruct", *common, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"the output file '{out / taken}' is a folder" in err and err.count("\n") == 1
        assert os.listdir(out) == [taken]
        monkeypatch.undo()
    assert cli.main(["reconstruct", *common, "--out", str(tmp_path / "ok")]) == 0
    assert "wrote original.mp4, 1 reconstruction (k004.mp4), side_by_side.mp4" in capsys.readouterr().out


def test_generate_checks_every_file_it_will_write_before_the_work(tmp_path, capsys):
    (tmp_path / "s_1.mp4").mkdir()  # the second sample's name is taken by a folder
    assert cli.main(["generate", "--class-label", "3", "--num-samples", "2", "--k", "1", "--frames", "1",
                     "--out", str(tmp_path / "s.mp4")]) == 2
    err = capsys.readouterr().err
    assert "s_1.mp4" in err and "Traceback" not in err and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["s_1.mp4"]  # no first sample written before the failure


def test_generate_refuses_a_condition_of_the_other_kind_in_one_line(tmp_path, capsys):
    for args, message in ((["--class-label", "3", "--model", str(REPO_ROOT / "assets" / "generator-text")],
                           "--model is a text-to-video model: give a text prompt, not --class-label"),
                          (["a red circle", "--model", str(REPO_ROOT / "assets" / "generator-class")],
                           "--model is a class-to-video model: give --class-label, not a text prompt")):
        assert cli.main(["generate", *args, "--out", str(tmp_path / "o.mp4")]) == 2
        said = capsys.readouterr()
        assert said.err == f"flexvid generate: {message}\n" and said.out == ""  # no "class 3: ..." line first
    assert not os.listdir(tmp_path)


def test_generate_samples_are_reproducible_alone_and_said(tmp_path, capsys, monkeypatch):
    """Sample i of --num-samples is what --seed SEED+i gives alone; a class given as its caption's words is
    read and named; a prompt's words outside the shapes world are named; one progress bar per stage; an
    --out that is not .mp4 is refused before any work."""
    import tqdm

    from flexvid import video_io
    bars = []

    class Counted(tqdm.tqdm):
        def __init__(self, *a, **kw):
            bars.append(kw.get("desc"))
            super().__init__(*a, **kw)
    monkeypatch.setattr(tqdm, "tqdm", Counted)
    base = ["--k", "1", "--frames", "5", "--decode-steps", "1", "--threads", "1"]
    assert cli.main(["generate", "--class-label", "red circle moving left", "--num-samples", "2", "--seed", "5",
                     *base, "--out", str(tmp_path / "s.mp4")]) == 0
    out = capsys.readouterr()
    assert "class 0: red circle moving left" in out.out and "seeds 5..6 in order" in out.out
    assert "(5 frames, 1 token per step, seed 5;" in out.out
    assert bars == ["tokens", "decode"]  # a bar per stage, not one per token
    assert cli.main(["generate", "--class-label", "0", "--seed", "6", *base, "--out", str(tmp_path / "one.mp4")]) == 0
    a, b = (video_io.read_video(str(tmp_path / n))[0].astype(int) for n in ("s_1.mp4", "one.mp4"))
    diff = np.abs(a - b)  # the same tokens; a decode in a batch of two rounds a few pixels otherwise
    print(f"sample 1 of 2 against --seed 6 alone: max |diff| {diff.max()}, mean {diff.mean():.4f}")
    assert diff.mean() < 0.05 and diff.max() <= 8
    assert cli.main(["generate", "a tiny blue ball drifting left", *base, "--out", str(tmp_path / "t.mp4")]) == 0
    err = capsys.readouterr().err
    assert "no training caption used 'tiny', 'ball', 'drifting'" in err and "word pieces" not in err
    assert "the app takes seeds" not in err and "replaced" not in err
    assert cli.main(["generate", "the " * 30 + "a blue circle moving left", *base, "--out", str(tmp_path / "t.mp4")]) == 0
    err = capsys.readouterr().err
    assert "reads the first 23 word pieces of a prompt; from 'the the the the the the the a blue circle moving left' on" \
        in err
    assert f"note: replaced the file that was there: {tmp_path / 't.mp4'}" in err  # a rerun's overwrite is said
    assert cli.main(["generate", "--class-label", "0", "--seed", "-1", *base, "--out", str(tmp_path / "m.mp4")]) == 0
    err = capsys.readouterr().err
    assert "the app takes seeds 0 to 2147483647 (its default limit): a clip made here with seed -1 cannot" in err
    assert cli.main(["generate", "--class-label", "0", *base, "--out", str(tmp_path / "x.gif")]) == 2
    assert "--out must name an .mp4 file" in capsys.readouterr().err and not (tmp_path / "x.gif").exists()
    assert cli.main(["generate", "--class-label", "0", "--num-samples", "2", *base, "--out", " "]) == 2
    assert "the output path is empty" in capsys.readouterr().err
    from flexvid.generate import parse_label
    assert parse_label("red circle standing still") == parse_label("red circle still")
    for wrong in ("red circle moving still", "red circle standing left"):
        with pytest.raises(ValueError, match="class label"):
            parse_label(wrong)


def test_a_refused_class_generation_prints_nothing_but_its_message(tmp_path, capsys):
    """The class line ("class 3: ...") comes with what was written, not before a refusal of --frames or --k."""
    for extra in (["--frames", "18"], ["--k", "0"], ["--decode-steps", "0"], ["--seed", "-1", "--frames", "18"]):
        assert cli.main(["generate", "--class-label", "3", *extra, "--out", str(tmp_path / "o.mp4")]) == 2
        said = capsys.readouterr()
        assert said.out == "" and said.err.count("\n") == 1, (extra, said)
    # the decoder's bounds, which hold for any tokenizer, are checked before a model loads
    for extra, said in ((["--decode-steps", "0"], "--decode-steps must be an integer in [1, 1000], got 0"),
                        (["--decode-guidance", "-1"], "--decode-guidance must be a number in [0, 100], got -1.0")):
        assert cli.main(["generate", "--class-label", "3", *extra, "--model", str(tmp_path / "nowhere"),
                         "--out", str(tmp_path / "o.mp4")]) == 2  # (a missing model would be the message after)
        assert capsys.readouterr().err == f"flexvid generate: {said}\n"


def test_generate_and_eval_generator_take_a_reranker_folder(tmp_path, capsys):
    """--reranker FOLDER scores the best-of candidates (train-reranker writes to runs/reranker, not over the
    shipped assets/reranker); a folder that holds none, or --reranker without --best-of, is one line before
    any sampling."""
    import shutil
    shutil.copytree(REPO_ROOT / "assets" / "reranker", tmp_path / "mine")
    base = ["--class-label", "3", "--k", "1", "--frames", "5", "--decode-steps", "1", "--threads", "1"]
    assert cli.main(["generate", *base, "--best-of", "2", "--reranker", str(tmp_path / "mine"),
                     "--out", str(tmp_path / "a.mp4")]) == 0
    assert "best of 2" in capsys.readouterr().out and (tmp_path / "a.mp4").exists()
    for extra, said in ((["--best-of", "2", "--reranker", str(tmp_path / "none")], "no reranker at"),
                        (["--reranker", str(tmp_path / "mine")], "--reranker scores best-of candidates")):
        assert cli.main(["generate", *base, *extra, "--out", str(tmp_path / "b.mp4")]) == 2
        assert said in capsys.readouterr().err and not (tmp_path / "b.mp4").exists()
    assert cli.main(["eval-generator", "--reranker", str(tmp_path / "none"), "--n", "1", "--out",
                     str(tmp_path / "e")]) == 2
    assert "no reranker at" in capsys.readouterr().err
    assert "(default: runs/reranker)" in " ".join(_help("train-reranker", capsys).split())


def test_generator_takes_its_tokenizer_as_a_path_and_refuses_other_types():
    from flexvid.generate import DEFAULT_MODELS, DEFAULT_TOKENIZER, VideoGenerator
    gen = VideoGenerator.from_pretrained(DEFAULT_MODELS["class"], tokenizer=Path(DEFAULT_TOKENIZER), device="cpu")
    assert gen.tokenizer.n_tokens == gen.cfg.K
    video = gen.generate(3, k=1, frames=1, seed=0, decode_steps=1)[0]
    assert video.shape == (3, 1, gen.tokenizer.size, gen.tokenizer.size)
    for bad in (123, ["assets/tokenizer"]):
        with pytest.raises(ValueError, match="tokenizer must be a VideoFlexTok, or its folder or repo id"):
            VideoGenerator.from_pretrained(DEFAULT_MODELS["class"], tokenizer=bad, device="cpu")


def test_app_refuses_a_port_it_cannot_bind_before_loading_models(capsys, monkeypatch):
    from flexvid import app_ui

    def no_models(*args, **kwargs):
        raise AssertionError("models loaded before the port was checked")

    monkeypatch.setattr(app_ui, "Runtime", no_models)
    for argv, env in ((["--port", "99999"], None), (["--port", "0"], None), ([], "http")):
        if env:
            monkeypatch.setenv("GRADIO_SERVER_PORT", env)
        assert app_ui.main(argv) == 2
        err = capsys.readouterr().err
        assert "the port must be an integer in [1, 65535]" in err and "Traceback" not in err


def test_a_generator_finds_the_tokenizer_it_was_trained_with(folder, tmp_path, capsys):
    """save_generator keeps where its tokenizer is (relative to the generator's folder): from_pretrained and
    `flexvid generate` decode with it, no --tokenizer needed; an explicit one still wins."""
    import json
    import shutil
    import warnings

    from flexvid.generate import DEFAULT_MODELS, DEFAULT_TOKENIZER, VideoGenerator, save_generator
    from flexvid.generator import Generator, GeneratorConfig
    from flexvid.pipeline import VideoFlexTok
    from flexvid.train_generator import fingerprint

    runs = tmp_path / "runs"
    shutil.copytree(folder, runs / "my_tok" / "export")
    tok = VideoFlexTok.from_pretrained(str(runs / "my_tok" / "export"), device="cpu")
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(dim=32, n_layers=1, n_heads=2, K=tok.n_tokens, max_t=5,
                                      codebook_size=tok.codebook_size, cond="class"), verbose=False)
    save_generator(model, str(runs / "gen" / "export"), tokenizer_fingerprint=fingerprint(tok),
                   tokenizer=str(runs / "my_tok" / "export"))
    meta = json.loads((runs / "gen" / "export" / "config.json").read_text())
    assert meta["tokenizer"] == os.path.join("..", "..", "my_tok", "export")
    moved = tmp_path / "elsewhere"  # the two travel together
    shutil.move(str(runs), str(moved))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "another tokenizer's tokens" warning: it is the right one
        gen = VideoGenerator.from_pretrained(str(moved / "gen" / "export"), device="cpu")
        assert gen.tokenizer.n_tokens == tok.n_tokens and fingerprint(gen.tokenizer) == fingerprint(tok)
    assert gen.trained_with == os.path.normpath(str(moved / "my_tok" / "export"))
    gen.save_pretrained(str(moved / "copy"))  # saved elsewhere, it still points at the same folder
    assert json.loads((moved / "copy" / "config.json").read_text())["tokenizer"] == os.path.join("..", "my_tok", "export")
    out = tmp_path / "g.mp4"
    assert cli.main(["generate", "--class-label", "3", "--model", str(moved / "gen" / "export"), "--k", "1",
                     "--frames", "1", "--decode-steps", "1", "--upscale", "1", "--out", str(out)]) == 0
    assert video_io.read_video(str(out))[0].shape == (1, tok.size, tok.size, 3)
    # a folder that is gone: the embedded tokenizer, as before (and its K does not match this generator's)
    shutil.rmtree(moved / "my_tok")
    gen = VideoGenerator.from_pretrained(str(moved / "gen" / "export"), device="cpu")
    assert gen.trained_with is None and gen._tokenizer == DEFAULT_TOKENIZER
    # the shipped generators name the shipped tokenizer
    for cond in ("class", "text"):
        shipped = json.loads(open(os.path.join(DEFAULT_MODELS[cond], "config.json")).read())
        assert shipped["tokenizer"] == "../tokenizer"
        assert os.path.samefile(os.path.join(DEFAULT_MODELS[cond], shipped["tokenizer"]), DEFAULT_TOKENIZER)
    bad = tmp_path / "bad"
    shutil.copytree(DEFAULT_MODELS["class"], bad)
    meta = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**meta, "tokenizer": 5}))
    with pytest.raises(ValueError, match="config.json's tokenizer must be a folder or a repo id"):
        VideoGenerator.from_pretrained(str(bad), device="cpu")


def test_train_generator_takes_init_s_conditioning_and_refuses_another_before_any_work(tmp_path, capsys):
    from flexvid import train_generator
    out = tmp_path / "g"
    for argv, message in ((["--text-tokens", "0"], "reads 24 word pieces of a prompt"),
                          (["--preset", "tiny", "--text-tokens", "8"], "not --text-tokens 8")):
        assert cli.main(["train-generator", "--cond", "text", "--init", str(REPO_ROOT / "assets" / "generator-text"),
                         "--out-dir", str(out), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not out.exists()  # refused before the token cache
    with pytest.raises(ValueError, match="--text-tokens must be >= 0"):
        train_generator.main(["--cond", "text", "--text-tokens", "-1", "--out-dir", str(out)])


def test_an_old_generator_checkpoint_resumed_with_another_tokenizer_is_refused(tmp_path, capsys):
    """A checkpoint from before runs were recorded: its folder's token cache names the tokenizer."""
    from safetensors.torch import save_file

    from flexvid.training import save_checkpoint
    out = tmp_path / "g"
    save_checkpoint(str(out / "ckpt.pt"), {"model": {}, "ema": {}, "opt": {}, "step": 3})  # no "run"
    save_file({"x": torch.zeros(1)}, str(out / "tokens.safetensors"), metadata={"fingerprint": "0123456789abcdef"})
    before = (out / "tokens.safetensors").read_bytes()
    assert cli.main(["train-generator", "--cond", "class", "--out-dir", str(out), "--clips", "4", "--long-clips", "0",
                     "--val-clips", "2", "--probe-clips", "0"]) == 2
    err = capsys.readouterr().err
    assert "trained on the tokens of another tokenizer (fingerprint 0123456789abcdef" in err
    assert (out / "tokens.safetensors").read_bytes() == before  # not rebuilt


def test_a_command_leaves_the_warning_format_as_it_found_it(tmp_path, capsys):
    """A command prints its warnings as one 'flexvid COMMAND: warning: ...' line, and puts Python's format
    back after it: in a process that runs several commands, a later one's warnings do not carry its name."""
    import warnings
    before = warnings.formatwarning
    assert cli.main(["train-vae", "--frames", "6", "--out-dir", str(tmp_path / "v")]) == 2
    assert warnings.formatwarning is before
    assert "--frames must be 1 + 4n" in capsys.readouterr().err


def test_python_dash_m_flexvid_runs_the_command(tmp_path):
    """`python -m flexvid` (a checkout on PYTHONPATH, not installed) is the `flexvid` command."""
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo}
    out = subprocess.run([sys.executable, "-m", "flexvid", "generate", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: flexvid generate" in out.stdout, out.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-m", "flexvid", "no-such-command"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_generate_piped_prints_no_progress_bars(tmp_path):
    """Output piped to a file or another program (a script, a CI log) gets the command's lines, not the
    progress bars' carriage returns and escape codes (tqdm's disable=None: bars on a terminal only)."""
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "flexvid", "generate", "--class-label", "3", "--k", "1", "--frames",
                          "5", "--decode-steps", "2", "--out", str(tmp_path / "g.mp4")],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": repo, "TQDM_DISABLE": ""},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert os.path.getsize(tmp_path / "g.mp4") > 0 and "wrote" in out.stdout
    assert "\r" not in out.stderr and "\x1b" not in out.stderr and "it/s" not in out.stderr, out.stderr[-500:]


def test_training_weights_that_are_no_number_are_refused_and_set_takes_every_override(tmp_path, capsys,
                                                                                       monkeypatch):
    """--kl-weight nan trained a NaN model and exited 0; --latent-noise and --repa-weight nan or < 0 turned
    their term off unsaid. --set given twice keeps both overrides; a list field with an empty default
    (attr_classes, attr_temporal) takes its elements' type from the config."""
    from flexvid import tokenizer, train_tokenizer
    out = tmp_path / "run"
    for command, option, value in (("train-vae", "--kl-weight", "nan"), ("train-vae", "--kl-weight", "-5"),
                                   ("train-vae", "--latent-noise", "nan"), ("train-tokenizer", "--repa-weight", "-1"),
                                   ("train-tokenizer", "--repa-weight", "nan")):
        assert cli.main([command, option, value, "--out-dir", str(out)]) == 2
        assert capsys.readouterr().err == f"flexvid {command}: {option} must be a number >= 0, got {float(value)}\n"
    assert not out.exists()
    asked = {}

    def stop(items, base):
        asked.update(parse(items, base))
        raise SystemExit("stopped here")

    parse = train_tokenizer.parse_overrides
    monkeypatch.setattr(train_tokenizer, "parse_overrides", stop)
    assert cli.main(["train-tokenizer", "--set", "p_null=0.2", "--set", "time_std=0.5", "attr_classes=3,4",
                     "--set", "attr_temporal=true,false", "--out-dir", str(out)]) == 2
    assert asked == {"p_null": 0.2, "time_std": 0.5, "attr_classes": [3, 4], "attr_temporal": [True, False]}
    base = tokenizer.TokenizerConfig().__dict__
    with pytest.raises(SystemExit, match="'yes' is not a valid"):
        parse(["attr_temporal=yes"], base)


def test_a_report_records_its_command_without_this_machines_paths(tmp_path, monkeypatch):
    from flexvid.hub import command_line
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    away = "/elsewhere/on/this/machine/out"
    assert command_line("eval-tokenizer", ["--data", str(tmp_path / "data"), "--out", away, "--n", "4"]) == \
        "flexvid eval-tokenizer --data data --out out --n 4"
    assert command_line("eval-tokenizer", [f"--data={tmp_path / 'data'}", f"--out={away}"]) == \
        "flexvid eval-tokenizer --data=data --out=out"


def test_a_checkpoint_stopped_mid_write_leaves_no_file_behind(tmp_path, monkeypatch):
    from flexvid import training
    path = tmp_path / "ckpt.pt"
    training.save_checkpoint(str(path), {"step": 1})

    def interrupted(state, f):
        open(f, "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(training.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training.save_checkpoint(str(path), {"step": 2})
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    monkeypatch.undo()
    assert training.torch.load(path, weights_only=True)["step"] == 1  # the last whole one is kept


def test_the_app_finds_a_model_folder_given_relative_to_where_it_is_run(tmp_path, monkeypatch):
    """flexvid app --tokenizer runs/my_tok/export (and FLEXVID_TOKENIZER, the generator options) from one's own
    folder: relative to it, not only to space.yaml's folder or the checkout."""
    import shutil

    from flexvid.runtime import load_settings, resolve_model
    shutil.copytree(REPO_ROOT / "assets" / "tokenizer", tmp_path / "runs" / "tok" / "export")
    monkeypatch.chdir(tmp_path)
    for name in ("FLEXVID_TOKENIZER", "FLEXVID_TEXT_GENERATOR", "FLEXVID_CLASS_GENERATOR"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings(tokenizer="runs/tok/export", generators={"text": "none", "class": "none"})
    assert resolve_model(s.tokenizer, s.base_dir) == str(tmp_path / "runs" / "tok" / "export")
    monkeypatch.setenv("FLEXVID_TOKENIZER", "runs/tok/export")
    assert load_settings().tokenizer == str(tmp_path / "runs" / "tok" / "export")
    monkeypatch.chdir(REPO_ROOT)  # the checkout's own folder is still named as given
    assert load_settings(tokenizer="assets/tokenizer").tokenizer == "assets/tokenizer"


def test_a_training_module_run_by_python_or_torchrun_errs_in_one_line(tmp_path):
    """python -m flexvid.train_vae (as torchrun -m runs it) prints a bad setting as `flexvid train-vae` does,
    and a batch that the processes cannot share is refused before any data is read."""
    import subprocess
    import sys
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bad = subprocess.run([sys.executable, "-m", "flexvid.train_vae", "--ema-decay", "nan", "--out-dir",
                          str(tmp_path / "a")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr == "flexvid train-vae: --ema-decay must be a number in [0, 1), got nan\n"
    bad = subprocess.run([sys.executable, "-m", "flexvid.train_tokenizer", "--batch-size", "3", "--out-dir",
                          str(tmp_path / "b")], capture_output=True, text=True, cwd=tmp_path,
                         env={**env, "RANK": "0", "WORLD_SIZE": "2"})
    assert bad.returncode == 2 and "--batch-size 3 must be a multiple of the 2 processes" in bad.stderr
    assert "Traceback" not in bad.stderr and not os.listdir(tmp_path)


def test_scripts_and_benchmarks_refuse_bad_values_in_one_line_before_any_work(tmp_path):
    """benchmarks/ and scripts/ print a bad value, a missing model or an output they cannot write as one line
    with status 2, before any model runs (compare_tokenizers loads every model before measuring the first)."""
    import subprocess
    import sys
    (tmp_path / "afile").write_text("")
    for script, args, said in (
            ("scripts/compare_tokenizers.py", ["assets/tokenizer", "--noise-scale", "5"], "noise_scale must be"),
            ("scripts/compare_tokenizers.py", ["assets/tokenizer", str(tmp_path / "none"), "--n", "4"], "no such folder"),
            ("benchmarks/bench_tokenizer.py", ["--repeats", "0"], "--repeats, --batch"),
            ("benchmarks/bench_tokenizer.py", ["--json", str(tmp_path / "afile" / "x.json")], "is a file, not a folder"),
            ("benchmarks/bench_generator.py", ["--frames", "18"], "--frames must be 1 + 4n"),
            ("benchmarks/load_test.py", ["--timeout", "-1"], "--timeout must be > 0")):
        run = subprocess.run([sys.executable, str(REPO_ROOT / script), *args], capture_output=True, text=True,
                             cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
        last = run.stderr.strip().splitlines()[-1]  # (argparse's own refusals print the usage above it)
        assert run.returncode == 2 and said in last and "Traceback" not in run.stderr, (script, run.stderr)
        assert run.stdout == "", (script, run.stdout)
