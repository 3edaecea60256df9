"""`audiolora compare RUN_OR_SWEEP... --output DIR`: one page comparing finished runs and sweeps.

Why: an ablation (uniform vs entropy ranks, LoRA vs full fine-tuning, none vs nf4) is several
runs or sweep points, and the question is always the same table: what each reached on the
task's headline metrics, at what cost (trainable parameters, adapter size, speed, memory, wall
time), with mean ± std over seeds. A run folder counts as one entry; a sweep folder gives one
entry per grid point, its seeds pooled. Writes compare.md, compare.html and compare.png.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from audiolora.atomic import atomic_write_text  # noqa: E402
from audiolora.tasks.registry import get_task  # noqa: E402

COST = (
    ("trainable_params", "trainable params", "{:,.0f}"),
    ("trainable_ratio", "trainable %", "{:.2%}"),
    ("adapter_mb", "adapter MB", "{:.2f}"),
    ("samples_per_second", "samples/s", "{:.2f}"),
    ("mfu", "MFU", "{:.1%}"),
    ("peak_memory_mb", "peak memory MB", "{:.0f}"),
    ("wall_seconds", "wall s", "{:.0f}"),
)


class CompareError(ValueError):
    """The folders cannot be compared; the message names the folder."""


@dataclass
class Entry:
    name: str
    runs: list[dict[str, Any]]


def collect(paths: list[Path]) -> tuple[str, list[Entry]]:
    """The task and one entry per run folder or sweep grid point."""
    entries: list[Entry] = []
    for path in paths:
        if (path / "metrics.json").is_file():
            entries.append(Entry(path.name, [json.loads((path / "metrics.json").read_text())]))
        elif (path / "sweep.json").is_file():
            sweep = json.loads((path / "sweep.json").read_text())
            for point in sweep["points"]:
                runs = [
                    json.loads(f.read_text())
                    for f in sorted((path / point["name"]).glob("seed-*/metrics.json"))
                ]
                if runs:
                    entries.append(Entry(f"{path.name}: {point['name']}", runs))
        else:
            raise CompareError(f"{path}: neither a finished run (metrics.json) nor a sweep")
    if not entries:
        raise CompareError("no finished run to compare")
    tasks = {e.name: r["task"] for e in entries for r in e.runs}
    first = next(iter(tasks.values()))
    other = [n for n, t in tasks.items() if t != first]
    if other:
        raise CompareError(f"{other[0]} is a {tasks[other[0]]} run; the others are {first} runs")
    return first, entries


def stats(values: list[float]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def figure(run: dict[str, Any], key: str) -> float | None:
    final = run.get("final") or {}
    if key in final:
        return final[key]
    return (run.get("efficiency") or {}).get(key)


def table(task_name: str, entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    task = get_task(task_name)
    metrics = [task.metric(k) for k in task.headline if not k.startswith("latency")]
    header = ["entry", "seeds"]
    header += [f"{m.label} ({'↑' if m.higher_is_better else '↓'})" for m in metrics]
    header += [label for _, label, _ in COST]
    rows = []
    for e in entries:
        row = [e.name, str(len(e.runs))]
        for m in metrics:
            s = stats([figure(r, m.key) for r in e.runs])
            row.append("—" if s is None else _pm(m.fmt, *s, len(e.runs)))
        for key, _, fmt in COST:
            s = stats([figure(r, key) for r in e.runs])
            row.append("—" if s is None else _pm(fmt, *s, len(e.runs)))
        rows.append(row)
    return header, rows


def _pm(fmt: str, mean: float, std: float, n: int) -> str:
    return fmt.format(mean) if n == 1 else f"{fmt.format(mean)} ± {fmt.format(std)}"


def write_compare(paths: list[Path], out: Path) -> Path:
    task_name, entries = collect(paths)
    header, rows = table(task_name, entries)
    out.mkdir(parents=True, exist_ok=True)
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    atomic_write_text(out / "compare.md", "\n".join(md) + "\n")
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    atomic_write_text(
        out / "compare.html",
        "<!doctype html><meta charset='utf-8'><title>audiolora compare</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child{text-align:left}</style>"
        f"<h1>{html.escape(task_name)}: {len(entries)} entries</h1>"
        f"<table><tr>{head}</tr>{cells}</table><p><img src='compare.png' width='900'></p>",
    )
    plot_compare(task_name, entries, out / "compare.png")
    return out


def plot_compare(task_name: str, entries: list[Entry], path: Path) -> None:
    """The first headline metric and training speed per entry, mean with std as error bars."""
    task = get_task(task_name)
    metric = task.metric(task.headline[0])
    panels = ((metric.key, metric.label), ("samples_per_second", "training samples/s"))
    names = [e.name for e in entries]
    width = 8 + 0.08 * max(len(n) for n in names)  # the entry names label the shared y axis
    fig, axes = plt.subplots(
        1, 2, sharey=True, figsize=(width, 0.45 * len(entries) + 2), constrained_layout=True
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        values = [stats([figure(r, key) for r in e.runs]) or (math.nan, 0.0) for e in entries]
        ax.barh(names, [v[0] for v in values], xerr=[v[1] for v in values], color="#4c72b0")
        ax.set_xlabel(label)
    axes[0].invert_yaxis()  # shared: once puts the first entry on top in both panels
    fig.savefig(path, dpi=110)
    plt.close(fig)
