"""Retention: what an adaptation cost outside its own domain (`data.retention`).

Why: an adapter that improves its own held-out split can still make the model worse on speech
it was not trained for (Whisper adapted to synthetic voices reads real voices worse). Every run
can therefore score extra held-out manifests before and after training, through the same task
code as its eval split, so the cost shows next to the gain in metrics.json, the report, the CLI
table and sweeps.

An entry may name another task before its manifest (`stt:builtin:speech-retention`): an audio
LM adapted for one task (paralinguistic answers) is then also scored on plain speech-to-text,
the general ability a narrow adaptation can cost. Such an entry is scored on the adapted
backbone, without the run's task head.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import ProcessorMixin

from audiolora.precision import compute_precision

if TYPE_CHECKING:
    from audiolora.config import RunConfig
    from audiolora.models.families import Family
    from audiolora.tasks.base import Task


def split_entry(entry: str, task: Task) -> tuple[Task, str]:
    """(the task that scores it, the manifest) of one `data.retention` entry."""
    from audiolora.tasks.registry import TASKS

    prefix, _, rest = entry.partition(":")
    if rest and prefix in TASKS:
        return TASKS[prefix], rest
    return task, entry


def scoring_config(config: RunConfig, manifest: str | Path, on_bad_input: str) -> RunConfig:
    """`config` reading `manifest` as its only split, every clip kept whatever its length (as
    `audiolora eval` scores); the task builds held-out examples from it as from an eval split."""
    data = config.data.model_copy(
        update={
            "train": str(manifest),
            "eval": None,
            "on_bad_input": on_bad_input,
            "max_duration_s": float("inf"),
            "max_eval_samples": None,
            "retention": [],
        }
    )
    return config.model_copy(update={"data": data})


def scoring_dataset(
    task: Task,
    config: RunConfig,
    manifest: str | Path,
    processor: ProcessorMixin,
    family: Family,
    on_bad_input: str = "stop",
) -> Any:
    """`manifest` checked by `task` and built as the run builds its held-out split."""
    sub = scoring_config(config, manifest, on_bad_input)
    report = task.check_data(sub, None)["train"]
    return task.build_datasets(sub, {"eval": report}, processor, family)["eval"]


def held_out_and_retention(config: RunConfig) -> dict[str, Path]:
    """A speech-to-text run's own held-out manifest and the builtin out-of-domain one."""
    from audiolora.data.sources import builtin_retention_dir, resolve_manifests

    return {
        "held-out": resolve_manifests(config.data.train, config.data.eval)["eval"],
        "retention": builtin_retention_dir() / "retention.jsonl",
    }


def entry_config(config: RunConfig, task: Task, manifest: str) -> RunConfig:
    """`scoring_config`, switched to `task` when the entry names another one."""
    sub = scoring_config(config, manifest, config.data.on_bad_input)
    return sub if task.name == config.task else sub.model_copy(update={"task": task.name})


def retention_name(manifest: str) -> str:
    """A short label for a retention set: the manifest's folder and file stem (no slash: sweep
    tables read `a/b` keys as per-type figures)."""
    path = Path(manifest)
    return f"{path.parent.name}-{path.stem}" if path.parent.name else path.stem


def check_retention(task: Task, config: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Every retention manifest checked up front: {name: the task's manifest report}."""
    reports: dict[str, Any] = {}
    for entry in config.data.retention:
        entry_task, manifest = split_entry(entry, task)
        name = retention_name(manifest)
        if name in reports:
            raise ValueError(f"data.retention names '{name}' twice")
        where = run_dir / "retention" / name
        where.mkdir(parents=True, exist_ok=True)
        try:
            sub = entry_config(config, entry_task, manifest)
            reports[name] = entry_task.check_data(sub, where)["train"]
        except ValueError as e:
            raise ValueError(f"data.retention {entry}: {e}") from e
    return reports


def retention_datasets(
    task: Task,
    config: RunConfig,
    reports: dict[str, Any],
    processor: ProcessorMixin,
    family: Family,
) -> dict[str, Any]:
    """{name: (the task that scores it, its held-out dataset)}."""
    datasets = {}
    for entry, (name, report) in zip(config.data.retention, reports.items(), strict=True):
        entry_task, manifest = split_entry(entry, task)
        sub = entry_config(config, entry_task, manifest)
        built = entry_task.build_datasets(sub, {"eval": report}, processor, family)["eval"]
        datasets[name] = (entry_task, built)
    return datasets


def score_retention(
    task: Task,
    model: Any,
    processor: ProcessorMixin,
    datasets: dict[str, Any],
    eval_options: dict[str, Any],
    precision: str,
    adapted: bool,
) -> dict[str, dict[str, Any]]:
    """Headline metrics on each retention set: the base model's (`adapted=False`) or the
    adapted one's."""
    from audiolora.models.heads.base import HeadModel

    scores = {}
    for name, (entry_task, dataset) in datasets.items():
        # Another task's set is scored on the adapted backbone, without this task's head.
        other = entry_task is not task and isinstance(model, HeadModel)
        scorer = model.backbone if other else model
        with compute_precision(precision):
            if adapted:
                result = entry_task.evaluate(
                    scorer, processor, dataset, desc=f"adapted on {name}", **eval_options
                )
            else:
                result = entry_task.base_metrics(
                    scorer, processor, dataset, desc=f"base on {name}", **eval_options
                )
        scores[name] = {k: result[k] for k in entry_task.headline if k in result}
    return scores


def retention_figures(metrics: dict[str, Any], keys: tuple[str, ...]) -> dict[str, float]:
    """Flat `<metric> on <set>` figures (and `... before training`) for sweep tables."""
    figures = {}
    for name, scores in (metrics.get("retention") or {}).items():
        shown = scores.get("final") or scores.get("base") or {}
        # A set scored by another task (`stt:...`) leads with that task's first metric.
        for key in [k for k in keys[:1] if k in shown] or list(shown)[:1]:
            if key in (scores.get("final") or {}):
                figures[f"{key} on {name}"] = scores["final"][key]
            if key in (scores.get("base") or {}):
                figures[f"{key} on {name} before training"] = scores["base"][key]
    return figures
