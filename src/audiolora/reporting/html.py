"""RUN/report.html: one self-contained page (plots inlined as PNG) that a person reads instead
of metrics.json: the before/after table, training curves, efficiency figures and examples."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from audiolora.atomic import atomic_write_text  # noqa: E402
from audiolora.tasks.base import Task  # noqa: E402


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(h["step"], h[key]) for h in history if key in h and "step" in h]
    return [p[0] for p in points], [p[1] for p in points]


def training_curves(history: list[dict[str, Any]], task: Task) -> str | None:
    panels = [("loss", "training loss"), ("learning_rate", "learning rate")]
    panels += [(f"eval_{m.key}", f"held-out {m.label}") for m in task.metrics if m.curve]
    present = [(k, t) for k, t in panels if _series(history, k)[0]]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], present, strict=True):
        xs, ys = _series(history, key)
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def before_after_rows(
    task: Task, base: dict[str, Any] | None, final: dict[str, Any] | None
) -> list[list[str]]:
    """One row per headline metric: label, reference, adapted, and which way it moved."""
    rows = []
    for key in task.headline:
        metric = task.metric(key)
        b = (base or {}).get(key)
        f = (final or {}).get(key)
        if b is None and f is None:
            continue
        change = ""
        if isinstance(b, int | float) and isinstance(f, int | float):
            improved = f > b if metric.higher_is_better else f < b
            change = (
                "better" if improved else "worse" if f != b else "same"
            ) + f" ({metric.better} is better)"
        rows.append([metric.label, metric.format(b), metric.format(f), change])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def energy(eff: dict[str, Any]) -> str:
    if eff.get("energy_joules") is None:
        return "unavailable (no RAPL or NVML energy counter on this machine)"
    return f"{eff['energy_joules']:.0f} J ({eff.get('energy_source')})"


def flop_rate(eff: dict[str, Any]) -> str:
    if eff.get("model_flops_per_s") is None:
        return "unavailable (no step was counted)"
    if eff.get("mfu") is None:
        return f"{eff['model_flops_per_s'] / 1e9:.1f} GFLOP/s (matmul peak not measured: no MFU)"
    return (
        f"{eff['model_flops_per_s'] / 1e9:.1f} GFLOP/s, {eff['mfu']:.1%} of the measured "
        f"{eff.get('precision')} matmul peak ({eff['matmul_peak_flops_per_s'] / 1e9:.0f} GFLOP/s, "
        f"{eff.get('matmul_peak_machine')})"
    )


def efficiency_rows(eff: dict[str, Any]) -> list[list[str]]:
    def num(v: Any, spec: str) -> str:
        return "unavailable" if v is None else spec.format(v)

    return [
        ["Training throughput", num(eff.get("samples_per_second"), "{:.2f} samples/s")],
        ["Step latency", num(eff.get("step_latency_s"), "{:.3f} s")],
        ["Model FLOP/s (MFU)", flop_rate(eff)],
        ["Peak memory", num(eff.get("peak_memory_mb"), "{:.0f} MB") + f" ({eff.get('device')})"],
        [
            "Trainable parameters",
            f"{eff.get('trainable_params', 0):,} of {eff.get('total_params', 0):,}"
            f" ({eff.get('trainable_ratio', 0):.2%})",
        ],
        ["Adapter size", num(eff.get("adapter_mb"), "{:.2f} MB")],
        ["Compression ratio (params)", num(eff.get("compression_ratio_params"), "{:.1f}×")],
        ["Compression ratio (size)", num(eff.get("compression_ratio_size"), "{:.1f}×")],
        ["Energy", energy(eff)],
        ["Optimizer steps", str(eff.get("optimizer_steps"))],
        ["Wall time", num(eff.get("wall_seconds"), "{:.0f} s")],
        ["Base quantization", str(eff.get("quantization"))],
    ]


def example_rows(metrics: dict[str, Any], task: Task) -> list[list[str]]:
    """Held-out examples, base and adapted answers side by side (same eval set, same order)."""
    examples = metrics.get("examples", [])
    base = metrics.get("base_examples", [])
    base_answers = [e["hypothesis"] for e in base] if len(base) == len(examples) else []
    rows = []
    for i, e in enumerate(examples):
        clip = task.example_label(e)
        rows.append(
            [clip, e["reference"], base_answers[i] if base_answers else "—", e["hypothesis"]]
        )
    return rows


def per_type_rows(metrics: dict[str, Any], task: Task) -> list[list[str]]:
    """The task's per-category figures (the seed's per-phase MAE), reference vs adapted."""
    breakdown = task.breakdown
    if breakdown is None:
        return []
    base = metrics.get("base_details") or {}
    final = metrics.get("final_details") or {}
    main, extra = task.metric(breakdown.metric), task.metric(breakdown.extra or "")
    names = sorted({k.split("/")[0] for k in final if k.endswith(f"/{breakdown.metric}")})
    return [
        [
            name,
            main.format(base.get(f"{name}/{breakdown.metric}")),
            main.format(final.get(f"{name}/{breakdown.metric}")),
            *([extra.format(final.get(f"{name}/{breakdown.extra}"))] if breakdown.extra else []),
            str(final.get(f"{name}/{breakdown.count}", "")),
        ]
        for name in names
    ]


def per_type_chart(metrics: dict[str, Any], task: Task, reference: str) -> str | None:
    breakdown = task.breakdown
    rows = per_type_rows(metrics, task)
    if breakdown is None or not rows:
        return None
    key = breakdown.metric
    base = metrics.get("base_details") or {}
    final = metrics.get("final_details") or {}
    names = [r[0] for r in rows]
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names)), 3.2))
    ax.bar([x - 0.2 for x in xs], [base.get(f"{n}/{key}", 0) for n in names], 0.4, label=reference)
    ax.bar([x + 0.2 for x in xs], [final[f"{n}/{key}"] for n in names], 0.4, label="adapted")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel(task.metric(key).label)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.3em .7em;
text-align:left}th{background:#f3f3f3}img{max-width:100%}pre{background:#f7f7f7;padding:1em;
overflow:auto}h1{margin-bottom:.2em}.sub{color:#666}
"""


