"""Saving and loading weights: safetensors plus a JSON config, from a local folder or a Hugging Face repo.

Only plain values live in a config; the code decides which class to build from it, so a file can never
choose what code runs (unlike pickled checkpoints or configs that name classes).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def resolve(path_or_repo_id: str, revision: str | None = None) -> str:
    """A local folder as is; otherwise a Hugging Face repo id fetched with huggingface_hub. A name that
    looks like a path (~, ./, /, or whose first part is a folder here, like assets/tokenizr) is a
    missing folder, never sent to the Hub."""
    if not isinstance(path_or_repo_id, (str, os.PathLike)):
        raise ValueError(f"expected a folder or a Hugging Face repo id, got {type(path_or_repo_id).__name__}")
    path_or_repo_id = os.path.expanduser(os.fspath(path_or_repo_id))
    if os.path.isdir(path_or_repo_id):
        return path_or_repo_id
    if os.path.exists(path_or_repo_id):
        raise ValueError(f"{path_or_repo_id!r} is a file; pass the folder that holds config.json")
    if (path_or_repo_id.count("/") != 1 or path_or_repo_id.startswith((".", "/"))
            or os.path.isdir(path_or_repo_id.split("/")[0])):
        raise ValueError(f"no such folder: {path_or_repo_id!r} (nor a Hugging Face repo id, owner/name)")
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(path_or_repo_id, revision=revision,
                                 allow_patterns=["*.json", "*.safetensors", "*.md"])
    except Exception as e:  # offline, missing repo, ...: one clear line
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{path_or_repo_id!r} is no folder here (paths are relative to {os.getcwd()}) and the "
                         f"Hugging Face Hub could not give it: {reason[:300]}") from None


def display_name(path_or_repo_id: str) -> str:
    """How a report names a model: a local folder inside this checkout relative to its root (reports
    are committed, and must not name the machine they ran on), another local folder relative to the
    working directory where it lies below it, any other folder by its own name (a training run's `export`
    by its run's too: gen_a/export, not export), a repo id as is."""
    if not os.path.exists(path_or_repo_id):
        return path_or_repo_id
    full = os.path.realpath(path_or_repo_id)
    for base in (os.path.dirname(os.path.dirname(os.path.realpath(__file__))), os.getcwd()):
        rel = os.path.relpath(full, os.path.realpath(base))
        if rel != "." and not rel.startswith(".."):
            return rel.replace(os.sep, "/")
    name = os.path.basename(full)  # elsewhere on this machine: the folder's own name only ...
    return f"{os.path.basename(os.path.dirname(full))}/{name}" if name == "export" else name  # ... or its run's


def command_line(command: str, argv) -> str:
    """`flexvid COMMAND ARGS` as a report records what made it: each argument that names a file or folder as
    display_name gives it (no path of the machine it ran on)."""
    import shlex

    def shown(arg: str) -> str:
        option, eq, value = arg.partition("=")
        if arg.startswith("-") and eq:  # --out=/some/where
            return f"{option}={shown(value)}"
        if os.path.exists(arg):
            return display_name(arg)
        if os.path.isabs(arg) or arg.startswith("~"):  # a path not made yet (an --out): as display_name would
            full = os.path.realpath(os.path.expanduser(arg))
            rel = os.path.relpath(full, os.getcwd())
            return rel if not rel.startswith("..") else os.path.basename(full)
        return arg

    argv = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["flexvid", command, *(shlex.quote(shown(str(a))) for a in argv)])


def config_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def config_from_dict(cls, d: dict):
    """The config dataclass cls from a JSON object: unknown fields, wrong types, None and non-finite
    numbers are refused here, values out of range by cls.__post_init__; all as ValueError."""
    names = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(d, dict):
        raise ValueError(f"the {cls.__name__} config must be a JSON object, got {type(d).__name__}")
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields in config: {sorted(unknown)}")
    _check_types(cls, d)
    try:
        return cls(**d)
    except (TypeError, ValueError, AssertionError, ArithmeticError) as e:
        raise ValueError(f"bad {cls.__name__} config: {e}") from None


_OWN_FILES = tuple(os.path.dirname(os.path.abspath(f)) + os.sep for f in (__file__, torch.__file__))


_DTYPE_LOCK = threading.Lock()
_DTYPE_STATE = {"depth": 0, "before": None}  # calls under float32_default now, and the caller's default to restore


@contextlib.contextmanager
def _caller_autocast_off():
    """Turn off, for this thread, an autocast the caller turned on (CPU or CUDA); a no-op where none is on."""
    with contextlib.ExitStack() as stack:
        for device in ("cpu", "cuda"):
            if torch.is_autocast_enabled(device):
                stack.enter_context(torch.autocast(device, enabled=False))
        yield


