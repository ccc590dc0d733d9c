import json
import os
import subprocess
import sys

import pytest
import torch

from flexvid import shapes
from flexvid.train_vae import vae_loss
from flexvid.training import StepRandom, TrainConfig, fit, load_checkpoint, lr_at
from flexvid.vae import VAEConfig, VideoVAE

HERE = os.path.dirname(__file__)


def small_vae():
    torch.manual_seed(0)
    return VideoVAE(VAEConfig(z_channels=4, dims=(8, 16), spatial_down=(False, True), temporal_down=(False, True), patch=2))


def batches_for(cfg):
    def batches(start, b, rank, world):
        return shapes.batch_stream("train", b, 5, start=start * cfg.batch_size, rank=rank, world_size=world)
    return batches


def losses(out_dir):
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def test_schedule():
    cfg = TrainConfig(steps=100, warmup=10, lr=1e-3, min_lr=1e-4)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(100, cfg) == pytest.approx(1e-4)
    assert lr_at(55, cfg) == pytest.approx(5.5e-4)


def test_step_random_is_world_size_invariant():
    one = StepRandom(3, 7, 0, 1, torch.device("cpu")).randn(4, 2)
    halves = [StepRandom(3, 7, r, 2, torch.device("cpu")).randn(2, 2) for r in range(2)]
    assert torch.equal(torch.cat(halves), one)
    assert not torch.equal(StepRandom(3, 8, 0, 1, torch.device("cpu")).randn(4, 2), one)


def test_resume_continues_the_loss_curve_exactly(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path / "a"), steps=6, batch_size=2, lr=1e-3, warmup=2, ckpt_every=3,
                      log_every=1, bf16=False)
    ema_a = fit(small_vae(), vae_loss, batches_for(cfg), cfg)
    full = losses(cfg.out_dir)

    cfg_b = TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "b")})
    calls = {"n": 0}

    def crashing_loss(model, batch, rand):
        calls["n"] += 1
        if calls["n"] == 5:  # dies during step 5, after the checkpoint at step 3
            raise KeyboardInterrupt
        return vae_loss(model, batch, rand)

    with pytest.raises(KeyboardInterrupt):
        fit(small_vae(), crashing_loss, batches_for(cfg_b), cfg_b)
    assert load_checkpoint(os.path.join(cfg_b.out_dir, "ckpt.pt"))["step"] == 3
    ema_b = fit(small_vae(), vae_loss, batches_for(cfg_b), cfg_b)
    resumed = losses(cfg_b.out_dir)
    for step in range(1, 7):
        assert resumed[step] == full[step], step
    for pa, pb in zip(ema_a.parameters(), ema_b.parameters()):
        assert torch.equal(pa, pb)
    # the log's time counts from the run's step 0 across the resume; the crashed run's step 4, past its last
    # checkpoint, is in the log once, as the resumed run made it
    with open(os.path.join(cfg_b.out_dir, "log.jsonl")) as f:
        rows = [rec for rec in map(json.loads, f) if "loss" in rec]
    assert [rec["step"] for rec in rows] == list(range(1, 7))
    times = {rec["step"]: rec["time"] for rec in rows}
    assert all(times[a] <= times[a + 1] for a in range(1, 6)), times
    assert load_checkpoint(os.path.join(cfg_b.out_dir, "ckpt.pt"))["elapsed"] >= times[6] - 0.01 > 0  # (logged to 0.01 s)


