"""Training on a folder of one's own videos (flexvid.video_data, train-vae / train-tokenizer --data)."""
import json
import os
import re
import shutil
import warnings

import numpy as np
import pytest
import torch

from flexvid import shapes, video_io
from flexvid.video_data import ShapesClips, VideoFolder, clip_source
from flexvid.vae import VAEConfig, VideoVAE


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two usable videos (one at 16 fps, in a subfolder), a corrupt one, a too-short one, a text file."""
    root = tmp_path_factory.mktemp("videos")
    (root / "sub").mkdir()
    video_io.write_video(root / "a.mp4", shapes.make_clip(0, 1, 41).video, fps=16)  # 41 frames at 16 fps
    video_io.write_video(root / "sub" / "b.mp4", shapes.make_clip(0, 2, 25).video, fps=8)
    (root / "broken.mp4").write_bytes(os.urandom(2000))
    video_io.write_video(root / "short.mp4", shapes.make_clip(0, 3, 5).video, fps=8)
    (root / "notes.txt").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def data(folder):
    with pytest.warns(UserWarning, match="skipped 2 of 4 files") as record:
        d = VideoFolder(str(folder), T=17, size=32, fps=8.0)
    message = str(record[0].message)
    assert "broken.mp4" in message and "short.mp4" in message and "notes.txt" not in message
    assert str(folder) not in str(d.skipped)  # each file named within the folder (the reports are shared)
    assert record[0].filename == __file__  # the line that built the folder, not one inside flexvid
    return d


def test_folder_reads_resamples_and_skips(data):
    assert data.files == ["a.mp4", os.path.join("sub", "b.mp4")]
    # 41 frames at 16 fps last 2.56 s: 20 frames at 8 fps; b keeps its 25
    assert [len(v) for v in data.videos] == [20, 25]
    assert data.videos[0].shape[1:] == (32, 32, 3) and data.videos[0].dtype == np.uint8
    assert len(data) == (20 - 16) + (25 - 16)  # windows of 17 frames
    clip = data.clip(len(data) - 1)
    assert clip.shape == (3, 17, 32, 32) and -1 <= clip.min() and clip.max() <= 1
    # the last window of b is its last 17 frames
    assert torch.equal(clip, shapes.to_tensor(data.videos[1][-17:]))
    assert data.clip(0, T=9).shape == (3, 9, 32, 32)


def test_evaluation_windows_are_distinct_and_spread_over_the_videos(data):
    assert data.spread(3) == [(0, 0), (0, 3), (1, 0)]  # videos in turn, evenly within each
    every = data.spread(1000)  # no more than the folder has, none twice
    assert len(every) == len(set(every)) == len(data)
    assert torch.equal(data.window(1, 8), shapes.to_tensor(data.videos[1][8:25]))
    # longer windows come from the videos long enough for them alone (a: 20 frames, b: 25)
    assert data.spread(3, T=21) == [(1, 0), (1, 2), (1, 4)] and data.spread(9, T=21) == [(1, s) for s in range(5)]
    assert data.spread(3, T=26) == []


def test_eval_tokenizer_says_how_to_measure_short_videos(trained, tmp_path, capsys):
    from flexvid import cli

    model = str(trained / "tok" / "export")
    short = tmp_path / "short"
    short.mkdir()
    video_io.write_video(short / "s.mp4", shapes.make_clip(0, 3, 13).video, fps=8)  # 1.6 s
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one message, not a warning listing the same files first
        assert cli.main(["eval-tokenizer", "--model", model, "--data", str(short), "--out", str(tmp_path / "e"),
                         "--threads", "1", "--no-long"]) == 2
    err = capsys.readouterr().err
    assert "s.mp4: 13 frames at 8 fps" in err and "(the longest gives 13 frames); give --frames 13 or 9 or 5" in err
    # what it suggests is what the longest video gives, not --frames less 4 (10 frames: 9, not 13)
    shorter = tmp_path / "shorter"
    shorter.mkdir()
    video_io.write_video(shorter / "s.mp4", np.concatenate([shapes.make_clip(0, 3, 9).video] * 2)[:10], fps=8)
    for frames, hint in (("17", "give --frames 9 or 5"), ("201", "give --frames 9 or 5")):
        assert cli.main(["eval-tokenizer", "--model", model, "--data", str(shorter), "--frames", frames,
                         "--out", str(tmp_path / "e"), "--threads", "1", "--no-long"]) == 2
        assert hint in capsys.readouterr().err
    assert cli.main(["eval-tokenizer", "--model", model, "--data", str(short), "--frames", "9", "--n", "2", "--ks", "1",
                     "--steps", "1", "--no-long", "--out", str(tmp_path / "e"), "--threads", "1"]) == 0
    res = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert res["frames"] == 9 and [w["start_frame"] for w in res["windows"]] == [0, 4]
    assert cli.main(["eval-tokenizer", "--model", model, "--frames", "9", "--out", str(tmp_path / "e2")]) == 2
    assert "--frames is for --data folders" in capsys.readouterr().err


def test_folder_batches_are_a_function_of_the_step(data):
    one = next(data.stream(4, 9, start=8))[0]
    halves = [next(data.stream(2, 9, start=8, rank=r, world=2))[0] for r in range(2)]
    assert torch.equal(torch.cat(halves), one)  # the same global batch for any number of processes
    stream = data.stream(4, 9, start=0)
    next(stream), next(stream)
    assert torch.equal(next(stream)[0], one)  # resuming at clip 8 gives what the third batch was
    a, b = data.fixed("val", 5, 17), data.fixed("val", 3, 17)
    assert torch.equal(a[:3], b) and not torch.equal(data.fixed("cache", 3, 17), b)
    assert torch.equal(torch.cat(list(data.batches("cache", 5, 17, batch=2))), data.fixed("cache", 5, 17))


def test_bad_folders_are_clear_errors(tmp_path, folder):
    with pytest.raises(ValueError, match="not a folder"):
        VideoFolder(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no video files"):
        VideoFolder(str(tmp_path))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.mp4").write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="none of the 1 video files"):
        VideoFolder(str(bad))
    for i in range(6):  # seven files: five named, the rest counted
        (bad / f"y{i}.mp4").write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match=r"none of the 7 video files.*\(and 2 more\)$"):
        VideoFolder(str(bad))
    with pytest.raises(ValueError, match="more than 30 frames"):
        VideoFolder(str(folder), max_frames=30)
    with pytest.raises(ValueError, match="for --data folders"):
        clip_source(None, size=128)
    assert isinstance(clip_source(None), ShapesClips)


def test_a_file_cut_short_is_kept_but_said_and_a_short_one_says_why(tmp_path):
    """A download cut short decodes to its first part: kept (it is video), but said, as reconstruct and the app
    say it; one too short for a clip is skipped, the note in its reason; one frame is "1 frame"."""
    video_io.write_video(tmp_path / "whole.mp4", shapes.make_clip(0, 1, 65).video, fps=8)
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:len(data) * 8 // 10])  # its first 37 or so frames decode
    video_io.write_video(tmp_path / "one.mp4", shapes.make_clip(0, 2, 1).video, fps=8)
    with pytest.warns(UserWarning) as caught:
        d = VideoFolder(str(tmp_path), T=17, size=32, fps=8.0)
    said = [str(w.message) for w in caught]
    assert d.files == ["cut.mp4", "whole.mp4"] and len(d.videos[0]) < 65
    assert d.partial == [("cut.mp4", d.partial[0][1])] and "cut short or damaged?" in d.partial[0][1]
    assert any("read 1 of 3 files" in w and "only in part: cut.mp4: its frames end at" in w for w in said), said
    assert d.skipped == [("one.mp4", "1 frame at 8 fps, shorter than one 17-frame clip")]
    with pytest.warns(UserWarning) as caught:
        d = VideoFolder(str(tmp_path), T=65, size=32, fps=8.0)
    assert d.files == ["whole.mp4"] and not d.partial
    assert any("cut.mp4: " in str(w.message) and "shorter than one 65-frame clip (its frames end at" in str(w.message)
               for w in caught)


def test_a_data_folder_that_is_none_or_empty_is_said_before_any_model_is_built(tmp_path, capsys):
    from flexvid import cli
    (tmp_path / "empty").mkdir()
    vae = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "tokenizer")
    for command in (["train-vae"], ["train-tokenizer", "--vae", vae]):
        for data, said in ((tmp_path / "none", "is not a folder"), (tmp_path / "empty", "no video files")):
            assert cli.main([*command, "--data", str(data), "--out-dir", str(tmp_path / "run"), "--steps", "1"]) == 2
            out, err = capsys.readouterr()
            assert out == "" and said in err and err.count("\n") == 1, (out, err)  # no "VideoVAE: ... parameters"
    assert not (tmp_path / "run").exists()


def test_a_long_file_is_refused_without_being_read_whole(tmp_path, monkeypatch):
    """max_frames bounds what is decoded, not only what is kept: a long file stops being read early."""
    video_io.write_video(tmp_path / "long.mp4", shapes.make_clip(0, 4, 161).video, fps=16)  # 80 frames at 8 fps
    read = video_io.constant_rate_frames
    decoded = []

    def counting(*args, **kwargs):
        decoded.append(0)
        for frame in read(*args, **kwargs):
            decoded[-1] += 1
            yield frame

    monkeypatch.setattr(video_io, "constant_rate_frames", counting)
    with pytest.raises(ValueError, match="more than 30 frames"):
        VideoFolder(str(tmp_path), T=17, size=32, fps=8.0, max_frames=30)
    assert max(decoded) <= 2 * 31 + 1 < 161  # at most the 16 fps frames that 31 frames at 8 fps need
    decoded.clear()
    d = VideoFolder(str(tmp_path), T=17, size=32, fps=8.0, max_frames=80)  # exactly enough: all of it
    assert [len(v) for v in d.videos] == [80] and max(decoded) == 161
    # a file shorter than a clip after the budget is nearly spent is skipped as short, not taken as too long
    video_io.write_video(tmp_path / "z_short.mp4", shapes.make_clip(0, 5, 9).video, fps=8)
    with pytest.warns(UserWarning, match="z_short.mp4: 9 frames"):
        d = VideoFolder(str(tmp_path), T=17, size=32, fps=8.0, max_frames=85)  # 6 frames left
    assert d.files == ["long.mp4"]


def test_shapes_source_is_the_shapes_world():
    s = ShapesClips()
    x = s.fixed("val", 2, 5)
    assert torch.equal(x, torch.stack([shapes.to_tensor(c.video) for c in shapes.fixed_split("val", 2, 5)]))
    videos, labels, captions = next(s.stream(2, 5, start=4))
    assert torch.equal(videos, next(shapes.batch_stream("train", 2, 5, start=4))[0])


COMMON = ["--size", "32", "--batch-size", "2", "--warmup", "1", "--eval-every", "0", "--no-bf16", "--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, folder):
    """A VAE (2 steps) and a tokenizer (2 steps) trained on the folder at 32 px: their run folders."""
    from flexvid import train_tokenizer, train_vae

    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    vae = VideoVAE(VAEConfig(z_channels=4, dims=(8, 16), spatial_down=(False, True), temporal_down=(False, True), patch=2))
    vae.set_latent_stats([0.0] * 4, [1.0] * 4)
    train_vae.export(vae, str(root / "init"), keep_stats=True)
    with pytest.warns(UserWarning, match="skipped"):
        train_vae.main(["--init", str(root / "init"), "--out-dir", str(root / "vae"), "--steps", "2",
                        "--frames", "9", "--ckpt-every", "2", "--data", str(folder), *COMMON])
    with pytest.warns(UserWarning, match="skipped"):
        train_tokenizer.main(["--vae", str(root / "vae" / "export"), "--out-dir", str(root / "tok"),
                              "--steps", "2", "--ckpt-every", "2", "--latent-cache", "4", "--data", str(folder), *COMMON])
    return root


def test_train_vae_and_tokenizer_on_a_folder(tmp_path, folder, trained):
    from flexvid import train_tokenizer
    from flexvid.pipeline import VideoFlexTok
    from flexvid.train_tokenizer import latent_cache, load_vae

    common = ["--data", str(folder), *COMMON]
    vae_cfg = json.loads((trained / "vae" / "export" / "config.json").read_text())
    assert vae_cfg["latent_std"] != [1.0] * 4  # latent statistics measured on the folder's clips
    tok = VideoFlexTok.from_pretrained(str(trained / "tok" / "export"), device="cpu")
    assert tok.size == 32
    with pytest.raises(ValueError, match=r"a training run's folder: its model is in .*export"):
        VideoFlexTok.from_pretrained(str(trained / "tok"), device="cpu")  # the run's folder, not its export
    grid = tok.tokenize(torch.zeros(1, 3, 17, 32, 32))[0]
    assert grid.shape == (tok.num_steps(17), tok.n_tokens)
    # the latent cache records its clips' source: the shapes world's clips are not the folder's
    from safetensors import safe_open
    path = str(tmp_path / "latents_17f.safetensors")
    shutil.copy(trained / "tok" / "latents_17f.safetensors", path)
    with safe_open(path, "pt") as f:
        assert f.metadata()["source"].startswith("folder:") and f.get_tensor("latents").shape[-1] == 8
    z = latent_cache(load_vae(str(trained / "vae" / "export")), path, 2, 17)  # asked for shapes clips
    assert z.shape[0] == 2 and z.shape[-1] == 16  # computed anew from 64 px shapes clips, not reused
    with safe_open(path, "pt") as f:
        assert f.metadata()["source"] == "shapes"
    with pytest.warns(UserWarning), pytest.raises(SystemExit, match="px"):
        train_tokenizer.main(["--vae", str(trained / "vae" / "export"), "--out-dir", str(tmp_path / "y"),
                              "--init", str(trained / "tok" / "export"), *common[:2], "--size", "16"])


def test_a_run_resumed_with_other_data_or_size_is_refused_before_any_work(trained, folder):
    from flexvid import train_tokenizer, train_vae

    ckpts = {d: (trained / d / "ckpt.pt").read_bytes() for d in ("vae", "tok")}
    vae_export = (trained / "vae" / "export" / "model.safetensors").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the folder is not even read: reading it warns of its skipped files
        for argv in ([], ["--data", str(folder), "--size", "16"], ["--data", str(folder), "--size", "32", "--fps", "12"]):
            with pytest.raises(ValueError, match="written by a run with other settings") as e:
                train_vae.main(["--out-dir", str(trained / "vae"), "--steps", "4", "--frames", "9", *argv])
            assert "resume with the settings that wrote it" in str(e.value)
        with pytest.raises(ValueError, match=r"data: .*'shapes world'"):
            train_tokenizer.main(["--vae", str(trained / "vae" / "export"), "--out-dir", str(trained / "tok"),
                                  "--steps", "4", "--threads", "1"])
        another = trained / "vae2"  # the same data and size, another VAE: other latents
        torch.manual_seed(1)
        vae = VideoVAE(VAEConfig(z_channels=4, dims=(8, 16), spatial_down=(False, True), temporal_down=(False, True),
                                 patch=2))
        vae.set_latent_stats([0.0] * 4, [1.0] * 4)
        train_vae.export(vae, str(another), keep_stats=True)
        with pytest.raises(ValueError, match=r"other settings \(vae_encoder: [^;]*\)") as e:  # that alone differs
            train_tokenizer.main(["--vae", str(another), "--out-dir", str(trained / "tok"), "--steps", "4",
                                  "--data", str(folder), *COMMON])
        # which folder, and where the VAE it started with is (a VAE trained again since has another encoder)
        assert f"--vae {another} is not the VAE the run started with" in str(e.value)
        assert f"carries the VAE it started with: --vae {trained / 'tok' / 'export'})" in str(e.value)
        # settings a user gets wrong are said before the folder is decoded
        for argv, message in ((["--vae", str(trained / "vae"), "--out-dir", str(trained / "new")], "no config.json there"),
                              (["--vae", str(trained / "vae" / "export"), "--frames", "16",
                                "--out-dir", str(trained / "new")], r"--frames must be 1 \+ 4n"),
                              (["--vae", str(trained / "vae" / "export"), "--size", "30",
                                "--out-dir", str(trained / "new")], "not a multiple"),
                              (["--vae", str(trained / "vae" / "export"), "--set", "attr_weight=0.5",
                                "--out-dir", str(trained / "new")], "not with --data")):
            with pytest.raises(SystemExit, match=message):
                train_tokenizer.main([*argv, "--data", str(folder)])
    assert {d: (trained / d / "ckpt.pt").read_bytes() for d in ("vae", "tok")} == ckpts  # nothing changed
    assert (trained / "vae" / "export" / "model.safetensors").read_bytes() == vae_export
    assert not (trained / "new").exists()


def test_a_seed_repeats_a_run_from_its_first_weights(folder, tmp_path):
    """The same command and --seed give the same run, whatever the process's own random state: the models
    are built after the seed is set (the tiny presets, not an --init)."""
    from safetensors.torch import load_file

    from flexvid import train_tokenizer, train_vae

    def run(kind, out, noise):
        torch.manual_seed(noise)  # another process's state before the command
        with pytest.warns(UserWarning, match="skipped"):
            if kind == "vae":
                train_vae.main(["--out-dir", str(out), "--steps", "1", "--frames", "9", "--data", str(folder),
                                *COMMON])
            else:
                train_tokenizer.main(["--vae", str(tmp_path / "v1" / "export"), "--out-dir", str(out), "--steps",
                                      "1", "--data", str(folder), *COMMON])
        name = "model.safetensors" if kind == "vae" else "tokenizer.safetensors"
        return load_file(str(out / "export" / name))

    for kind in ("vae", "tok"):
        a, b = run(kind, tmp_path / f"{kind[0]}1", 1), run(kind, tmp_path / f"{kind[0]}2", 2)
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a), kind


def test_resuming_on_a_changed_folder_and_other_mistakes_are_said_before_any_work(trained, folder, tmp_path):
    from flexvid import train_tokenizer, train_vae

    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="skipped"):
        train_vae.main(["--init", str(trained / "init"), "--out-dir", str(run), "--steps", "1", "--frames", "9",
                        "--data", str(changed), *COMMON])
    ckpt = (run / "ckpt.pt").read_bytes()
    video_io.write_video(changed / "c.mp4", shapes.make_clip(0, 4, 25).video, fps=8)  # a video added
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before the folder is decoded (which warns of skipped files)
        with pytest.raises(ValueError, match=r"files: '4 video files, \w+' -> '5 video files, \w+' \(added: c.mp4\)"):
            train_vae.main(["--init", str(trained / "init"), "--out-dir", str(run), "--steps", "2", "--frames",
                            "9", "--data", str(changed), *COMMON])
        (changed / "c.mp4").unlink()  # and one replaced by a file of another size, one removed: each named
        first, *rest = sorted(p for p in changed.rglob("*.mp4"))
        first.write_bytes(first.read_bytes() + b"\0")
        rest[-1].unlink()
        with pytest.raises(ValueError, match=rf"\(removed: {re.escape(str(rest[-1].relative_to(changed)))}; "
                                             rf"replaced: {re.escape(str(first.relative_to(changed)))}\)"):
            train_vae.main(["--init", str(trained / "init"), "--out-dir", str(run), "--steps", "2", "--frames",
                            "9", "--data", str(changed), *COMMON])
        # a size the VAE cannot take, before the folder is decoded
        with pytest.raises(SystemExit, match="--size 36 is not a multiple of the VAE's spatial factor"):
            train_vae.main(["--out-dir", str(tmp_path / "v36"), "--data", str(folder), *COMMON[2:], "--size", "36"])
        # an impossible size is said as such, not as a difference from the checkpoint's
        with pytest.raises(ValueError, match=r"^--size must be an integer in \[8, 1024\], got 0$"):
            train_vae.main(["--init", str(trained / "init"), "--out-dir", str(run), "--steps", "2", "--frames",
                            "9", "--data", str(changed), *COMMON[2:], "--size", "0"])
    assert (run / "ckpt.pt").read_bytes() == ckpt
    # videos too short for a training clip: said with why 17 frames, whatever --frames
    short = tmp_path / "short"
    short.mkdir()
    video_io.write_video(short / "s.mp4", shapes.make_clip(0, 5, 13).video, fps=8)
    with pytest.raises(SystemExit, match="its evaluation and the latent statistics use one whole 17-frame chunk"):
        train_vae.main(["--out-dir", str(tmp_path / "vs"), "--frames", "9", "--data", str(short), *COMMON])
    # --freeze-encoder keeps every token: a --vae that encodes otherwise than --init's is refused, and left
    # out, --vae is --init's
    tok = trained / "tok" / "export"
    with pytest.raises(SystemExit, match="leave --vae out to keep --init's"):
        train_tokenizer.main(["--init", str(tok), "--vae", str(trained / "init"), "--freeze-encoder",
                              "--out-dir", str(tmp_path / "t"), "--steps", "1", "--data", str(folder), *COMMON])
    with pytest.warns(UserWarning, match="skipped"):
        train_tokenizer.main(["--init", str(tok), "--freeze-encoder", "--out-dir", str(tmp_path / "t"), "--steps",
                              "1", "--data", str(folder), *COMMON])
    from flexvid.pipeline import VideoFlexTok
    x = torch.rand(1, 3, 17, 32, 32) * 2 - 1
    before = VideoFlexTok.from_pretrained(str(tok), device="cpu").tokenize(x)[0]
    after = VideoFlexTok.from_pretrained(str(tmp_path / "t" / "export"), device="cpu").tokenize(x)[0]
    assert torch.equal(before, after)


def test_eval_tokenizer_on_a_folder_and_its_refusals(trained, folder, tmp_path, capsys, monkeypatch):
    from flexvid import cli

    model = str(trained / "tok" / "export")
    # a 32 px model and the 64 px shapes world: said, not a message about some video's size
    assert cli.main(["eval-tokenizer", "--model", model, "--out", str(tmp_path / "e0"), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "32 px" in err and "--data FOLDER" in err and "Traceback" not in err
    assert cli.main(["eval-tokenizer", "--model", model, "--data", str(tmp_path / "none"), "--out",
                     str(tmp_path / "e0")]) == 2
    assert "is not a folder" in capsys.readouterr().err and not (tmp_path / "e0").exists()
    reads = []
    read_resampled = video_io.read_resampled
    monkeypatch.setattr(video_io, "read_resampled", lambda path, *a, **k: reads.append(path) or read_resampled(path, *a, **k))
    with pytest.warns(UserWarning, match="skipped"):
        assert cli.main(["eval-tokenizer", "--model", model, "--data", str(folder), "--n", "3", "--ks", "1", "4",
                         "--steps", "2", "--n-long", "1", "--out", str(tmp_path / "e"), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert len(reads) == len(set(reads)) == 4  # each video decoded once, for the long-video check too
    assert "no video under" in out  # no video of the folder has 81 frames: the long-video check says so
    res = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert res["data"] == folder.name and res["semantics"] is None and "token_probe" not in res  # no machine path
    # distinct windows from both usable videos, each named, and the files skipped with why
    assert len({(w["file"], w["start_frame"]) for w in res["windows"]}) == 3 == res["n"]
    assert {w["file"] for w in res["windows"]} == {"a.mp4", os.path.join("sub", "b.mp4")}
    assert {f["file"] for f in res["skipped_files"]} == {"broken.mp4", "short.mp4"} and res["partly_read_files"] == []
    assert "measuring on 3 distinct 17-frame windows from 2 of the 2 usable videos" in out
    assert res["rate_distortion"]["ks"] == [1, 4] and len(res["rate_distortion"]["psnr_clips"][0]) == 3
    assert all(np.isfinite(res["rate_distortion"]["psnr"])) and np.isfinite(res["vae"]["psnr"])
    assert "semantics" not in res["vae"] and res["long_video"] is None
    html = (tmp_path / "e" / "eval.html").read_text()
    assert f"data: {folder.name}; clips: 3; frames: 17" in html and "flexvid eval-tokenizer --model" in html
    assert "windows measured (3)" in html and "files skipped (2)" in html and "broken.mp4" in html
    assert str(tmp_path) not in html and str(folder) not in html and str(folder) not in json.dumps(res)
    assert res["settings"]["command"].startswith("flexvid eval-tokenizer --model ")
    # the generators train on the shapes world: a tokenizer for other clips is refused before the token cache
    assert cli.main(["train-generator", "--tokenizer", model, "--out-dir", str(tmp_path / "g"), "--clips", "4",
                     "--long-clips", "0", "--val-clips", "2", "--probe-clips", "0"]) == 2
    err = capsys.readouterr().err
    assert "32 px" in err and "shapes world" in err and not (tmp_path / "g" / "tokens.safetensors").exists()


def test_eval_tokenizer_long_video_on_a_folder_takes_its_windows_from_the_long_videos(trained, tmp_path, monkeypatch):
    """The long-video check of a folder measures the videos of 81 frames or more, read once with the rest."""
    from flexvid import evaluate
    from flexvid.pipeline import VideoFlexTok

    root = tmp_path / "mixed"
    root.mkdir()
    video_io.write_video(root / "long.mp4", shapes.make_clip(0, 5, 85).video, fps=8)
    video_io.write_video(root / "short.mp4", shapes.make_clip(0, 6, 17).video, fps=8)
    reads = []
    read_resampled = video_io.read_resampled
    monkeypatch.setattr(video_io, "read_resampled", lambda path, *a, **k: reads.append(path) or read_resampled(path, *a, **k))
    monkeypatch.setattr(evaluate, "memory_scaling", lambda *a, **k: {"ratio": None})  # fresh processes: tested elsewhere
    tok = VideoFlexTok.from_pretrained(str(trained / "tok" / "export"), device="cpu")
    res = evaluate.evaluate(tok, "m", n=3, n_long=2, ks=[1], data=str(root), steps=1)
    assert sorted(p.name for p in reads) == ["long.mp4", "short.mp4"]
    assert {w["file"] for w in res["windows"]} == {"long.mp4", "short.mp4"}
    assert res["long_windows"] == [{"file": "long.mp4", "start_frame": 0}, {"file": "long.mp4", "start_frame": 4}]
    lv = res["long_video"]
    assert lv["frames"] == 81 and np.isfinite(lv["psnr"]) and lv["memory"] == {"ratio": None}


def test_read_resampled_is_the_read_resampled_and_cropped_clip_holding_only_what_it_keeps(tmp_path):
    """video_io.read_resampled gives, frame for frame, resize_center_crop(resample_fps(read_video)) at 1, 3, 8,
    16 and 30 fps, for a wide and a tall picture and a GIF that holds its frames; it stops at max_frames and
    says whether the clip goes on; a 120 fps file read for 8 fps never holds its other frames."""
    import tracemalloc

    import PIL.Image
    clip = shapes.make_clip(0, 7, 45).video
    for fps, (w, h) in ((1, (64, 64)), (3, (200, 33)), (8, (48, 96)), (16, (64, 64)), (30, (96, 48))):
        path = tmp_path / f"c{fps}.mp4"
        video_io.write_video(path, np.stack([cv2_resize(f, w, h) for f in clip]), fps=fps)
        frames, src = video_io.read_video(path)
        want = video_io.resize_center_crop(video_io.resample_fps(frames, src, 8.0), 32)
        got, got_src, more = video_io.read_resampled(path, 8.0, 32, 10**6)
        assert got_src == src and not more and np.array_equal(got, want), (fps, got.shape, want.shape)
        part, _, more = video_io.read_resampled(path, 8.0, 32, 5)
        assert np.array_equal(part, want[:5]) and more == (len(want) > 5)
        assert not video_io.read_resampled(path, 8.0, 32, len(want))[2]  # exactly enough: no more
    images = [PIL.Image.fromarray(f) for f in clip[:6]]
    images[0].save(tmp_path / "g.gif", save_all=True, append_images=images[1:], duration=[100, 700, 100, 300, 100, 900])
    frames, src = video_io.read_video(tmp_path / "g.gif")
    assert np.array_equal(video_io.read_resampled(tmp_path / "g.gif", 8.0, 32, 1000)[0],
                          video_io.resize_center_crop(video_io.resample_fps(frames, src, 8.0), 32))
    video_io.write_video(tmp_path / "fast.mp4", np.repeat(clip[:, :, :, :], 6, axis=0)[:240], fps=120)
    tracemalloc.start()
    try:
        got, src, _ = video_io.read_resampled(tmp_path / "fast.mp4", 8.0, 32, 1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(got) == 16 and src == 120
    assert peak < 40 * 64 * 64 * 3, peak  # the 16 kept frames and a few decoded ones, not 240 (2.9 MB)


def cv2_resize(frame, w, h):
    import cv2
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def test_every_frame_of_a_folder_is_in_some_shorter_clip_and_its_cache_key_is_its_frames(tmp_path, monkeypatch):
    """Clips shorter than the folder was read for (train-vae's 9 frames of a folder read for 17) are drawn
    from all their own windows: the last frames of each video too. Two folders laid out alike (the same
    names and lengths) but holding other frames have other names (the latent cache's key). A file past
    MAX_RESAMPLED_FRAMES at --fps but within the folder's budget is kept."""
    ramp = np.repeat(np.arange(0, 240, 10, dtype=np.uint8)[:, None, None, None], 32, 1)
    ramp = np.repeat(np.repeat(ramp, 32, 2), 3, 3)  # 24 frames, frame i at level 10 i
    for name, video in (("a", ramp), ("b", 255 - ramp)):
        (tmp_path / name).mkdir()
        video_io.write_video(tmp_path / name / "0001.mp4", video, fps=8)
    a, b = (VideoFolder(str(tmp_path / n), T=17, size=32) for n in "ab")
    assert len(a) == 24 - 16 and a.name != b.name
    assert VideoFolder(str(tmp_path / "a"), T=17, size=32).name == a.name  # the same frames: the same name
    seen = set()
    stream = a.stream(16, 9)
    for _ in range(20):
        clips = next(stream)[0]
        seen |= {int(round((v + 1) * 127.5 / 10)) for v in clips[:, 0, :, 16, 16].flatten().tolist()}
    assert seen == set(range(24)), sorted(set(range(24)) - seen)  # frames 16..23 were never drawn before
    assert torch.equal(a.clip(24 - 9, 9), shapes.to_tensor(a.videos[0][-9:]))  # the last of 16 windows
    with pytest.raises(ValueError, match="24-frame clips need"):
        a.clip(0, 24)
    (tmp_path / "slow").mkdir()
    video_io.write_video(tmp_path / "slow" / "s.mp4", ramp[:20], fps=1)  # 20 s: 160 frames at 8 fps
    monkeypatch.setattr(video_io, "MAX_RESAMPLED_FRAMES", 100)
    assert [len(v) for v in VideoFolder(str(tmp_path / "slow"), T=17, size=32).videos] == [160]


def test_a_linked_subfolder_is_followed_once(tmp_path):
    """A folder whose videos sit behind a link to another folder is read through it (Python's rglob does not
    follow it); a link back up the tree is no loop and lists nothing twice."""
    (tmp_path / "real").mkdir()
    video_io.write_video(tmp_path / "real" / "a.mp4", shapes.make_clip(0, 1, 17).video, fps=8)
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "data" / "linked")
    os.symlink(tmp_path / "data", tmp_path / "data" / "linked_up")  # a loop
    d = VideoFolder(str(tmp_path / "data"), T=17, size=32)
    assert d.files == [os.path.join("linked", "a.mp4")]
    os.symlink(tmp_path / "data" / "z_real", tmp_path / "data" / "a_link")  # a link named before its folder
    (tmp_path / "data" / "z_real").mkdir()
    video_io.write_video(tmp_path / "data" / "z_real" / "b.mp4", shapes.make_clip(0, 2, 17).video, fps=8)
    assert VideoFolder(str(tmp_path / "data"), T=17, size=32).files == \
        [os.path.join("linked", "a.mp4"), os.path.join("z_real", "b.mp4")]  # named by the real folder


def test_folder_changes_name_what_was_added_removed_or_replaced():
    from flexvid.training import run_differences
    from flexvid.video_data import folder_changes
    before = {f"v{i}.mp4": 100 for i in range(3)}
    after = {"v0.mp4": 100, "v1.mp4": 101, **{f"w{i}.mp4": 7 for i in range(7)}}
    assert folder_changes(before, after) == ("added: w0.mp4, w1.mp4, w2.mp4, w3.mp4, w4.mp4 and 2 more; "
                                             "removed: v2.mp4; replaced: v1.mp4")
    assert folder_changes(before, before) == ""
    said = run_differences({"files": "3 video files, a", "file_sizes": before, "size": 32},
                           {"files": "9 video files, b", "file_sizes": after, "size": 32})
    assert said == ["files: '3 video files, a' -> '9 video files, b' (added: w0.mp4, w1.mp4, w2.mp4, w3.mp4, "
                    "w4.mp4 and 2 more; removed: v2.mp4; replaced: v1.mp4)"]  # the sizes themselves unprinted
    assert run_differences({"files": "x", "size": 32}, {"files": "y", "file_sizes": after, "size": 32}) == \
        ["files: 'x' -> 'y'"]  # a checkpoint from before the sizes were kept: as it was said
