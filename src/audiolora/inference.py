"""Reopen a finished run for evaluation and prediction: base model + RUN/adapter (the task's
trained parts: a PEFT adapter, plus a head where the task has one). Every call goes through the
run's task, so eval and predict never branch on what the task is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiolora.config import ConfigError, RunConfig, load_config
from audiolora.evaluation.retention import scoring_config
from audiolora.models.families import Family
from audiolora.models.loading import disable_cpu_repacking, load_model
from audiolora.precision import compute_precision
from audiolora.tasks.registry import get_task


def run_config(run_dir: Path, use_adapter: bool = True) -> RunConfig:
    """The resolved recipe of a finished run; fails early if the run folder is incomplete."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
    adapter = run_dir / "adapter"
    if use_adapter and not adapter.is_dir():
        raise ConfigError(f"{run_dir}: no finished adapter in {adapter} (did training complete?)")
    return load_config(run_dir / "config.yaml")


def load_run(run_dir: Path, use_adapter: bool = True) -> tuple[Any, Any, RunConfig]:
    """(model, processor, config) of a run; `use_adapter=False` gives the bare base model."""
    model, processor, config, _ = load_run_with_family(run_dir, use_adapter)
    return model, processor, config


def load_run_with_family(
    run_dir: Path, use_adapter: bool = True
) -> tuple[Any, Any, RunConfig, Family]:
    config = run_config(run_dir, use_adapter)
    model, processor, family, _ = load_model(config.model)
    if use_adapter:
        model = get_task(config.task).load(model, Path(run_dir) / "adapter", family)
        disable_cpu_repacking(model)
        if config.adapter.speech_gate:
            from audiolora.models.speech_gate import install_speech_gate

            install_speech_gate(model, family.audio_encoder_prefix)
    model.eval()
    return model, processor, config, family


def evaluate_run(
    run_dir: Path, manifest: Path, *, use_adapter: bool = True, on_bad_input: str = "stop"
) -> dict[str, Any]:
    """The run's held-out evaluation on another manifest, decoded and computed as in the run,
    so scores reproduce the run's. Clips of any length are scored (split as predict splits
    them); only training keeps the recipe's length limit."""
    config = run_config(run_dir, use_adapter)
    task = get_task(config.task)
    config = scoring_config(config, manifest, on_bad_input)
    reports = task.check_data(config, None)
    model, processor, _, family = load_run_with_family(run_dir, use_adapter)
    # Held-out windows are drawn the way the run drew its eval windows (fixed eval seed).
    datasets = task.build_datasets(config, {"eval": reports["train"]}, processor, family)
    options = {
        "batch_size": config.training.eval_batch_size,
        "num_beams": config.training.num_beams,
        "max_new_tokens": config.training.max_new_tokens,
        "desc": "adapted" if use_adapter else "base",
        "family": family,
    }
    with compute_precision(config.training.precision):
        if use_adapter:
            metrics = task.evaluate(model, processor, datasets["eval"], **options)
        else:
            metrics = task.base_metrics(model, processor, datasets["eval"], **options)
    metrics["task"] = config.task
    metrics["rejected"] = len(reports["train"].problems)
    metrics["model"] = "adapted" if use_adapter else metrics.get("reference", "base")
    return metrics


def predict_files(
    run_dir: Path, audio_paths: list[Path], *, use_adapter: bool = True, batch_size: int = 8
) -> list[str]:
    """One answer per file (a transcript, or the task's answer); long files are split."""
    model, processor, config, family = load_run_with_family(run_dir, use_adapter)
    task = get_task(config.task)
    with compute_precision(config.training.precision):
        return task.predict_files(model, processor, family, config, audio_paths, batch_size)


def predict_sessions(
    run_dir: Path,
    manifest: Path,
    *,
    hop_s: float | None = None,
    progress: bool = True,
    min_phase_s: float | None = None,
    workers: int | None = None,
    fill_in: bool | None = None,
) -> Any:
    """Whole recordings of a session manifest, for tasks that search sessions."""
    config = run_config(run_dir, True)
    task = get_task(config.task)
    return task.predict_sessions(
        Path(run_dir), manifest, hop_s, progress, min_phase_s, workers, fill_in
    )


def rank_captions(
    run_dir: Path, clip: Path, captions: list[str], *, use_adapter: bool = True
) -> list[tuple[str, float, float]]:
    """Contrastive runs: (caption, cosine, probability) for one clip, best first."""
    model, processor, config, family = load_run_with_family(run_dir, use_adapter)
    task = get_task(config.task)
    if not hasattr(task, "rank_captions"):
        raise ValueError(f"a {config.task} run does not rank captions (--captions)")
    return task.rank_captions(model, processor, family, clip, captions)