def test_a_resume_with_other_training_settings_is_refused_before_any_work(tmp_path):
    """A run resumed with another learning rate, batch or seed would not continue the run it resumes: refused,
    naming what differs; --steps, --time-limit and how often it logs or saves may change."""
    from flexvid.training import check_resume
    cfg = TrainConfig(out_dir=str(tmp_path), steps=2, batch_size=2, lr=1e-3, warmup=1, ckpt_every=1, bf16=False)
    fit(small_vae(), vae_loss, batches_for(cfg), cfg)
    for change, said in (({"lr": 2e-3}, "--lr: 0.001 -> 0.002"), ({"batch_size": 4}, "--batch-size: 2 -> 4"),
                         ({"seed": 1, "warmup": 2}, "--seed: 0 -> 1; --warmup: 1 -> 2")):
        other = TrainConfig(**{**cfg.__dict__, **change})
        with pytest.raises(ValueError, match=f"other settings \\({said}\\)"):
            check_resume(str(tmp_path), None, other)
        with pytest.raises(ValueError, match="other settings"):
            fit(small_vae(), vae_loss, batches_for(other), other)
    longer = TrainConfig(**{**cfg.__dict__, "steps": 3, "log_every": 5, "ckpt_every": 2, "time_limit": 600.0})
    check_resume(str(tmp_path), None, longer)
    fit(small_vae(), vae_loss, batches_for(longer), longer)
    assert load_checkpoint(str(tmp_path / "ckpt.pt"))["step"] == 3


