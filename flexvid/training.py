"""The training loop shared by every stage (VAE, tokenizer, generators).

AdamW with a linear warm-up and cosine decay, EMA weights, gradient clipping, bf16 autocast, periodic
checkpoints written atomically, exact resume, a tqdm bar, a JSONL log, and data-parallel training under
torchrun (gloo on CPU, nccl on GPU). A stage supplies its model, a loss function and a batch stream:

    loss, metrics = loss_fn(model, batch, rand)

`rand` draws the step's random numbers for the *global* batch from a generator seeded by (seed, step)
and hands each rank its slice, so a run sees the same data and draws on one process or several, and a
resumed run continues exactly where it stopped (the checkpoint needs no RNG state). Several processes
give one process's gradient (test_training checks it for the VAE and the tokenizer): a loss that averages
over a fixed number of rows per rank needs nothing more, one that averages over a count that varies (the
tokenizer's sampled, non-prefix time steps) divides by the global count (`global_mean`), and a batch
statistic (the tokenizer's code spread) is taken over the global batch (`global_batch`). Not the
tokenizer's optional pixel loss: it decodes `pixel_clips` clips of each rank's batch. A run under --time-limit fixes its length from its own step time, so a resumed one plans anew.
"""
from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import time
from copy import deepcopy
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from .hub import check_output


@dataclass
class TrainConfig:
    out_dir: str = "runs/default"
    steps: int = 1000
    batch_size: int = 16  # global batch, split across ranks
    lr: float = 3e-4
    min_lr: float = 3e-5  # floor of the cosine schedule
    warmup: int = 100
    weight_decay: float = 0.01
    beta2: float = 0.99
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ckpt_every: int = 250
    log_every: int = 10
    eval_every: int = 250  # 0: never
    seed: int = 0
    bf16: bool = True  # autocast to bf16 on CUDA, and on CPUs with native bf16 (avx512_bf16 / AMX); fp32 elsewhere
    threads: int = 0  # torch threads on CPU; 0 leaves the default
    device: str = "auto"
    time_limit: float = 0.0  # seconds of training of the whole run, resumes included (0: none): the schedule is fitted to it, see fit

    def __post_init__(self):
        """Every setting checked before any work: a ValueError that names the option (--ema-decay ...)."""
        def bad(name, want):
            raise ValueError(f"--{name.replace('_', '-')} must be {want}, got {getattr(self, name)!r}")

        def number(name, lo, hi=math.inf, lo_open=False, hi_open=False, whole=False):
            v = getattr(self, name)
            ok = (is_int(v) if whole else is_real(v)) and math.isfinite(v)
            ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
            if not ok:
                left, right = "(" if lo_open else "[", ")" if hi_open or hi == math.inf else "]"
                kind = "an integer" if whole else "a number"
                bad(name, f"{kind} in {left}{lo:g}, {hi:g}{right}".replace("inf]", "inf)"))

        if not isinstance(self.out_dir, str) or not self.out_dir.strip():  # ("" would be the working folder)
            bad("out_dir", "a folder name")
        check_output(self.out_dir, folder=True, name="--out-dir")
        for name in ("steps", "batch_size", "ckpt_every", "log_every"):
            number(name, 1, whole=True)
        for name in ("warmup", "eval_every", "threads"):
            number(name, 0, whole=True)
        number("lr", 0, 10)  # 0: a step that changes nothing (checks an --init)
        if is_real(self.min_lr) and is_real(self.lr) and self.min_lr > self.lr >= 0:
            bad("min_lr", f"at most --lr ({self.lr:g}; --lr {self.lr:g} needs --min-lr {self.lr:g} or lower)")
        number("min_lr", 0, self.lr)
        number("weight_decay", 0, 10)
        number("beta2", 0, 1, hi_open=True)
        number("grad_clip", 0, lo_open=True)
        number("ema_decay", 0, 1, hi_open=True)
        number("time_limit", 0)
        check_seed(self.seed, "--seed")
        if not isinstance(self.device, str):
            bad("device", "a device name")
        pick_device(self.device)  # a ValueError for a device this machine lacks

    @classmethod
    def add_args(cls, parser, helps: dict[str, str] | None = None, **defaults):
        """Flat command-line overrides for every field (--steps 2000 --lr 1e-3 ...); helps: {field: help}."""
        helps = {**DEFAULT_HELPS, **(helps or {})}
        for f in fields(cls):
            default = defaults.get(f.name, f.default)
            if isinstance(default, bool):
                parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=default,
                                    action=argparse_bool(), help=helps.get(f.name))
            else:
                parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(default), default=default,
                                    help=helps.get(f.name))
        return parser

    @classmethod
    def from_args(cls, args):
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    def start(self) -> None:
        """What a training command does first, before it builds its model or draws anything: its thread
        count, and the seed (`fit` seeds again, but a model built before it would start from other weights
        in every process, and --seed would not repeat a run)."""
        world = int(os.environ.get("WORLD_SIZE", "1")) if "RANK" in os.environ else 1  # under torchrun
        if world > 1 and self.batch_size % world:  # said now, not after a folder is decoded and a model built
            raise SystemExit(f"--batch-size {self.batch_size} must be a multiple of the {world} processes that "
                             "share each batch")
        if self.threads:
            torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)


