"""The LoRA-update entropy from rank-r factors equals the one from the full update's SVD, value
and gradient, and matches a hand-computed spectrum."""

from __future__ import annotations

import math

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from audiolora.models.lora_entropy import (
    entropy_penalty,
    spectrum_entropy,
    update_singular_values,
    update_stats,
)


def test_entropy_of_a_hand_made_update() -> None:
    # B A = diag(3, 1) embedded in 4 x 5: singular values 3 and 1, p = (0.75, 0.25).
    b = torch.zeros(4, 2)
    b[0, 0], b[1, 1] = 3.0, 1.0
    a = torch.zeros(2, 5)
    a[0, 0], a[1, 1] = 1.0, 1.0
    sigma = update_singular_values(a, b, scaling=1.0)
    assert torch.allclose(sigma, torch.tensor([3.0, 1.0]))
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert math.isclose(float(spectrum_entropy(sigma)), expected, rel_tol=1e-6)


def test_cheap_entropy_and_gradient_match_the_full_svd() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 30, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(20, 4, generator=g, dtype=torch.float64, requires_grad=True)

    cheap = spectrum_entropy(update_singular_values(a, b, 0.5).double())
    grad_cheap = torch.autograd.grad(cheap, (a, b))
    full = spectrum_entropy(torch.linalg.svdvals(0.5 * b @ a)[:4])
    grad_full = torch.autograd.grad(full, (a, b))
    assert torch.allclose(cheap, full, atol=1e-5)
    for x, y in zip(grad_cheap, grad_full, strict=True):
        assert torch.allclose(x.double(), y, atol=1e-4)


def test_penalty_and_stats_on_a_peft_model() -> None:
    model = get_peft_model(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)),
                           LoraConfig(r=4, target_modules=["0", "1"]))  # fmt: skip
    # Fresh LoRA (B = 0) has no spectrum: no penalty, zero norms.
    assert float(entropy_penalty(model)) == 0.0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    penalty = entropy_penalty(model)
    assert 0 < float(penalty) <= 2 * math.log(4) + 1e-6
    penalty.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)
    stats = update_stats(model)
    assert len(stats) == 2 and all(s["norm"] > 0 and 1 <= s["effective_rank"] <= 4
                                   for s in stats.values())  # fmt: skip
