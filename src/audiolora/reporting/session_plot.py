"""RUN/sessions-M.png: what the head said in every coarse window of every session.

A table of found vs annotated times says how far off the search was; this picture says why: a
good head draws a clean step from 1 (the boundary is later) to 0 (it was earlier) across each
boundary, and the dashed lines show where that step should be.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MAX_SESSIONS = 8
"""Sessions drawn at most (the first ones); the JSON beside the plot has them all."""


def plot_sessions(result: dict[str, Any], path: Path, window_s: float) -> None:
    """One panel per session: said offset against window centre, one line per boundary, the
    annotated (dashed) and found (dotted) times as vertical lines in the same colour."""
    sessions = result["sessions"][:MAX_SESSIONS]
    if not sessions:
        return
    cols = min(2, len(sessions))
    rows = math.ceil(len(sessions) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 2.8 * rows), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, session in zip(axes.flat, sessions, strict=False):
        for i, (name, said) in enumerate(session["coarse_pass"].items()):
            colour = colours[i % len(colours)]
            centres = [start + window_s / 2 for start, _ in said]
            ax.plot(centres, [p for _, p in said], color=colour, lw=1.2, label=name)
            if session["annotated"].get(name) is not None:
                ax.axvline(session["annotated"][name], color=colour, ls="--", lw=0.9)
            if session["boundaries"][name] is not None:  # None: reported absent
                ax.axvline(session["boundaries"][name], color=colour, ls=":", lw=1.4)
        ax.set_title(Path(session["audio"]).name, fontsize=9)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("window centre (s)", fontsize=8)
        ax.set_ylabel("said offset", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(sessions) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, ncol=3, loc="lower left")
    fig.suptitle("coarse pass: dashed = annotated, dotted = found", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)