DEFAULT_HELPS = {
    "threads": "CPU threads for torch (0: torch's default)",
    "bf16": "autocast to bf16 where it is native (CUDA; CPUs with AVX512-BF16 or AMX), else fp32",
    "time_limit": "train for about this many seconds in all, resumes included (0: --steps): the cosine schedule "
                  "is fitted to end with the time; --steps stays the upper bound",
    "device": "cpu, cuda, cuda:N or auto",
    "seed": "the run's seed: the starting weights and every step's draws",
}


def argparse_bool():
    import argparse
    return argparse.BooleanOptionalAction


# ----------------------------------------------------------------------------- small shared pieces
def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.min_lr at cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * p))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, in one fused call per dtype (many small kernels on a GPU
    otherwise)."""
    e, p = list(ema.parameters()), [q.detach().float() for q in model.parameters()]
    torch._foreach_lerp_(e, p, 1.0 - decay)


class StepRandom:
    """Random numbers for one step of the global batch; each rank gets its rows.

    Drawing the whole global batch on every rank (cheap next to a forward pass) makes training
    independent of the number of processes and exactly resumable.
    """

    def __init__(self, seed: int, step: int, rank: int, world: int, device: torch.device):
        self.gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        self.rank, self.world, self.device = rank, world, device

    def _slice(self, x: torch.Tensor, b: int) -> torch.Tensor:
        return x[self.rank * b:(self.rank + 1) * b].to(self.device)

    def randn(self, b: int, *shape) -> torch.Tensor:
        return self._slice(torch.randn(self.world * b, *shape, generator=self.gen), b)

    def rand(self, b: int, *shape) -> torch.Tensor:
        return self._slice(torch.rand(self.world * b, *shape, generator=self.gen), b)

    def randint(self, low: int, high: int, b: int, *shape) -> torch.Tensor:
        return self._slice(torch.randint(low, high, (self.world * b, *shape), generator=self.gen), b)


def world_size() -> int:
    """Processes training together (1 outside torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """A mean over the global batch, as this rank's share of it: the rank's total over the count summed over
    ranks, times the number of ranks, whose gradient DDP's average over ranks turns into the gradient of the
    one-process mean. (Each rank's own mean would weight a rank with fewer counted items, e.g. fewer
    sampled steps, more.) One process: total / count."""
    world = world_size()
    if world == 1:
        return total / count.clamp_min(1.0)
    count = count.detach().float().clone()
    dist.all_reduce(count)
    return total * world / count.clamp_min(1.0)


def global_batch(x: torch.Tensor) -> torch.Tensor:
    """This rank's rows (B, ...) -> the global batch (world * B, ...) in rank order, for a batch statistic;
    only this rank's rows carry a gradient. A loss of such a statistic, times world_size(), then averages over
    ranks to the one-process gradient. One process: x."""
    world = world_size()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


SEED_RANGE = (-(2**63), 2**64)  # what torch.Generator.manual_seed takes


def is_int(v) -> bool:
    """An integer of any kind (Python, NumPy, a 0-d integer tensor), not a bool."""
    if isinstance(v, torch.Tensor):
        return v.ndim == 0 and not v.is_floating_point() and not v.is_complex() and v.dtype != torch.bool
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def is_real(v) -> bool:
    """A real number of any kind (Python, NumPy, a 0-d tensor), not a bool."""
    if isinstance(v, torch.Tensor):
        return v.ndim == 0 and not v.is_complex() and v.dtype != torch.bool
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def check_seed(value, name: str = "seed") -> int:
    """An integer seed that torch.Generator takes, or a ValueError that says so."""
    if not is_int(value) or not SEED_RANGE[0] <= int(value) < SEED_RANGE[1]:
        raise ValueError(f"{name} must be an integer in [-2**63, 2**64), got {value!r}")
    return int(value)


def pick_device(name: str = "auto") -> torch.device:
    """'auto' (CUDA when there is one, else the CPU) or a torch device name, checked to exist here."""
    if name != "auto":
        try:
            dev = torch.device(name)
        except (RuntimeError, TypeError):
            raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
            raise ValueError(f"device {name!r} is not available on this machine (CUDA devices: "
                             f"{torch.cuda.device_count() if torch.cuda.is_available() else 0})")
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


DTYPE_CHOICES = ("auto", "bf16", "fp32")


def add_dtype_argument(parser) -> None:
    """The --dtype option of the inference commands (resolve_dtype's names; default None)."""
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default=None,
                        help="compute dtype: auto = bf16 where native (CUDA, CPUs with bf16 kernels), else fp32 "
                             "(default: bf16 on CUDA, fp32 on CPU)")