RUN_FIGURES = (
    ("rank_allocation.png", "Entropy-aware rank allocation"),
    ("adapter_tracking.png", "LoRA updates over training"),
)
"""Pictures a run may leave beside the report, shown in it when present."""


def render_report(
    metrics: dict[str, Any], config: Any, task: Task, figures: dict[str, str] | None = None
) -> str:
    """The report page; `figures` maps a heading to a base64 PNG shown after the curves."""
    reference = metrics.get("base_reference", "base model")
    parts = [
        f"<h1>audiolora run: {html.escape(config.output_dir)}</h1>",
        f"<p class=sub>{html.escape(metrics.get('task', ''))} · model "
        f"{html.escape(str(metrics.get('model')))} · adapter {config.adapter.method} "
        f"r={config.adapter.r} · data {html.escape(str(metrics.get('data')))}</p>",
        f"<h2>Held-out split: {html.escape(reference)} vs adapted</h2>",
        _table(
            ["metric", reference, "adapted", "change"],
            before_after_rows(task, metrics.get("base"), metrics.get("final")),
        ),
    ]
    note = task.reference_note(metrics.get("base_details") or {})
    if note:
        parts.append(f"<p>{html.escape(note)}</p>")
    for name, scores in (metrics.get("retention") or {}).items():
        parts += [
            f"<h2>Retention: {html.escape(name)} (outside the training domain)</h2>",
            _table(
                ["metric", "base model", "adapted", "change"],
                before_after_rows(task, scores.get("base"), scores.get("final")),
            ),
        ]
    per_type = per_type_rows(metrics, task)
    if per_type and task.breakdown is not None:
        b = task.breakdown
        chart = per_type_chart(metrics, task, reference)
        label = task.metric(b.metric).label
        header = [b.column, f"{label} {reference}", f"{label} adapted"]
        header += [f"{task.metric(b.extra).label} adapted"] if b.extra else []
        parts += [
            f"<h2>{html.escape(b.title)}</h2>",
            _table([*header, "count"], per_type),
            f'<img alt="{html.escape(b.title)}" src="data:image/png;base64,{chart}">',
        ]
    curves = training_curves(metrics.get("history", []), task)
    if curves:
        parts += [
            "<h2>Training curves</h2>",
            f'<img alt="training curves" src="data:image/png;base64,{curves}">',
        ]
    for title, png in (figures or {}).items():
        parts += [
            f"<h2>{html.escape(title)}</h2>",
            f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}">',
        ]
    parts += [
        "<h2>Efficiency</h2>",
        _table(["figure", "value"], efficiency_rows(metrics.get("efficiency", {}))),
    ]
    examples = example_rows(metrics, task)
    if examples:
        parts += [
            "<h2>Examples (held-out)</h2>",
            _table(["clip", "reference", reference, "adapted model"], examples),
        ]
    config_yaml = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    parts += ["<h2>Configuration</h2>", f"<pre>{html.escape(config_yaml)}</pre>"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>audiolora report</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_report(run_dir: Path, metrics: dict[str, Any], config: Any, task: Task) -> Path:
    path = Path(run_dir) / "report.html"
    figures = {
        title: base64.b64encode((Path(run_dir) / name).read_bytes()).decode()
        for name, title in RUN_FIGURES
        if (Path(run_dir) / name).is_file()
    }
    atomic_write_text(path, render_report(metrics, config, task, figures))
    return path
