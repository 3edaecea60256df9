"""A grid of runs over recipe keys and seeds, summarised as one table (mean ± std) and a plot.

`audiolora sweep RECIPE --grid adapter.r=2,4,8 --grid data.max_eval_samples=16 --seeds 3` trains
every combination once per seed into `OUT/<point>/seed-<s>/` (ordinary run folders), then writes
`OUT/sweep.json`, `OUT/sweep.md` and `OUT/sweep.png`. A finished run is never trained again, so
an interrupted sweep is continued by running the same command.

Some comparisons are not products: "head only, or LoRA at rank 2, 4 or 8" has four arms, and a
rank means nothing to the head-only arm. `--variant` gives such an axis, one bundle of settings
per arm (`--variant temporal.head_only=true --variant adapter.r=2 ...`), crossed with the
`--grid` axes like any other axis.

Arms that differ only in how they train (adapter placement, an auxiliary loss) have the same
reference: the untouched base model on the same held-out data, decoded the same way. The first
run measures it; the runs after it that share its `base_key` start from a copy of that
measurement instead of decoding the same clips with the same model again. A run killed
half-way is resumed from its last complete checkpoint.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from audiolora.atomic import atomic_copy, atomic_write_json, atomic_write_text  # noqa: E402
from audiolora.config import ConfigError, load_config  # noqa: E402
from audiolora.evaluation.metrics import summarize_over_seeds  # noqa: E402
from audiolora.evaluation.retention import retention_figures  # noqa: E402
from audiolora.tasks.registry import get_task  # noqa: E402
from audiolora.training.run import BASE_METRICS, BASE_RETENTION, run_training  # noqa: E402

BASE_FILES = (BASE_METRICS, BASE_RETENTION)


def base_key(config: Any) -> str:
    """A digest of everything the base measurement depends on: the model, the data, the task's
    own section, the seed (tasks may draw held-out items with it) and the decoding settings;
    not the adapter or the optimisation, which the base model never sees."""
    t = config.training
    task = getattr(config, config.task, None)
    relevant = {
        "task": config.task,
        "model": config.model.model_dump(mode="json"),
        "data": config.data.model_dump(mode="json"),
        "section": task.model_dump(mode="json") if task is not None else None,
        "decoding": [t.seed, t.eval_batch_size, t.num_beams, t.max_new_tokens, t.precision],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class GridPoint:
    settings: tuple[tuple[str, str], ...]
    """(key, value as typed on the command line); values are parsed like `--set` values."""

    @property
    def name(self) -> str:
        """Folder-safe label such as `adapter.r=4,training.learning_rate=0.001`."""
        if not self.settings:
            return "base"
        return ",".join(f"{k}={v}" for k, v in self.settings).replace("/", "_")

    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.settings]


def parse_grid(axes: list[str], variants: list[str] | None = None) -> list[GridPoint]:
    """`key=v1,v2` axes (and one axis of `variants`) -> their cartesian product of grid points.

    A variant is one arm's settings separated by spaces: `"adapter.r=4 adapter.alpha=8"`.
    """
    arms: list[list[tuple[tuple[str, str], ...]]] = []
    for axis in axes:
        if "=" not in axis:
            raise ConfigError(f"--grid '{axis}' must look like key.path=v1,v2")
        key, raw = axis.split("=", 1)
        options = [v.strip() for v in raw.split(",") if v.strip()]
        if not options:
            raise ConfigError(f"--grid '{axis}' lists no values")
        arms.append([((key.strip(), v),) for v in options])
    if variants:
        arms.append([parse_variant(v) for v in variants])
    if not arms:
        raise ConfigError("a sweep needs at least one --grid axis or --variant")
    points = [GridPoint(sum(combo, ())) for combo in itertools.product(*arms)]
    for point in points:
        keys = [k for k, _ in point.settings]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"grid point {point.name!r} sets a key twice")
    return points


def parse_variant(variant: str) -> tuple[tuple[str, str], ...]:
    settings = []
    for item in variant.split():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(
                f"--variant '{variant}': '{item}' must look like key.path=value "
                "(several settings are separated by spaces)"
            )
        settings.append((key, value))
    if not settings:
        raise ConfigError("--variant '' sets nothing")
    return tuple(settings)


def run_sweep(
    recipe: Path | None,
    grid: list[str],
    seeds: int,
    out_dir: Path,
    overrides: list[str] | None = None,
    train: Callable[..., dict[str, Any]] = run_training,
    relative_to: str | None = None,
    variants: list[str] | None = None,
) -> dict[str, Any]:
    """Train every grid point once per seed (skipping finished runs) and summarise.

    `relative_to` names a grid point (`slu.scheme=mixing,slu.speech_fraction=1.0`, the oracle)
    that every point's first metric is also given as a share of (mean over mean).
    """
    points = parse_grid(grid, variants)
    if relative_to is not None and relative_to not in {p.name for p in points}:
        names = ", ".join(p.name for p in points)
        raise ConfigError(f"--relative-to {relative_to!r} is not a grid point; points: {names}")
    base = load_config(recipe, overrides)
    # Validate every combination before the first run starts.
    # Seed-major order: an interrupted sweep has already run every point once.
    configs = {
        (point, seed): load_config(
            recipe,
            [
                *(overrides or []),
                *point.overrides(),
                f"training.seed={base.training.seed + seed}",
                f"output_dir={out_dir / point.name / f'seed-{seed}'}",
            ],
        )
        for seed in range(seeds)
        for point in points
    }
    task = get_task(base.task)
    axes = [*grid, *(f"variant: {v}" for v in variants or [])]
    results: dict[str, list[dict[str, Any]]] = {p.name: [] for p in points}
    summary: dict[str, Any] = {}
    measured: dict[str, Path] = {}
    for (point, _), config in configs.items():
        run_dir = Path(config.output_dir)
        key = base_key(config)
        metrics_path = run_dir / "metrics.json"
        if metrics_path.exists():
            metrics = json.loads(metrics_path.read_text())
        else:
            source = measured.get(key)
            if source is not None:
                run_dir.mkdir(parents=True, exist_ok=True)
                for name in BASE_FILES:
                    if (source / name).exists() and not (run_dir / name).exists():
                        atomic_copy(source / name, run_dir / name)  # the run trusts it
            # A run folder that exists holds a base measurement or checkpoints to continue.
            metrics = train(config, resume=True) if run_dir.exists() else train(config)
            gc.collect()
        if all((run_dir / name).exists() for name in BASE_FILES):
            measured.setdefault(key, run_dir)
        results[point.name].append(sweep_figures(metrics, task))
        # Rewritten after every run, so a long sweep shows its table as it goes.
        summary = summarize_sweep(recipe, task, axes, seeds, points, results, relative_to)
        write_sweep(summary, out_dir)
    return summary


def summarize_sweep(
    recipe: Path | None,
    task: Any,
    grid: list[str],
    seeds: int,
    points: list[GridPoint],
    results: dict[str, list[dict[str, Any]]],
    relative_to: str | None,
) -> dict[str, Any]:
    return {
        "recipe": str(recipe),
        "task": task.name,
        "columns": [k for k in task.headline if not k.startswith("latency")],
        "percent": sorted(
            {k for k in task.headline if task.metric(k).percent}
            | {f"{k} before training" for k in task.headline if task.metric(k).percent}
        ),
        "relative_to": relative_to,
        "grid": grid,
        "seeds": seeds,
        "points": [
            {
                "name": p.name,
                "settings": dict(p.settings),
                "runs": results[p.name],
                "summary": summarize_over_seeds(results[p.name]) if results[p.name] else {},
            }
            for p in points
        ],
    }


def write_sweep(summary: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "sweep.json", summary)
    atomic_write_text(out_dir / "sweep.md", sweep_markdown(summary))
    plot_sweep(summary, out_dir / "sweep.png", metric=summary["columns"][0])


def sweep_figures(metrics: dict[str, Any], task: Any) -> dict[str, float]:
    """A run's headline numbers plus the task's per-category figures (the seed's per-phase
    MAE columns)."""
    headline = task.headline
    final = metrics.get("final") or {}
    figures = {k: final[k] for k in headline if k in final}
    details = metrics.get("final_details") or {}
    if task.breakdown is not None:
        suffix = f"/{task.breakdown.metric}"
        figures.update({k: v for k, v in details.items() if k.endswith(suffix)})
    base = metrics.get("base") or {}
    if headline and headline[0] in base:  # what the run started from (base model, or prior)
        figures[f"{headline[0]} before training"] = base[headline[0]]
    figures.update(retention_figures(metrics, headline))
    wall = (metrics.get("efficiency") or {}).get("wall_seconds")
    if wall is not None:
        figures["wall_s"] = wall
    return figures


def mean_std(cell: dict[str, float] | None, percent: bool, runs: int = 2) -> str:
    """`mean ± std`; one run has no spread to show, so just its value."""
    if cell is None:
        return "—"
    scale = 100 if percent else 1
    if runs == 1:
        return f"{cell['mean'] * scale:.2f}"
    return f"{cell['mean'] * scale:.2f} ± {cell['std'] * scale:.2f}"


def sweep_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    keys = list(summary.get("columns", ("wer", "cer", "bleu", "perplexity")))
    before = f"{keys[0]} before training"
    if any(before in p["summary"] for p in summary["points"]):
        keys.insert(1, before)
    keys += per_type_keys(summary["points"])
    keys += sorted({k for p in summary["points"] for k in p["summary"] if " on " in k})
    if any("wall_s" in p["summary"] for p in summary["points"]):
        keys.append("wall_s")
    percent = set(summary.get("percent", ()))
    percent |= {k for k in keys if k.split(" ")[0] in percent}
    header = ["grid point", "runs", *[f"{k} (%)" if k in percent else k for k in keys]]
    rows = [
        [
            p["name"],
            str(len(p["runs"])),
            *[mean_std(p["summary"].get(k), k in percent, len(p["runs"])) for k in keys],
        ]
        for p in summary["points"]
    ]
    reference = summary.get("relative_to")
    if reference:
        first = keys[0]
        means = {p["name"]: (p["summary"].get(first) or {}).get("mean") for p in summary["points"]}
        header.append(f"{first} / reference")
        for row, p in zip(rows, summary["points"], strict=True):
            ref, mine = means.get(reference), means[p["name"]]
            share = f"{mine / ref:.0%}" if ref and mine is not None else "—"
            row.append(share)
    return header, rows


def sweep_markdown(summary: dict[str, Any]) -> str:
    header, rows = sweep_rows(summary)
    lines = [
        f"Sweep of `{summary['recipe']}` over {summary['grid']}, {summary['seeds']} seed(s); "
        "held-out metrics after training, mean ± sample std over seeds.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_sweep(summary: dict[str, Any], path: Path, metric: str = "wer") -> None:
    """Bars of `metric` (mean ± std) per point, a marker at what each point started from (base
    model or prior) so the gain is visible, and, for tasks with per-type figures (the seed's
    per-phase MAE), a second panel with one group of bars per type."""
    points = summary["points"]
    names = [p["name"] for p in points]
    per_type = per_type_keys(points, metric)
    width = max(4.0, 1.2 * len(names))
    panels = 2 if per_type else 1
    fig, axes = plt.subplots(1, panels, figsize=(width * panels, 3.8), squeeze=False)
    ax = axes[0][0]
    xs = list(range(len(names)))
    means, stds = zip(*(cell_stats(p, metric) for p in points), strict=True)
    ax.bar(xs, means, yerr=stds, capsize=4, color="#4c72b0", label="after training")
    before = [cell_stats(p, f"{metric} before training")[0] for p in points]
    if not all(math.isnan(b) for b in before):
        ax.scatter(
            xs, before, marker="_", s=900, color="#c44e52", zorder=3, label="before training"
        )
        ax.legend(fontsize=8)
    ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"held-out {metric} (mean ± std)")
    ax.grid(axis="y", alpha=0.3)
    if per_type:
        ax = axes[0][1]
        bar = 0.8 / len(names)
        for i, point in enumerate(points):
            values, errors = zip(*(cell_stats(point, k) for k in per_type), strict=True)
            shift = (i - (len(names) - 1) / 2) * bar
            xs_type = [j + shift for j in range(len(per_type))]
            ax.bar(xs_type, values, bar, yerr=errors, capsize=2, label=point["name"])
        ax.set_xticks(range(len(per_type)), [k.split("/")[0] for k in per_type], fontsize=8)
        ax.set_ylabel(f"held-out {metric} per type")
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def per_type_keys(points: list[dict[str, Any]], metric: str = "") -> list[str]:
    """The points' per-type figures (`P1_start/mae_s`, ...; only `metric`'s when given), in
    reading order."""

    def wanted(key: str) -> bool:
        return key.endswith(f"/{metric}") if metric else "/" in key

    keys = {k for p in points for k in p["summary"] if wanted(k)}
    return sorted(keys, key=type_order)


def type_order(key: str) -> tuple[str, bool, str]:
    """Per-type columns in reading order: `P1_start` before `P1_end`, then `P2_...`."""
    name = key.split("/")[0]
    stem, _, edge = name.rpartition("_")
    return (stem or name, edge == "end", key)


def cell_stats(point: dict[str, Any], key: str) -> tuple[float, float]:
    """(mean, std) of one figure of a point; NaN where the point has no run with it yet."""
    cell = point["summary"].get(key) or {}
    return cell.get("mean", float("nan")), cell.get("std", 0.0)