def add_threads_argument(parser) -> None:
    """The --threads option of the inference commands (0: torch's default, every core)."""
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch; 0 leaves torch's own choice (every core)")


def set_threads(threads: int) -> None:
    """torch's CPU threads, from a --threads value (0 leaves the default); a ValueError for a negative one."""
    if not is_int(threads) or threads < 0:
        raise ValueError(f"--threads must be an integer >= 0, got {threads!r}")
    if threads:
        torch.set_num_threads(threads)


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """Compute dtype for inference: None picks bf16 on CUDA and fp32 elsewhere; 'auto' picks bf16 wherever
    it is native (CUDA, or a CPU with bf16 kernels: `bf16_native`) and fp32 elsewhere; 'bf16' or 'fp32'
    by name."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype == "auto":
            return torch.bfloat16 if bf16_native(device) else torch.float32
        if dtype not in ("bf16", "fp32", "bfloat16", "float32"):
            raise ValueError(f"dtype must be 'auto', 'bf16' or 'fp32', got {dtype!r}")
        return torch.bfloat16 if dtype.startswith("bf") else torch.float32
    if dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"dtype must be torch.bfloat16 or torch.float32, got {dtype}")
    return dtype


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 pays on this device: CUDA, or a CPU whose oneDNN has bf16 kernels (avx512_bf16, AMX).
    Elsewhere (an AVX2-only CPU) bf16 autocast is emulated: the first VAE training step took 204 s
    under it and 3.0 s in fp32 on an AVX2-only machine."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast where the device has native bf16 (bf16_native); a no-op context otherwise."""
    if not enabled or not bf16_native(device):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def save_checkpoint(path: str, state: dict) -> None:
    """Atomic: write a temporary file, then rename over the old checkpoint."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:  # stopped mid-write (ctrl-C, a full disk): no partial file left behind under a new name each run
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: str, mmap: bool = False) -> dict:
    """A training checkpoint (weights_only: no pickled objects); mmap maps its tensors instead of reading them
    (for a look at its settings)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated, not a torch file, or pickled objects weights_only refuses
        raise ValueError(f"{path} is not a readable flexvid checkpoint ({type(e).__name__}); delete it to start "
                         "again, or use another --out-dir") from None
    if not isinstance(state, dict) or not {"model", "ema", "opt", "step"} <= set(state):
        raise ValueError(f"{path} is not a flexvid checkpoint; delete it to start again, or use another --out-dir")
    return state


