"""Save and restore just the trained tensors of a model (adapters, heads, trained modules).

Why: checkpoints and stage hand-overs need the few MB that training changed, never a copy of
the frozen base. Tensors are stored by parameter name in one safetensors file; loading checks
that the file holds exactly the expected names, so a checkpoint from another recipe is refused
with the names that differ instead of half-loading.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

TRAINABLE_WEIGHTS = "trainable.safetensors"


def trainable_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def save_tensors(model: nn.Module, names: Iterable[str], out_dir: Path) -> Path:
    """Write the named parameters to OUT/trainable.safetensors (temp file, then rename)."""
    params = dict(model.named_parameters())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / TRAINABLE_WEIGHTS
    tmp = out_dir / f".{TRAINABLE_WEIGHTS}.tmp-{os.getpid()}"  # no two writers share it
    save_file({n: params[n].detach().cpu().contiguous() for n in names}, str(tmp))
    tmp.replace(path)
    return path


def load_tensors(model: nn.Module, checkpoint_dir: Path, expected: Iterable[str]) -> None:
    """Copy OUT/trainable.safetensors into the model; the file must hold exactly `expected`."""
    path = Path(checkpoint_dir) / TRAINABLE_WEIGHTS
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint has no trainable weights file")
    saved = load_file(str(path))
    expected = set(expected)
    missing, unexpected = expected - set(saved), set(saved) - expected
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match this model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]} (was it written by another recipe?)"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in saved.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))
