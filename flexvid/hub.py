"""Saving and loading weights: safetensors plus a JSON config, from a local folder or a Hugging Face repo.

Only plain values live in a config; the code decides which class to build from it, so a file can never
choose what code runs (unlike pickled checkpoints or configs that name classes).
"""
from __future__ import annotations

import dataclasses
import json
import os

import torch
from safetensors.torch import load_file, save_file


def resolve(path_or_repo_id: str, revision: str | None = None) -> str:
    """A local folder as is; otherwise a Hugging Face repo id fetched with huggingface_hub."""
    if os.path.isdir(path_or_repo_id):
        return path_or_repo_id
    if os.path.exists(path_or_repo_id):
        raise ValueError(f"{path_or_repo_id!r} is a file; pass the folder that holds config.json")
    if path_or_repo_id.count("/") != 1 or path_or_repo_id.startswith((".", "/")):
        raise ValueError(f"no such folder, and not a Hugging Face repo id (owner/name): {path_or_repo_id!r}")
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(path_or_repo_id, revision=revision,
                                 allow_patterns=["*.json", "*.safetensors", "*.md"])
    except Exception as e:  # offline, missing repo, ...: one clear message
        raise ValueError(f"could not load {path_or_repo_id!r} from the Hugging Face Hub: {e}") from None


def config_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def config_from_dict(cls, d: dict):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields in config: {sorted(unknown)}")
    return cls(**d)


def save_weights(module: torch.nn.Module, path: str, half: bool = False) -> None:
    """safetensors of the state dict; half stores floating tensors in fp16 (loading upcasts them)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().contiguous().cpu()
             for k, v in module.state_dict().items()}
    save_file(state, path)


def load_weights(module: torch.nn.Module, path: str) -> None:
    """Strict load from safetensors (no pickle)."""
    if not os.path.exists(path):
        raise ValueError(f"missing weights file {path}")
    state = load_file(path)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def write_json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def read_json(path: str) -> dict:
    if not os.path.exists(path):
        raise ValueError(f"missing config file {path}")
    with open(path) as f:
        return json.load(f)