def float32_default(fn):
    """Decorate a public entry point to run with torch's default dtype float32: the models are float32
    modules whatever the caller set (``torch.set_default_dtype(torch.float64)``, common in notebooks, built
    float64 weights that float32 inputs cannot meet, and drew other noise for the same seed). A no-op where
    the default is float32. Else the first call in sets float32 and the last one out puts the caller's
    default back, so calls overlapping in threads all run under float32; torch's default dtype is one for
    the process, so other threads see float32 while such a call runs. A caller's torch.autocast is turned off
    inside too (it changed a float32 model's tokens): the models run in the dtype they were loaded in."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _caller_autocast_off():
            return _float32(*args, **kwargs)

    def _float32(*args, **kwargs):
        with _DTYPE_LOCK:
            if _DTYPE_STATE["depth"] == 0 and torch.get_default_dtype() is torch.float32:
                switched = False
            else:
                switched = True
                if _DTYPE_STATE["depth"] == 0:
                    _DTYPE_STATE["before"] = torch.get_default_dtype()
                    torch.set_default_dtype(torch.float32)
                _DTYPE_STATE["depth"] += 1
        if not switched:
            return fn(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        finally:
            with _DTYPE_LOCK:
                _DTYPE_STATE["depth"] -= 1
                if _DTYPE_STATE["depth"] == 0:
                    torch.set_default_dtype(_DTYPE_STATE["before"])
    return wrapper


def warn_caller(message: str) -> None:
    """warnings.warn pointed at the first line outside flexvid and torch (torch.no_grad's wrappers), so that a
    warning names the user's own call however deep inside the library it arose: a tokenizer loaded lazily
    by the generator's first decode names the line that decoded. (Python 3.12's skip_file_prefixes, by hand.)"""
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_OWN_FILES):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def warn_unread(meta: dict, known, where: str) -> None:
    """Warn about top-level config.json keys this version does not read: a misspelt "fsp" would otherwise
    change nothing without a word. (Unknown fields inside a model's section are refused by config_from_dict.)
    The warning points at the user's call."""
    unread = sorted(set(meta) - set(known))
    if unread:
        warn_caller(f"{where}: config.json keys {unread} are not read and change nothing (the keys read: "
                    f"{', '.join(sorted(known))})")


def _like(v, default) -> bool:
    if isinstance(default, bool):
        return isinstance(v, bool)
    if isinstance(default, int):
        return isinstance(v, int) and not isinstance(v, bool)
    if isinstance(default, float):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if isinstance(default, str):
        return isinstance(v, str)
    if isinstance(default, (tuple, list)):
        return isinstance(v, (list, tuple)) and (not default or all(_like(x, default[0]) for x in v))
    return True


def _finite(v) -> bool:
    """No NaN or infinity anywhere in v (Python's json reads NaN and Infinity)."""
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, (list, tuple)):
        return all(_finite(x) for x in v)
    return True


def _check_types(cls, d: dict) -> None:
    """Each value of a config against its field's default: a number where a number goes, a list of
    numbers where a tuple goes (a string where a number goes would fail deep inside torch), None only
    where the field allows it, and finite numbers (NaN passes every comparison a range check makes)."""
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        v = d[f.name]
        if v is None:
            if default is not None and "None" not in str(f.type):
                raise ValueError(f"{cls.__name__} config field {f.name!r} must be like {default!r}, got None")
            continue
        if default is not None and not _like(v, default):
            raise ValueError(f"{cls.__name__} config field {f.name!r} must be like {default!r}, got {v!r}")
        if not _finite(v):
            raise ValueError(f"{cls.__name__} config field {f.name!r} must be finite, got {v!r}")


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere only set-and-restore reads it: process-wide, so at once
    os.umask(mask)
    return mask


