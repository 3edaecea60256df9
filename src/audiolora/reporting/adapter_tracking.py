"""RUN/adapter_tracking.png: how the LoRA updates grew and how many directions they use.

Left: the effective rank exp(H) of the updates over training, averaged per module type (q_proj,
fc1, ...), against the rank they were given; right: the final update norm per layer and module
type. Together they show whether the rank a module got was used, and where training put its
weight.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LAYER = re.compile(r"(?:layers?|blocks?)\.(\d+)\.")


def module_type(name: str) -> str:
    stack = "enc" if "encoder" in name else "dec" if "decoder" in name else ""
    last = name.rsplit(".", 1)[-1]
    return f"{stack}.{last}" if stack else last


def plot_adapter_tracking(history: list[dict[str, Any]], path: Path) -> None:
    if not history:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for entry in history:
        groups: dict[str, list[float]] = defaultdict(list)
        for name, stats in entry["modules"].items():
            groups[module_type(name)].append(stats["effective_rank"])
        for group, values in groups.items():
            curves[group].append((entry["step"], sum(values) / len(values)))
    for group, points in sorted(curves.items()):
        left.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=group)
    left.set_xlabel("optimizer step")
    left.set_ylabel("effective rank of the update, exp(H)")
    left.set_title("update entropy over training", fontsize=9)
    left.legend(fontsize=7)
    norms: dict[str, dict[int, float]] = defaultdict(dict)
    for name, stats in history[-1]["modules"].items():
        found = LAYER.search(name)
        norms[module_type(name)][int(found.group(1)) if found else 0] = stats["norm"]
    for group, by_layer in sorted(norms.items()):
        layers = sorted(by_layer)
        right.plot(layers, [by_layer[i] for i in layers], marker="o", label=group)
    right.set_xlabel("layer")
    right.set_ylabel("‖ΔW‖ (Frobenius)")
    right.set_title(f"update norm per layer at step {history[-1]['step']}", fontsize=9)
    right.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)
