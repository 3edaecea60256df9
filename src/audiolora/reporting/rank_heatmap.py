"""RUN/rank_allocation.png: the ranks entropy-aware allocation gave, layer x module.

Why a picture: a table of a hundred module names hides the pattern a reader wants (do the upper
layers get more rank? the feed-forward inputs or the attention inputs?). Two panels: the rank
given, and the effective rank of the input it was measured from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LAYER = re.compile(r"^(?P<stack>.*?)\.?(?:layers?|blocks?)\.(?P<layer>\d+)\.(?P<module>.+)$")


def grid(modules: list[dict[str, Any]], key: str) -> tuple[list[str], list[str], np.ndarray]:
    """Rows `stack:layer`, columns the module path inside a layer, cells `key` (NaN: absent)."""
    cells: dict[tuple[str, str], float] = {}
    for m in modules:
        found = LAYER.match(m["name"])
        row, col = (
            (f"{found['stack']}:{int(found['layer']):02d}", found["module"])
            if found
            else ("other", m["name"])
        )
        cells[(row, col)] = float(m[key])
    rows = sorted({r for r, _ in cells})
    cols = sorted({c for _, c in cells})
    values = np.full((len(rows), len(cols)), np.nan)
    for (r, c), v in cells.items():
        values[rows.index(r), cols.index(c)] = v
    return rows, cols, values


def plot_rank_allocation(report: dict[str, Any], path: Path) -> None:
    modules = report["modules"]
    if not modules:
        return
    rows, cols, ranks = grid(modules, "rank")
    _, _, effective = grid(modules, "effective_rank")
    height = max(3.0, 0.22 * len(rows) + 1.5)
    width = max(6.0, 1.1 * len(cols) * 2 + 3)
    fig, axes = plt.subplots(1, 2, figsize=(width, height), constrained_layout=True)
    for ax, values, title in (
        (axes[0], ranks, f"LoRA rank (uniform r={report['r']})"),
        (axes[1], effective, "effective rank of the input"),
    ):
        image = ax.imshow(values, aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(
        f"entropy-aware allocation: {report['allocated']:,} of {report['budget']:,} parameters",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