def save_safetensors(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    """Write tensors to the safetensors file path, as a normal file would be (mode 0666 less the umask)
    and atomically: written to a temporary file beside it, then renamed into place, so a run stopped
    while writing leaves the old file. Creates the folder; tensors may be non-contiguous or on a GPU.
    safetensors >= 0.8 creates its files 0600 whatever the umask, which others could not read."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_weights(module: torch.nn.Module, path: str, half: bool = False) -> None:
    """safetensors of the state dict; half stores floating tensors in fp16 (loading upcasts them)."""
    save_safetensors({k: v.half() if half and v.is_floating_point() else v for k, v in module.state_dict().items()},
                     path)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def missing_weights(path: str) -> ValueError:
    """The error for a weights file that is not there, saying so where its folder holds pickled weights in its
    stead (flexvid reads safetensors alone: a pickle can run code as it loads)."""
    folder = os.path.dirname(path) or "."
    try:
        pickled = sorted(n for n in os.listdir(folder) if n.lower().endswith(PICKLE_SUFFIXES))
    except OSError:
        pickled = []
    hint = (f" (the folder holds {', '.join(pickled[:3])}{' ...' if len(pickled) > 3 else ''}: flexvid loads "
            "safetensors only, never pickled weights; convert a state dict you trust with "
            "safetensors.torch.save_file)") if pickled else ""
    return ValueError(f"missing weights file {path}{hint}")


def weight_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """{name: shape} of a safetensors file, from its header alone (no tensor is read)."""
    if not os.path.exists(path):
        raise missing_weights(path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a safetensors file")
    try:
        with safe_open(path, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - truncated or not safetensors at all (SafetensorError, OSError)
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from None


def load_weights(module: torch.nn.Module, path: str) -> None:
    """Strict load from safetensors (no pickle)."""
    if not os.path.exists(path):
        raise missing_weights(path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a safetensors file")
    try:
        state = load_file(path)
    except Exception as e:  # truncated or not safetensors at all (SafetensorError, OSError)
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from None
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other shapes: another size of model
        raise ValueError(f"{path} does not match the model: {str(e).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise ValueError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


# what building a model from a config that passed its checks can still raise (sizes that disagree, a
# library's own asserts, an allocation too large)
BUILD_ERRORS = (TypeError, ValueError, RuntimeError, AssertionError, ArithmeticError, IndexError, MemoryError)


def load_model(cls, cfg, path: str) -> torch.nn.Module:
    """cls(cfg) with its weights loaded strictly from the safetensors file at path.

    The model is first built on the meta device (no memory, no initialisation, about 0.05 s) and its
    tensor names and shapes compared with the file's header, so a config that disagrees with its
    weights, or asks for billions of parameters, is refused before the real build. cls must accept
    verbose=False (loading prints nothing). Every failure is a ValueError naming path."""
    shapes = weight_shapes(path)
    try:
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in cls(cfg, verbose=False).state_dict().items()}
    except BUILD_ERRORS as e:
        raise ValueError(f"{path}: bad {cls.__name__} config: {e}") from None
    missing, unexpected = [k for k in want if k not in shapes], [k for k in shapes if k not in want]
    if missing or unexpected:
        raise ValueError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    wrong = [k for k in want if want[k] != shapes[k]]
    if wrong:
        k = wrong[0]
        raise ValueError(f"{path} does not match the model: size mismatch for {k}: the file has "
                         f"{list(shapes[k])}, the config gives {list(want[k])} ({len(wrong)} tensors differ)")
    try:
        with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: the caller's RNG is kept
            model = cls(cfg, verbose=False)  # loading says nothing; training prints the size
    except BUILD_ERRORS as e:
        raise ValueError(f"{path}: bad {cls.__name__} config: {e}") from None
    load_weights(model, path)
    return model


def write_json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_output(path: str | os.PathLike, folder: bool = False, name: str | None = None) -> Path:
    """Check, before any work, that ``path`` can be written: a file (``folder=False``) that is not a
    folder, or a folder that is not a file, under an existing writable folder or one that can be made.
    Leaves nothing behind; raises ValueError with what is wrong (after ``name``, e.g. the option, when given)."""
    def fail(message):
        raise ValueError(f"{name}: {message}" if name else message)

    text = os.fspath(path)
    if not text.strip():
        fail("the output path is empty")
    if ("\x00" if isinstance(text, str) else b"\x00") in text:  # FFmpeg and the C library would cut it there
        fail(f"the output path {text!r} contains a NUL byte")
    p = Path(text)
    what = "folder" if folder else "file"
    try:  # (a name longer than the file system takes: ENAMETOOLONG from the first look at it)
        if folder and p.exists() and not p.is_dir():
            fail(f"the output folder {text!r} is an existing file")
        if not folder and (text.endswith(("/", os.sep)) or p.is_dir()):
            fail(f"the output file {text!r} is a folder")
        parent = p if folder else p.parent
        while not parent.exists():  # the nearest folder that exists must be a folder we may write in
            parent = parent.parent
    except OSError as e:
        shown = text if len(text) <= 80 else f"{text[:60]}...{text[-12:]}"
        fail(f"cannot write the output {what} {shown!r}: {e.strerror or e}")
    if not parent.is_dir():
        fail(f"cannot write the output {what} {text!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(f"cannot write the output {what} {text!r}: no permission to write in {str(parent)!r}")
    try:  # what os.access cannot judge (root on a read-only mount or /proc): a file made and gone at once
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        fail(f"cannot write the output {what} {text!r}: {str(parent)!r} cannot be written in ({e.strerror or e})")
    return p


def read_json(path: str) -> dict:
    if not os.path.exists(path):
        export = os.path.join(os.path.dirname(path), "export", os.path.basename(path))
        hint = (f" (a training run's folder: its model is in {os.path.dirname(export)})" if os.path.exists(export)
                else "")
        raise ValueError(f"missing config file {path}{hint}")
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable JSON file: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(obj).__name__}")
    return obj