def run_differences(saved: dict | None, now: dict | None) -> list[str]:
    """'name: saved -> now' for every setting of a run (its data, clip size, tokenizer, ...) that differs
    between a checkpoint and the run resuming it; settings only one side records are not compared."""
    saved, now = saved or {}, now or {}
    said = [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in sorted(set(saved) & set(now) - {"file_sizes"})
            if saved[k] != now[k]]
    sizes = saved.get("file_sizes"), now.get("file_sizes")
    if all(isinstance(d, dict) for d in sizes) and saved.get("files") != now.get("files"):
        from .video_data import folder_changes
        said = [f"{line} ({folder_changes(*sizes)})" if line.startswith("files: ") else line for line in said]
    return said


def config_differences(saved_json, now: dict | None) -> list[str]:
    """The model-config fields (the checkpoint keeps them as JSON) that differ from this run's."""
    try:
        saved = json.loads(saved_json) if isinstance(saved_json, str) else {}
    except ValueError:
        return []
    return run_differences(saved if isinstance(saved, dict) else {}, now)


# the training settings a resumed run may change: how long it runs, how often it logs and saves, where and on
# what it runs; any other (the learning rate, the batch, the seed, ...) would not continue the run it resumes
RESUME_MAY_CHANGE = ("out_dir", "steps", "time_limit", "ckpt_every", "log_every", "eval_every", "threads", "device",
                     "bf16")


def train_differences(saved: dict | None, cfg: "TrainConfig") -> list[str]:
    """'--option: saved -> now' for the TrainConfig settings outside RESUME_MAY_CHANGE that differ between a
    checkpoint's and this run's."""
    now = {k: v for k, v in asdict(cfg).items() if k not in RESUME_MAY_CHANGE}
    saved = {k: v for k, v in (saved or {}).items() if k in now}
    return [f"--{k.replace('_', '-')}: {saved[k]!r} -> {now[k]!r}" for k in sorted(saved) if saved[k] != now[k]]


