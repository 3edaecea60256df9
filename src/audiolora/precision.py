"""Which number format a run computes in, and the same format for every forward it makes.

Why a module: `training.precision: auto` must pick bf16 only where the hardware computes it
natively (CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX: on such a CPU a bf16 matmul is
several times faster than fp32, and a 135M audio LM's training step about twice as fast),
and fp32 elsewhere, where emulated bf16 would be slower. And the Trainer applies its autocast
to the forwards it wraps, so evaluations outside it (the base model before training,
`audiolora eval`, `predict`) must enter the same autocast, or the same adapter would score
differently in metrics.json and in a later `audiolora eval`. Input features stay fp32
(`full_precision`): they are data, and a dataset may be read inside such a region.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["fp32", "bf16", "fp16"]

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(cuda: bool | None = None) -> bool:
    """True when the device this run trains on computes bf16 in hardware."""
    if torch.cuda.is_available() if cuda is None else cuda:
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_precision(choice: str) -> Precision:
    """`auto` -> bf16 where `native_bf16()`, else fp32; any other choice is kept."""
    if choice == "auto":
        return "bf16" if native_bf16() else "fp32"
    if choice not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"training.precision={choice!r}: allowed auto, fp32, bf16, fp16")
    return choice  # type: ignore[return-value]


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """fp32 inside an autocast region: for input features, which are data, not model compute
    (the feature extractors' torch path cannot return bf16 arrays)."""
    with torch.autocast(device_type="cpu", enabled=False):
        yield


@contextlib.contextmanager
def compute_precision(precision: str) -> Iterator[None]:
    """Run forwards inside the autocast the Trainer uses for `precision` (no-op for fp32)."""
    resolved = resolve_precision(precision)
    if resolved == "fp32":
        yield
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.autocast(device_type=device, dtype=AUTOCAST_DTYPES[resolved]):
        yield


LOW_PRECISION_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
"""Layers whose matmul or convolution autocast runs in its lower dtype (CPU and CUDA)."""


@torch.no_grad()
def store_in_compute_dtype(model: torch.nn.Module, precision: str) -> int:
    """Keep the frozen full-precision weights of `LOW_PRECISION_LAYERS` in the dtype autocast
    computes them in; returns how many layers changed (0 for fp32).

    Why: autocast caches its casts of trainable weights only, so a frozen fp32 base is cast
    again on every call: 7-8 % of a whole-recording search's wall time (`predict --sessions`;
    8-17 % of a window in profiles). Exact inside `compute_precision(precision)`: autocast
    rounds each weight to the same value as this cast, and a weight already in its dtype is
    used as is. Only for a loaded run that evaluates or predicts, every forward inside that
    region (a forward outside it would mix dtypes). Not in training: there it gained nothing on
    the audio LM and raised the resident peak, since the fp32 weights stay mapped from their
    safetensors file beside the copies (temporal recipe: 6.2 s a step cast once against 6.0 s
    cast every call, 3722 against 3296 MB). 4- and 8-bit weights, trainable ones, weights
    shared with other modules and DoRA layers (DoRA reads their weights outside autocast's
    matmuls, for its norm) are left alone.
    """
    resolved = resolve_precision(precision)
    if resolved == "fp32":
        return 0
    dtype = AUTOCAST_DTYPES[resolved]
    # Weights read outside autocast's matmuls stay as they are: one tied to another kind of
    # module (Whisper's proj_out to its token embeddings), and a DoRA layer's (for its norm).
    kept: set[int] = set()
    layers = []
    for module in model.modules():
        if len(getattr(module, "lora_magnitude_vector", None) or ()):  # a DoRA layer
            kept.update(id(p) for p in module.parameters())
        if isinstance(module, LOW_PRECISION_LAYERS):
            layers.append(module)
        else:
            kept.update(id(p) for p in module.parameters(recurse=False))
    changed = 0
    for layer in layers:
        tensors = [t for t in (layer.weight, layer.bias) if t is not None]
        if any(t.requires_grad or t.dtype != torch.float32 or id(t) in kept for t in tensors):
            continue
        for tensor in tensors:
            tensor.data = tensor.data.to(dtype)
        changed += 1
    return changed


def model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's weights: what audio features are cast to
    before a forward (4-bit weights are not floating; the first floating parameter decides)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32
