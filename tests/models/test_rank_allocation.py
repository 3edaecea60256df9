"""Entropy-aware rank allocation: planted activations get the ranks they should, the budget is
met exactly, the pattern loads in plain PEFT with the same parameter count, and bad settings
fail naming the setting or the module."""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from audiolora.models.rank_allocation import (
    RankAllocationError,
    allocate_ranks,
    measure_entropies,
    rank_patterns,
    spectral_entropy,
)


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rich = nn.Linear(16, 16)
        self.poor = nn.Linear(16, 16)
        self.unused = nn.Linear(16, 16)

    def forward(self, rich: torch.Tensor, poor: torch.Tensor) -> torch.Tensor:
        return self.rich(rich) + self.poor(poor)


def planted_batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(16, generator=g)
    return [
        (torch.randn(64, 16, generator=g), torch.randn(64, 1, generator=g) * direction)
        for _ in range(n)
    ]


def forward(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return model(*batch)


def test_spectral_entropy_of_white_noise_and_of_one_direction() -> None:
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4096, 8, generator=g)
    assert spectral_entropy(noise) == pytest.approx(math.log(8), abs=0.01)
    line = torch.randn(100, 1, generator=g) * torch.randn(8, generator=g)
    assert spectral_entropy(line) == pytest.approx(0.0, abs=1e-6)


def test_richer_input_gets_more_rank_within_the_exact_budget() -> None:
    model = TwoInputs()
    stats = measure_entropies(model, ["rich", "poor"], planted_batches(), forward)
    by_name = {s.name: s for s in stats}
    assert by_name["rich"].effective_rank > 10 and by_name["poor"].effective_rank < 1.5
    ranks = allocate_ranks(stats, r=4, r_min=1, r_max=8)
    assert ranks["rich"] > 4 > ranks["poor"] >= 1
    budget = 4 * 32 * 2
    assert sum(k * 32 for k in ranks.values()) == budget

    rank_pattern, alpha_pattern = rank_patterns(ranks, r=4, alpha=8)
    peft = get_peft_model(
        model,
        LoraConfig(r=4, lora_alpha=8, target_modules=["rich", "poor"],
                   rank_pattern=rank_pattern, alpha_pattern=alpha_pattern),
    )  # fmt: skip
    trainable, _ = peft.get_nb_trainable_parameters()
    assert trainable == budget
    layer = peft.base_model.model.rich
    assert layer.r["default"] == ranks["rich"]
    assert layer.scaling["default"] == pytest.approx(8 / 4)  # alpha / r kept per module


def test_bad_settings_name_what_to_change() -> None:
    model = TwoInputs()
    stats = measure_entropies(model, ["rich", "poor"], planted_batches(1), forward)
    with pytest.raises(RankAllocationError, match="rank_min"):
        allocate_ranks(stats, r=4, r_min=5, r_max=8)
    with pytest.raises(RankAllocationError, match="unused"):
        measure_entropies(model, ["rich", "unused"], planted_batches(1), forward)
