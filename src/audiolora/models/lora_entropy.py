"""The spectrum of each LoRA update, cheaply: its entropy (the seed's regulariser) and its norm.

For a LoRA module the update is dW = s B A (B: d_out x r, A: r x d_in, s = alpha / r). With the
thin QR factorisations B = Q_B R_B and A^T = Q_A R_A, dW = s Q_B (R_B R_A^T) Q_A^T, so dW's
nonzero singular values are those of the r x r matrix s R_B R_A^T: no d_out x d_in product and
no large SVD, and the whole computation is differentiable.

Entropy (seed 001 §4.2): with sigma_i those singular values and p_i = sigma_i / sum_j sigma_j,
H(dW) = -sum_i p_i log p_i, between 0 (one direction) and log r (all directions equally used).
The regulariser adds lambda * sum over modules of H(dW) to the task loss
(`adapter.entropy_weight` = lambda): lambda > 0 concentrates each update on fewer directions,
lambda < 0 spreads it. A module whose update is still zero (B starts at zero) has no spectrum
and contributes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

EPS = 1e-12


def lora_updates(model: nn.Module) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, float]]:
    """(module name, A, B, scaling) of every active LoRA adapter in `model` (linear layers)."""
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        lora_b = getattr(module, "lora_B", None)
        if not isinstance(lora_a, nn.ModuleDict) or not isinstance(lora_b, nn.ModuleDict):
            continue
        for adapter in lora_a:
            a, b = lora_a[adapter].weight, lora_b[adapter].weight
            if a.dim() != 2 or b.dim() != 2:
                continue  # convolutional LoRA: not tracked
            yield name, a, b, float(module.scaling[adapter])


def update_singular_values(a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """Nonzero-spectrum singular values of scaling * B @ A from the rank-r factors only."""
    _, r_b = torch.linalg.qr(b.float())
    _, r_a = torch.linalg.qr(a.float().T)
    return torch.linalg.svdvals(scaling * r_b @ r_a.T)


def spectrum_entropy(sigma: torch.Tensor) -> torch.Tensor:
    total = sigma.sum()
    if total <= EPS:
        return sigma.new_zeros(())
    p = sigma / total
    return -(p * torch.log(p + EPS)).sum()


def entropy_penalty(model: nn.Module) -> torch.Tensor | None:
    """sum over LoRA modules of H(dW), differentiable; None when the model has no LoRA."""
    terms = [
        spectrum_entropy(update_singular_values(a, b, s)) for _, a, b, s in lora_updates(model)
    ]
    return torch.stack(terms).sum() if terms else None


@torch.no_grad()
def update_stats(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per module: entropy and effective rank exp(H) of its update, and the update's Frobenius
    norm (the root of the summed squared singular values), for tracking over training."""
    out = {}
    for name, a, b, s in lora_updates(model):
        sigma = update_singular_values(a, b, s)
        entropy = float(spectrum_entropy(sigma))
        out[name.removeprefix("base_model.model.")] = {
            "entropy": entropy,
            "effective_rank": float(torch.exp(torch.tensor(entropy))),
            "norm": float(sigma.pow(2).sum().sqrt()),
        }
    return out