def test_checkpoint_is_atomic_and_safe(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path), steps=2, batch_size=2, warmup=1, ckpt_every=1, bf16=False)
    fit(small_vae(), vae_loss, batches_for(cfg), cfg)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt", "log.jsonl"]  # no temporary files left
    state = load_checkpoint(str(tmp_path / "ckpt.pt"))  # weights_only: no code runs on load
    assert set(state) >= {"model", "ema", "opt", "step"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vae", "tokenizer"])
def test_two_process_torchrun_matches_one_process(tmp_path, kind):
    """The same global batch on one process and on two gives the same weights. The tokenizer's loss has a
    count that varies by rank (its sampled, non-prefix steps) and a batch statistic (the code spread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE), HERE])}
    script = os.path.join(HERE, "ddp_step.py")
    subprocess.run([sys.executable, script, str(tmp_path / "one"), kind], check=True, env=env, timeout=300)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    script, str(tmp_path / "two"), kind], check=True, env=env, timeout=300)
    one = load_checkpoint(str(tmp_path / "one" / "ckpt.pt"))
    two = load_checkpoint(str(tmp_path / "two" / "ckpt.pt"))
    assert one["step"] == two["step"] == 2
    for name, p in one["model"].items():
        assert torch.allclose(p, two["model"][name], atol=1e-5, rtol=1e-4), name
    # and training really moved the weights
    if kind == "vae":
        start = small_vae().state_dict()
    else:
        from conftest import small_pipeline
        start = small_pipeline(p_prefix=0.5, var_weight=1.0, var_target=2.0).tokenizer.state_dict()
    assert any(not torch.allclose(start[n], p) for n, p in one["model"].items())


def test_vae_decoder_finetune_keeps_every_latent(tmp_path):
    """train-vae --init FOLDER --freeze-encoder: the decoder learns, every clip keeps its latents (so the
    tokenizer's tokens and the generators stay valid) and the export keeps the init's latent statistics."""
    from flexvid.train_tokenizer import load_vae
    from flexvid.train_vae import export, main

    vae = small_vae()
    vae.set_latent_stats([0.1, -0.2, 0.3, 0.0], [0.5, 0.6, 0.7, 0.8])
    export(vae, str(tmp_path / "init"), keep_stats=True)
    x = torch.stack([shapes.to_tensor(shapes.make_clip(shapes.SPLIT_SEEDS["val"], i, 5).video) for i in range(3)])
    before = load_vae(str(tmp_path / "init"))
    main(["--init", str(tmp_path / "init"), "--freeze-encoder", "--out-dir", str(tmp_path / "run"), "--steps", "3",
          "--batch-size", "2", "--frames", "5", "--lr", "1e-2", "--warmup", "1", "--ckpt-every", "3",
          "--eval-every", "0", "--no-bf16", "--threads", "1"])
    after = load_vae(str(tmp_path / "run" / "export"))
    assert after.cfg.latent_mean == before.cfg.latent_mean and after.cfg.latent_std == before.cfg.latent_std
    assert torch.equal(after.encode(x), before.encode(x))
    assert not torch.equal(after.decode(before.encode(x)), before.decode(before.encode(x)))
    with pytest.raises(SystemExit, match="--init"):
        main(["--freeze-encoder", "--out-dir", str(tmp_path / "x")])


def test_vae_decoder_fits_the_resampler_latents(tmp_path):
    """train-vae --freeze-encoder --resampled N: the resampler's latents of N training clips are cached
    once, odd steps fit the decoder to them, and the tokens stay what they were."""
    from conftest import small_pipeline
    from flexvid.train_tokenizer import load_vae
    from flexvid.train_vae import RESAMPLED_BASE, main

    pipe = small_pipeline()
    pipe.save_pretrained(str(tmp_path / "tok"))
    args = ["--init", str(tmp_path / "tok"), "--freeze-encoder", "--resampled", "3", "--out-dir", str(tmp_path / "run"),
            "--steps", "4", "--batch-size", "2", "--frames", "5", "--lr", "1e-2", "--warmup", "1", "--ckpt-every", "4",
            "--eval-every", "0", "--log-every", "1", "--no-bf16", "--threads", "1"]
    main(args)
    from safetensors.torch import load_file
    cache = load_file(str(tmp_path / "run" / "resampled_3.safetensors"))
    x = [shapes.to_tensor(shapes.make_clip(shapes.SPLIT_SEEDS["train"], RESAMPLED_BASE + i, 17).video) for i in range(3)]
    grids = pipe.tokenize(x)
    assert cache["latents"].shape == (3, 8, 5, 16, 16) and cache["k"].tolist() == [pipe.n_tokens] * 3
    # each cached latent is what detokenize decodes from that clip's tokens (seed = its index)
    want = pipe.sample_latents([grids[1]], seed=1)
    assert torch.allclose(cache["latents"][1].float(), want[0], atol=2e-3)
    logs = [json.loads(line) for line in open(tmp_path / "run" / "log.jsonl")]
    assert [("mse_resampled" in r) for r in logs] == [False, True, False, True]
    after = load_vae(str(tmp_path / "run" / "export"))
    assert torch.equal(after.encode(torch.stack(x)), pipe.vae.encode(torch.stack(x)))
    with pytest.raises(SystemExit, match="--freeze-encoder"):
        main(["--init", str(tmp_path / "tok"), "--resampled", "3", "--out-dir", str(tmp_path / "x")])


def test_bf16_autocast_only_where_it_is_native():
    from flexvid.training import autocast, bf16_native
    assert not bf16_native(torch.device("meta"))
    with autocast(torch.device("cpu"), True):
        y = torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3))
    assert y.dtype == (torch.bfloat16 if bf16_native(torch.device("cpu")) else torch.float32)
    with autocast(torch.device("cpu"), False):
        assert torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3)).dtype == torch.float32


def test_auto_dtype_is_bf16_only_where_it_is_native(monkeypatch):
    from flexvid import training
    from flexvid.training import resolve_dtype
    cpu = torch.device("cpu")
    assert resolve_dtype(None, cpu) == torch.float32 and resolve_dtype("bf16", cpu) == torch.bfloat16
    for native in (True, False):
        monkeypatch.setattr(training, "bf16_native", lambda device, native=native: native)
        assert resolve_dtype("auto", cpu) == (torch.bfloat16 if native else torch.float32)
    with pytest.raises(ValueError, match="'auto', 'bf16' or 'fp32'"):
        resolve_dtype("fp16", cpu)


def test_vae_loss_latent_noise_perturbs_the_decoded_latents():
    vae = small_vae().eval()
    x = torch.stack([shapes.to_tensor(shapes.make_clip(1, i, 5).video) for i in range(2)])

    def loss(noise):
        return vae_loss(vae, (x,), StepRandom(0, 3, 0, 1, torch.device("cpu")), latent_noise=noise)[0].item()

    assert loss(0.5) == loss(0.5)  # drawn from the step's random numbers
    assert loss(0.5) != loss(0.0)
    assert loss(0.0) == loss(0.0)


def timed_fit(tmp_path, step_seconds, time_limit: float):
    """fit() of a tiny model under --time-limit whose step i (from 1) sleeps step_seconds(i): (seconds taken,
    steps run, the last log record, the config)."""
    import time
    calls = []

    def loss(model, batch, rand):
        calls.append(0)
        time.sleep(step_seconds(len(calls)))
        return model(batch).pow(2).mean(), {}

    def batches(start, b, rank, world):
        while True:
            yield torch.randn(b, 4)

    cfg = TrainConfig(out_dir=str(tmp_path), steps=100_000, batch_size=2, lr=1e-3, min_lr=1e-5, warmup=2,
                      ckpt_every=100_000, log_every=1, bf16=False, time_limit=time_limit)
    torch.manual_seed(0)
    t = time.time()
    fit(torch.nn.Linear(4, 4), loss, batches, cfg)
    took = time.time() - t
    with open(os.path.join(cfg.out_dir, "log.jsonl")) as f:
        last = [json.loads(line) for line in f][-1]
    return took, len(calls), last, cfg


def test_time_limit_fits_the_schedule_to_the_time(tmp_path):
    _, _, last, cfg = timed_fit(tmp_path, lambda i: 0.02, 1.5)  # about 20 ms a step, whatever the machine
    assert 25 < last["step"] < 80  # 1.5 s at >= 20 ms a step, not the 100,000 asked
    assert load_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"))["step"] == last["step"]  # a final checkpoint
    assert last["lr"] < 0.05 * cfg.lr  # the cosine ran its course within the time
    assert last["time"] < 3.0


def test_time_limit_holds_when_steps_slow_down_after_the_probe(tmp_path):
    """Steps that take 5 ms while the step time is probed and 40 ms later (another process starts on the
    device): the schedule is refitted as it goes, so the run still ends near its time, not 8x later."""
    took, _, last, cfg = timed_fit(tmp_path, lambda i: 0.005 if i <= 30 else 0.04, 2.0)
    assert took < 3.5, took  # the first fit alone (2 s at 5 ms a step: about 400 steps at 40 ms) takes 16 s
    assert last["lr"] < 0.2 * cfg.lr  # the refitted cosine came down near its end


def test_time_limit_uses_its_time_when_steps_speed_up_after_the_probe(tmp_path):
    """The other way round (the other process on the device ends): the run is lengthened again, up to
    --steps, rather than ending where the slow probe put its end."""
    took, steps, _, _ = timed_fit(tmp_path, lambda i: 0.04 if i <= 30 else 0.005, 2.0)
    assert took > 1.6, took  # ending where the probe's 40 ms a step put it: about 1.3 s, 50 steps
    assert steps > 60


def test_a_warmup_as_long_as_the_run_is_said(tmp_path, capsys):
    def loss(model, batch, rand):
        return model(batch).pow(2).mean(), {}

    def batches(start, b, rank, world):
        while True:
            yield torch.randn(b, 4)

    for warmup, said in ((5, True), (3, True), (2, False)):
        cfg = TrainConfig(out_dir=str(tmp_path / str(warmup)), steps=3, batch_size=2, lr=1e-3, warmup=warmup,
                          ckpt_every=10, bf16=False)
        fit(torch.nn.Linear(4, 4), loss, batches, cfg)
        out = capsys.readouterr().out
        assert ("--warmup" in out and "never decays" in out) == said, out
        if said:
            assert f"rises to {3 / warmup * 1e-3:.2g} at its last step (--lr 0.001)" in out


def test_where_a_resumed_time_limited_run_ends_its_schedule():
    from flexvid.training import resumed_time_limit
    cfg = TrainConfig(out_dir="x", steps=1000, time_limit=2.0)
    saved = {"train_config": {"time_limit": 2.0, "steps": 90}}
    assert resumed_time_limit(saved, 40, 1.0, cfg) == 90  # stopped short of its fitted end: carries on to it
    assert resumed_time_limit(saved, 40, 3.5, cfg) == 40  # its time spent (a checkpoint past the limit): nothing
    assert resumed_time_limit(saved, 90, 1.9, cfg) == 90  # ended within its time: nothing, whatever is left
    assert resumed_time_limit(saved, 40, 1.0, TrainConfig(out_dir="x", steps=50, time_limit=2.0)) == 50  # --steps
    assert resumed_time_limit(saved, 40, 1.0, TrainConfig(out_dir="x", steps=1000, time_limit=3.0)) == 120  # 2 s more
    assert resumed_time_limit({}, 40, 1.0, cfg) == 80 and resumed_time_limit({"train_config": {"steps": "x"}}, 40, 1.0, cfg) == 80
    assert resumed_time_limit(saved, 40, 1.0, TrainConfig(out_dir="x", steps=1000)) is None  # no limit: --steps


def test_a_time_limited_run_resumed_carries_on_its_schedule_and_its_time(tmp_path, capsys):
    """--time-limit counts the whole run's training time, resumes included (as --steps counts its steps): a
    run stopped and resumed carries on with the learning rates it was on and ends near the limit in all;
    resumed once its time is spent, it trains nothing; resumed with a longer limit, it trains for the rest."""
    import time
    calls, stop = [], [45]

    def loss(model, batch, rand):
        calls.append(0)
        if len(calls) == stop[0]:
            raise KeyboardInterrupt  # stopped after the checkpoint of step 40, past the first refit (step 30)
        time.sleep(0.02)
        return model(batch).pow(2).mean(), {}

    def batches(start, b, rank, world):
        while True:
            yield torch.randn(b, 4)

    def log():
        with open(tmp_path / "log.jsonl") as f:
            return {r["step"]: r for r in map(json.loads, f)}

    cfg = TrainConfig(out_dir=str(tmp_path), steps=100_000, batch_size=2, lr=1e-3, min_lr=1e-5, warmup=2,
                      ckpt_every=10, log_every=1, bf16=False, time_limit=2.0)
    with pytest.raises(KeyboardInterrupt):
        fit(torch.nn.Linear(4, 4), loss, batches, cfg)
    before = log()
    stop[0] = 0
    fit(torch.nn.Linear(4, 4), loss, batches, cfg)
    after = log()
    assert "of --time-limit 2 s left" in capsys.readouterr().out
    assert after[41]["lr"] < before[40]["lr"]  # the same cosine, not one over --steps 100,000 until a refit
    last = after[max(after)]
    assert last["lr"] < 0.05 * cfg.lr and last["time"] < 2.8  # 2 s in all, not 2 s more
    fit(torch.nn.Linear(4, 4), loss, batches, cfg)
    said = capsys.readouterr().out
    assert "at the end of its --time-limit 2 s" in said and "s left" not in said and max(log()) == max(after)
    longer = TrainConfig(**{**cfg.__dict__, "time_limit": 3.0})
    fit(torch.nn.Linear(4, 4), loss, batches, longer)
    more = log()
    assert max(more) > max(after) + 20 and 2.6 < more[max(more)]["time"] < 3.8


@pytest.mark.parametrize("option, value", [
    ("ema-decay", "nan"), ("ema-decay", "1"), ("ema-decay", "-5"), ("grad-clip", "nan"), ("grad-clip", "0"),
    ("min-lr", "nan"), ("min-lr", "-1"), ("min-lr", "1"), ("lr", "-1"), ("batch-size", "0"), ("steps", "0"),
    ("ckpt-every", "0"), ("log-every", "0"), ("threads", "-1"), ("time-limit", "-1"), ("seed", str(2**70)),
    ("device", "tpu")])
def test_absurd_training_settings_are_refused_before_any_work(tmp_path, capsys, option, value):
    from flexvid import cli
    out = tmp_path / "run"
    assert cli.main(["train-vae", f"--{option}", value, "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flexvid train-vae: ") and (f"--{option}" in err or "device" in err), err
    assert "Traceback" not in err and not out.exists()


def test_lr_zero_needs_a_min_lr_at_most_zero_and_says_so(tmp_path):
    from flexvid.training import TrainConfig
    with pytest.raises(ValueError, match=r"--min-lr must be at most --lr \(0; --lr 0 needs --min-lr 0"):
        TrainConfig(lr=0.0, out_dir=str(tmp_path / "a"))
    assert TrainConfig(lr=0.0, min_lr=0.0, out_dir=str(tmp_path / "b")).lr == 0.0


def test_training_commands_say_their_errors_in_one_line(tmp_path, capsys):
    from flexvid import cli
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv, message in ((["train-vae", "--frames", "6", "--out-dir", str(tmp_path / "v")], "--frames must be 1 + 4n"),
                          (["train-vae", "--out-dir", str(afile)], "is an existing file"),
                          (["train-tokenizer", "--vae", "assets/tokenizer", "--fps", "0", "--out-dir",
                            str(tmp_path / "t")], "--fps must be a positive number"),
                          (["train-tokenizer", "--vae", "assets/tokenizer", "--init", "assets/generator-class",
                            "--out-dir", str(tmp_path / "t")], "not a tokenizer folder"),
                          (["train-tokenizer", "--init", "assets/generator-class", "--out-dir", str(tmp_path / "t")],
                           "--init assets/generator-class is not a tokenizer folder"),  # --vae left out: --init's
                          (["train-tokenizer", "--init", str(tmp_path), "--out-dir", str(tmp_path / "t")],
                           f"--init {tmp_path}: missing config file"),
                          (["train-generator", "--init", "assets/tokenizer", "--out-dir", str(tmp_path / "g")],
                           "not a generator folder"),
                          (["train-generator", "--probe-steps", "0", "--out-dir", str(tmp_path / "g")], "--probe-steps"),
                          (["train-generator", "--first-clip", "-1", "--out-dir", str(tmp_path / "g")],
                           "--first-clip must be >= 0"),
                          (["train-generator", "--first-clip", "4999000", "--clips", "4096", "--out-dir",
                            str(tmp_path / "g")], "where the long clips begin"),
                          (["select-samples", "--out", str(tmp_path), "--n", "1"], "is a folder"),
                          (["train-reranker", "--teacher", str(tmp_path / "none"), "--out", str(afile)], "is an existing file")):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert afile.read_text() == "x" and not (tmp_path / "v").exists() and not (tmp_path / "t").exists()


def test_a_broken_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path / "a"), steps=1, batch_size=2, warmup=1, ckpt_every=1, bf16=False)
    fit(small_vae(), vae_loss, batches_for(cfg), cfg)
    ckpt = tmp_path / "a" / "ckpt.pt"
    good = ckpt.read_bytes()
    other = TrainConfig(**{**cfg.__dict__, "steps": 2})
    torch.manual_seed(0)
    foreign = VideoVAE(VAEConfig(z_channels=4, dims=(8, 8), spatial_down=(False, True), temporal_down=(False, True),
                                 patch=2))
    with pytest.raises(ValueError, match="another model's training state"):
        fit(foreign, vae_loss, batches_for(other), other)
    for broken in (good[: len(good) // 2], b"not a checkpoint\n"):
        ckpt.write_bytes(broken)
        with pytest.raises(ValueError, match="not a readable flexvid checkpoint"):
            fit(small_vae(), vae_loss, batches_for(other), other)


def test_a_run_resumed_at_its_end_writes_its_export_again(tmp_path, capsys):
    cfg = TrainConfig(out_dir=str(tmp_path), steps=2, batch_size=2, warmup=1, ckpt_every=1, bf16=False)
    exported = []
    fit(small_vae(), vae_loss, batches_for(cfg), cfg, on_checkpoint=lambda ema, step: exported.append(step))
    assert exported == [1, 2]
    fit(small_vae(), vae_loss, batches_for(cfg), cfg, on_checkpoint=lambda ema, step: exported.append(step))
    assert exported == [1, 2, 2]  # nothing trained, the export at step 2 written again (it may have been cut short)
    assert "past --steps" not in capsys.readouterr().out
    cfg.steps = 1  # fewer steps than the checkpoint's: said, not passed over
    fit(small_vae(), vae_loss, batches_for(cfg), cfg, on_checkpoint=lambda ema, step: exported.append(step))
    assert exported == [1, 2, 2, 2]
    assert "at step 2, past --steps 1: nothing is trained, and the export is that step's" in capsys.readouterr().out


def test_latent_cache_is_rebuilt_for_another_encoder_or_a_cut_short_file(tmp_path, capsys):
    from flexvid.train_tokenizer import latent_cache
    vae = small_vae().eval()
    path = str(tmp_path / "latents.safetensors")
    z = latent_cache(vae, path, 2, 5, batch=2)
    assert torch.equal(latent_cache(vae, path, 2, 5, batch=2), z)  # read back
    other = small_vae().eval()
    with torch.no_grad():
        next(other.enc_in.parameters()).mul_(2)
    z2 = latent_cache(other, path, 2, 5, batch=2)
    assert not torch.allclose(z2, z)  # computed again with the other encoder, not read back
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    z3 = latent_cache(other, path, 2, 5, batch=2)
    assert "unreadable" in capsys.readouterr().out and torch.allclose(z3, z2)
    assert sorted(os.listdir(tmp_path)) == ["latents.safetensors"]


def test_a_checkpoint_of_a_run_with_other_settings_is_refused(tmp_path, capsys):
    from flexvid.training import announce, check_resume, data_identity
    # a folder is the same data whichever way it is named (relative, absolute, with ..)
    assert data_identity("vids/../vids", 32, 8)["data"] == data_identity(os.path.abspath("vids"), 32, 8.0)["data"]
    cfg = TrainConfig(out_dir=str(tmp_path), steps=1, batch_size=2, warmup=1, ckpt_every=1, bf16=False)
    run = {"data": "shapes world", "size": 64, "fps": 8.0}
    fit(small_vae(), vae_loss, batches_for(cfg), cfg, run=run, model_config={"dims": [8, 16]})
    good = (tmp_path / "ckpt.pt").read_bytes()
    assert load_checkpoint(str(tmp_path / "ckpt.pt"))["run"] == run
    check_resume(cfg.out_dir, run)  # the same settings: fine
    check_resume(cfg.out_dir, {**run, "tokenizer": "abc"})  # a setting the checkpoint does not record: not compared
    other = {**run, "data": "my_videos", "size": 32}
    for call in (lambda: check_resume(cfg.out_dir, other),
                 lambda: fit(small_vae(), vae_loss, batches_for(cfg), TrainConfig(**{**cfg.__dict__, "steps": 2}), run=other)):
        with pytest.raises(ValueError, match="written by a run with other settings") as e:
            call()
        assert "data: 'shapes world' -> 'my_videos'" in str(e.value) and "size: 64 -> 32" in str(e.value)
    assert (tmp_path / "ckpt.pt").read_bytes() == good  # nothing trained, nothing written
    # a model of another shape: the config fields that differ are named
    foreign = VideoVAE(VAEConfig(z_channels=4, dims=(8, 8), spatial_down=(False, True), temporal_down=(False, True),
                                 patch=2))
    with pytest.raises(ValueError, match=r"another model's training state \(dims: \[8, 16\] -> \[8, 8\]\)"):
        fit(foreign, vae_loss, batches_for(cfg), TrainConfig(**{**cfg.__dict__, "steps": 2}), run=run,
            model_config={"dims": [8, 8]})
    capsys.readouterr()
    announce(str(tmp_path))
    assert capsys.readouterr().out == f"done: export in {tmp_path / 'export'}; checkpoint and log.jsonl in {tmp_path}\n"
