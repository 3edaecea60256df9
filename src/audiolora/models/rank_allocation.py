"""Entropy-aware LoRA rank allocation (seed 001 §4.2): more rank where the input is richer.

Estimator. For every module LoRA would adapt, the inputs it receives on a few calibration
batches are gathered (rows: token or frame positions, at most `MAX_ROWS`, padding included as
the model sees it), centred, and their singular values s_i taken. With p_i = s_i^2 / sum_j s_j^2
(the share of variance along each principal direction), the module's entropy is
H = -sum_i p_i log p_i and its effective rank exp(H) (Roy & Vetterli, 2007): about 1 for inputs
that live on one direction, d_in for white noise.

Allocation. The budget is what uniform LoRA at rank r trains: B = sum_m r (d_in_m + d_out_m).
Ranks are proportional to effective rank, r_m = c exp(H_m), clipped to [r_min, r_max], with c
chosen so the budget is spent; integer ranks are then filled greedily (largest remainder first)
without ever exceeding B, so B is met exactly when the module sizes allow it. The result is a
plain PEFT `rank_pattern` (and an `alpha_pattern` keeping each module's alpha / r at the
recipe's), so the adapter loads in plain PEFT.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from peft.tuners.tuners_utils import check_target_module_exists
from torch import nn

MAX_ROWS = 4096
"""Rows of activations kept per module (sampled evenly), enough for a stable spectrum."""


class RankAllocationError(ValueError):
    """The allocation cannot run as configured; the message names the module or setting."""


@dataclass(frozen=True)
class ModuleStat:
    name: str
    d_in: int
    d_out: int
    entropy: float

    @property
    def effective_rank(self) -> float:
        return math.exp(self.entropy)

    @property
    def cost(self) -> int:
        """Trainable parameters per unit of rank (A is r x d_in, B is d_out x r)."""
        return self.d_in + self.d_out


def spectral_entropy(x: torch.Tensor) -> float:
    """Entropy of the normalised variance spectrum of rows `x` (n, d)."""
    x = x.double()
    x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x)
    power = s**2
    total = power.sum()
    if total <= 0:
        return 0.0
    p = power / total
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def module_dims(module: nn.Module) -> tuple[int, int]:
    """(d_in, d_out) of a linear or convolutional layer (PEFT's LoRA on a conv uses channels)."""
    if hasattr(module, "in_features"):
        return int(module.in_features), int(module.out_features)
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        kernel = math.prod(module.kernel_size)
        return module.in_channels * kernel, module.out_channels
    raise RankAllocationError(f"{type(module).__name__}: cannot size a LoRA adapter for it")


def target_modules(model: nn.Module, peft_config: Any) -> list[str]:
    """The module names PEFT would adapt under `peft_config` (PEFT's own matching)."""
    names = []
    for name, module in model.named_modules():
        if not name or not (hasattr(module, "in_features") or isinstance(module, nn.Conv2d)):
            continue
        if check_target_module_exists(peft_config, name):
            names.append(name)
    return names


def measure_entropies(
    model: nn.Module,
    names: list[str],
    batches: Iterable[Any],
    forward: Callable[[nn.Module, Any], Any],
) -> list[ModuleStat]:
    """Run `forward(model, batch)` on each batch with input hooks on `names`; one stat each."""
    modules = dict(model.named_modules())
    rows: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = []

    def keep(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach()
            if isinstance(module, nn.Conv2d):
                x = nn.functional.unfold(x.float(), module.kernel_size, padding=module.padding,
                                         stride=module.stride).transpose(1, 2)  # fmt: skip
            rows[name].append(x.reshape(-1, x.shape[-1]).float().cpu())

        return hook

    for name in names:
        hooks.append(modules[name].register_forward_pre_hook(keep(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                forward(model, batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    stats = []
    for name in names:
        if not rows[name]:
            raise RankAllocationError(
                f"module {name} received no input in the calibration batches (is it used by "
                "this task's forward?); leave it out with adapter.target_modules / layers"
            )
        x = torch.cat(rows[name])
        if len(x) > MAX_ROWS:
            x = x[torch.linspace(0, len(x) - 1, MAX_ROWS).long()]
        d_in, d_out = module_dims(modules[name])
        stats.append(ModuleStat(name, d_in, d_out, spectral_entropy(x)))
    return stats


def allocate_ranks(stats: list[ModuleStat], r: int, r_min: int, r_max: int) -> dict[str, int]:
    """Integer ranks proportional to effective rank within [r_min, r_max], spending at most the
    uniform budget sum r (d_in + d_out), and as much of it as integer ranks allow."""
    if not stats:
        raise RankAllocationError("no module to allocate ranks to")
    if r_min > r:
        raise RankAllocationError(
            f"adapter.rank_min={r_min} is above adapter.r={r}: the minimum ranks alone would "
            "exceed the budget of uniform rank r; lower adapter.rank_min"
        )
    if r_max < r:
        raise RankAllocationError(f"adapter.rank_max={r_max} is below adapter.r={r}: raise it")
    budget = sum(r * s.cost for s in stats)

    def spend(c: float) -> list[float]:
        return [min(max(c * s.effective_rank, r_min), r_max) for s in stats]

    lo, hi = 0.0, 1.0
    while sum(x * s.cost for x, s in zip(spend(hi), stats, strict=True)) < budget and hi < 1e9:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if sum(x * s.cost for x, s in zip(spend(mid), stats, strict=True)) <= budget:
            lo = mid
        else:
            hi = mid
    real = spend(lo)
    ranks = [max(r_min, math.floor(x)) for x in real]
    left = budget - sum(k * s.cost for k, s in zip(ranks, stats, strict=True))
    order = sorted(range(len(stats)), key=lambda i: (real[i] - ranks[i], stats[i].entropy),
                   reverse=True)  # fmt: skip
    progress = True
    while progress:
        progress = False
        for i in order:
            if ranks[i] < r_max and stats[i].cost <= left:
                ranks[i] += 1
                left -= stats[i].cost
                progress = True
    return {s.name: k for s, k in zip(stats, ranks, strict=True)}


def rank_patterns(
    ranks: dict[str, int], r: int, alpha: float
) -> tuple[dict[str, int], dict[str, float]]:
    """PEFT `rank_pattern` / `alpha_pattern` keyed by escaped full module names (PEFT matches a
    key against the end of a module name at a dot), alpha scaled with the rank so every module
    keeps the recipe's alpha / r."""
    rank_pattern = {re.escape(n): k for n, k in ranks.items()}
    alpha_pattern = {re.escape(n): alpha * k / r for n, k in ranks.items()}
    return rank_pattern, alpha_pattern