def drop_log_after(path: str, step: int) -> None:
    """Remove the rows of a JSONL training log past `step` (the checkpoint a run resumes from), so that the
    log holds each step once; rows that are not a step's are kept."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()

    def past(line: str) -> bool:
        try:
            row = json.loads(line)
        except ValueError:
            return False
        return isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] > step
    kept = [line for line in lines if not past(line)]
    if len(kept) < len(lines):
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, path)


def check_resume(out_dir: str, run: dict | None, cfg: "TrainConfig | None" = None) -> None:
    """Before any work: a ValueError where out_dir holds a checkpoint of a run with other settings (data,
    size, frame rate, tokenizer...; with cfg, the training settings outside RESUME_MAY_CHANGE): resuming it
    would train one model on two runs' data and overwrite the export without a word. A checkpoint that
    cannot be read is reported here too."""
    path = os.path.join(out_dir, "ckpt.pt")
    if not (run or cfg) or not os.path.exists(path):
        return
    state = load_checkpoint(path, mmap=True)
    diff = run_differences(state.get("run"), run) + (train_differences(state.get("train_config"), cfg) if cfg else [])
    if diff:
        raise ValueError(f"{path} was written by a run with other settings ({'; '.join(diff)}): resume with the "
                         "settings that wrote it, or use another --out-dir")


def data_identity(data: str | None, size: int, fps: float) -> dict:
    """What a stage trains on, for `fit(run=...)`: the shapes world or a folder (wherever it is given from)
    with what it holds (its video files' names and sizes, listed without decoding any), size and frame rate."""
    if not data:
        return {"data": "shapes world", "size": int(size), "fps": float(fps)}
    from .video_data import MAX_SIZE, MIN_SIZE, folder_listing, folder_sizes
    if not is_int(size) or not MIN_SIZE <= size <= MAX_SIZE:  # said before a checkpoint is compared with it
        raise ValueError(f"--size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    sizes = folder_sizes(data)  # (file_sizes: kept to name what changed, not compared itself)
    return {"data": os.path.realpath(data), "files": folder_listing(data, sizes), "file_sizes": sizes,
            "size": int(size), "fps": float(fps)}


def announce(out_dir: str, export: str = "export") -> None:
    """The last line of a training command (rank 0): where its export, checkpoint and log are."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"done: export in {os.path.join(out_dir, export)}; checkpoint and log.jsonl in {out_dir}", flush=True)


def init_distributed() -> tuple[int, int, int]:
    """(rank, world, local_rank); starts the process group when launched by torchrun."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1, 0
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


# ----------------------------------------------------------------------------- the loop
def resumed_time_limit(state: dict, step: int, before: float, cfg: TrainConfig) -> int | None:
    """Where the cosine schedule of a run resumed under --time-limit ends until its first refit, the limit
    counting the seconds the run trained before (`before`, over `step` steps): the end the stopped run was
    fitted to, where it stopped short of it under the same limit (a resume after an interruption carries on
    with the same learning rates); else the steps its time left allows at its average step time so far, which
    is `step` itself (nothing to train) where that time is spent. None without a limit or a step."""
    if cfg.time_limit <= 0 or step <= 0 or before <= 0:
        return None
    if before >= cfg.time_limit:
        return min(cfg.steps, step)
    saved = state.get("train_config") or {}
    end = saved.get("steps")
    if saved.get("time_limit") == cfg.time_limit and isinstance(end, int) and not isinstance(end, bool):
        return min(cfg.steps, max(step, end))  # (at its end already: it ended within its time, nothing to train)
    return min(cfg.steps, max(step, step + int((cfg.time_limit - before) / (before / step))))


def fit(model: nn.Module,
        loss_fn: Callable,
        batches: Callable[[int, int, int, int], Iterator],
        cfg: TrainConfig,
        model_config: dict | None = None,
        eval_fn: Callable[[nn.Module, int], dict] | None = None,
        on_checkpoint: Callable[[nn.Module, int], None] | None = None,
        run: dict | None = None) -> nn.Module:
    """Train `model` and return its EMA copy.

    batches(start_step, per_rank_batch, rank, world) -> iterator of batches, deterministic in its
    arguments. loss_fn(model, batch, rand) -> (loss, dict of float metrics). eval_fn(ema, step) ->
    metrics, run on rank 0 every cfg.eval_every steps. Writes cfg.out_dir/{ckpt.pt, log.jsonl}. `run`: the
    settings that make a run what it is (data source, clip size, tokenizer fingerprint; JSON values), kept
    in the checkpoint: resuming with other ones is refused (check_resume).
    """
    rank, world, local_rank = init_distributed()
    device = pick_device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by world size {world}")
    per_rank = cfg.batch_size // world

    torch.manual_seed(cfg.seed)
    model = model.to(device)
    ema = deepcopy(model).float().eval().requires_grad_(False)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, cfg.beta2), fused=device.type == "cuda")

    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    most = cfg.steps  # --steps: where a time-limited run ends at the latest
    step, before = 0, 0.0  # before: training seconds of the steps a resumed run already made
    if os.path.exists(ckpt_path):
        state = load_checkpoint(ckpt_path)
        diff = run_differences(state.get("run"), run) + train_differences(state.get("train_config"), cfg)
        if diff:
            raise ValueError(f"{ckpt_path} was written by a run with other settings ({'; '.join(diff)}): resume "
                             "with the settings that wrote it, or use another --out-dir")
        try:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            step = int(state["step"])
            before = float(state.get("elapsed", 0.0))
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            diff = config_differences(state.get("model_config"), model_config)
            first = "; ".join(diff) if diff else (
                str(e).strip().splitlines()[-1].strip() if str(e).strip() else type(e).__name__)
            raise ValueError(f"{ckpt_path} holds another model's training state ({first}); resume with the "
                             "settings that wrote it, or use another --out-dir") from None
        fitted = resumed_time_limit(state, step, before, cfg)
        past = (f", past --steps {cfg.steps}: nothing is trained, and the export is that step's"
                if step > cfg.steps else "")
        if fitted is not None and fitted != cfg.steps:
            cfg = replace(cfg, steps=fitted)  # the schedule the stopped run was on (refitted as it goes)
            if fitted == step:
                past = (f", at the end of its --time-limit {cfg.time_limit:g} s ({before:.0f} s trained): nothing "
                        "is trained, and the export is that step's (a larger --time-limit trains for the difference)")
        if rank == 0:
            left = (f" ({cfg.time_limit - before:.0f} s of --time-limit {cfg.time_limit:g} s left)"
                    if cfg.time_limit > 0 and not past and step < cfg.steps else "")
            print(f"resumed from {ckpt_path} at step {step}{past}{left}")

    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    os.makedirs(cfg.out_dir, exist_ok=True)
    if rank == 0:  # a run stopped after its last checkpoint logged steps it now makes again: their rows go
        drop_log_after(os.path.join(cfg.out_dir, "log.jsonl"), step)
    log = open(os.path.join(cfg.out_dir, "log.jsonl"), "a") if rank == 0 else None
    data = batches(step, per_rank, rank, world)
    bar = tqdm(total=cfg.steps, initial=step, dynamic_ncols=True,  # TQDM_DISABLE=1 hides it on rank 0 too
               **({"disable": True} if rank != 0 else {}))
    t0 = time.time()
    # --time-limit: time steps PROBE[0]..PROBE[1] after the start (the first ones warm up kernels), then
    # end the cosine schedule where the time runs out (never later than cfg.steps), refitted every 25 steps
    probe, t_probe = (step + 5, step + 25), None

    def checkpoint():
        if rank == 0:
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "ema": ema.state_dict(),
                                        "opt": opt.state_dict(), "step": step, "train_config": asdict(cfg),
                                        "elapsed": before + time.time() - t0,
                                        "model_config": json.dumps(model_config or {}), "run": run or {}})
            if on_checkpoint:
                on_checkpoint(ema, step)

    if rank == 0 and step < cfg.steps <= cfg.warmup and not cfg.time_limit:
        print(f"note: --warmup {cfg.warmup} is not shorter than the run's {cfg.steps} steps: the learning rate "
              f"rises to {lr_at(cfg.steps - 1, cfg):.2g} at its last step (--lr {cfg.lr:g}) and never decays; pass a "
              "smaller --warmup", flush=True)
    if step >= cfg.steps and rank == 0 and on_checkpoint:  # resumed at the end: the export may not have been
        on_checkpoint(ema, step)                           # written (a run stopped while it was)
    while step < cfg.steps:
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = next(data)
        rand = StepRandom(cfg.seed, step, rank, world, device)
        model.train()
        with autocast(device, cfg.bf16):
            loss, metrics = loss_fn(net, batch, rand)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        update_ema(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
        step += 1
        refit = t_probe is not None and step > probe[1] and (step % 25 == 0 or step == cfg.steps)
        if cfg.time_limit > 0 and (step in probe or refit):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step == probe[0]:
                t_probe = (time.time(), step)
            else:  # refitted every 25 steps and at the last one to the step time of the steps since the last
                # fit: another process starting or ending on the device makes the run neither overrun nor stop short
                per_step = (time.time() - t_probe[0]) / (step - t_probe[1])
                t_probe = (time.time(), step)
                # on the device: NCCL broadcasts CUDA tensors only
                # the limit is the run's training time, resumes included (as --steps counts every step)
                left = torch.tensor([float(cfg.time_limit - before - (time.time() - t0)) / per_step], device=device)
                if world > 1:
                    dist.broadcast(left, 0)  # every rank ends on the same step
                cfg = replace(cfg, steps=max(step, min(most, step + int(left.item()))))
                bar.total = cfg.steps
                if rank == 0 and step == probe[1]:
                    short = (f" (not more than --warmup {cfg.warmup}: the learning rate only warms up and never "
                             "decays; pass a smaller --warmup)" if cfg.steps <= cfg.warmup else "")
                    print(f"time limit {cfg.time_limit:.0f} s at {per_step:.3f} s a step: {cfg.steps} steps{short}",
                          flush=True)
        bar.update(1)

        if rank == 0 and (step % cfg.log_every == 0 or step == 1):
            rec = {"step": step, "loss": loss.item(), "lr": lr, "grad_norm": gnorm.item(),
                   "time": round(before + time.time() - t0, 2), **metrics}  # seconds since the run's step 0
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
        if rank == 0 and eval_fn and cfg.eval_every > 0 and step % cfg.eval_every == 0:
            rec = {"step": step, "eval": eval_fn(ema, step)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            checkpoint()
    bar.close()
    if rank == 0 and cfg.time_limit > 0:
        print(f"time limit {cfg.time_limit:.0f} s: ended at step {step} after {time.time() - t0:.0f} s"
              + (f" ({before + time.time() - t0:.0f} s in all)" if before else ""), flush=True)
    if log:
        log.close()
    if world > 1:
        dist.barrier()
    return ema
