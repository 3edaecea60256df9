"""Reopen a finished run for evaluation and prediction: base model + RUN/adapter (the task's
trained parts: a PEFT adapter, plus a regression head for temporal localization)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from audiolora.config import ConfigError, RunConfig, load_config
from audiolora.data.audio import load_audio
from audiolora.data.manifest import ManifestRow, check_manifests
from audiolora.models.families import family_for
from audiolora.models.lalm import LalmCollator, generate_text, split_audio
from audiolora.models.loading import disable_cpu_repacking, load_model
from audiolora.precision import compute_precision, full_precision
from audiolora.tasks.base import get_task
from audiolora.tasks.stt import (
    STT_INSTRUCTION,
    LalmSpeechTextDataset,
    build_stt_dataset,
    evaluate_stt,
    pad_token_id,
    transcribe_batches,
)

log = logging.getLogger(__name__)


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
    config = run_config(run_dir, use_adapter)
    model, processor, _, _ = load_model(config.model)
    if use_adapter:
        model = get_task(config.task).load(model, Path(run_dir) / "adapter")
        disable_cpu_repacking(model)
    model.eval()
    return model, processor, config


def evaluate_run(
    run_dir: Path, manifest: Path, *, use_adapter: bool = True, on_bad_input: str = "stop"
) -> dict[str, Any]:
    config = run_config(run_dir, use_adapter)
    if config.task != "stt":
        return evaluate_task_run(run_dir, config, manifest, use_adapter, on_bad_input)
    reports = check_manifests(
        {"eval": Path(manifest)},
        on_bad_input=on_bad_input,  # type: ignore[arg-type]
        rejected_path=None,
        sampling_rate=config.data.sampling_rate,
        max_duration_s=config.data.max_duration_s,
    )
    model, processor, _ = load_run(run_dir, use_adapter)
    family = family_for(model.config, config.model.family)
    dataset = build_stt_dataset(family, reports["eval"].rows, processor, config.data)
    with compute_precision(config.training.precision):
        metrics = evaluate_stt(
            model,
            processor,
            dataset,
            batch_size=config.training.eval_batch_size,
            num_beams=config.training.num_beams,
            max_new_tokens=config.training.max_new_tokens,
            desc="adapted" if use_adapter else "base",
        )
    metrics["rejected"] = len(reports["eval"].problems)
    metrics["model"] = "adapted" if use_adapter else "base"
    return metrics


def transcribe_files(
    run_dir: Path, audio_paths: list[Path], *, use_adapter: bool = True, batch_size: int = 8
) -> list[str]:
    """One transcript per file; files longer than 30 s are decoded piece by piece and joined."""
    model, processor, config = load_run(run_dir, use_adapter)
    with compute_precision(config.training.precision):
        return _transcribe(model, processor, config, audio_paths, batch_size)


def _transcribe(
    model: Any, processor: Any, config: RunConfig, audio_paths: list[Path], batch_size: int
) -> list[str]:
    sr = config.data.sampling_rate
    if family_for(model.config, config.model.family).kind == "lalm":
        return lalm_transcribe_files(model, processor, config, audio_paths, batch_size)
    pieces: list[tuple[int, Any]] = []
    for index, path in enumerate(audio_paths):
        for segment in split_audio(load_audio(path, sr), sr):
            pieces.append((index, segment))
    texts: list[list[str]] = [[] for _ in audio_paths]
    for start in range(0, len(pieces), batch_size):
        chunk = pieces[start : start + batch_size]
        with full_precision():
            feats = processor.feature_extractor(
                [segment for _, segment in chunk], sampling_rate=sr, return_tensors="pt"
            )["input_features"]
        out, _, _ = transcribe_batches(
            model,
            processor,
            [{"input_features": feats}],
            num_beams=config.training.num_beams,
            max_new_tokens=config.training.max_new_tokens,
        )
        for (index, _), text in zip(chunk, out, strict=True):
            texts[index].append(text)
    return [" ".join(t for t in parts if t) for parts in texts]


def lalm_transcribe_files(
    model: Any, processor: Any, config: RunConfig, audio_paths: list[Path], batch_size: int
) -> list[str]:
    """An audio LM takes a long file as several audio segments in one prompt."""
    rows = [
        ManifestRow(
            line=i + 1,
            audio=Path(p),
            text=None,
            offset=0.0,
            duration=None,
            audio_seconds=0.0,
            raw={},
        )
        for i, p in enumerate(audio_paths)
    ]
    # An SLU run answers its own instruction (one line of JSON); others transcribe.
    instruction = config.slu.instruction if config.task == "slu" else STT_INSTRUCTION
    dataset = LalmSpeechTextDataset(
        rows, processor, config.data.sampling_rate, instruction, with_answer=False
    )
    collator = LalmCollator(processor, pad_token_id(processor), padding_side="left")
    texts: list[str] = []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collator):
        texts += generate_text(
            model, processor, batch, config.training.max_new_tokens, config.training.num_beams
        )
    return texts


def evaluate_task_run(
    run_dir: Path, config: RunConfig, manifest: Path, use_adapter: bool, on_bad_input: str
) -> dict[str, Any]:
    """Any task's held-out evaluation on another manifest, through the Task protocol."""
    task = get_task(config.task)
    config = config.model_copy(
        update={
            "data": config.data.model_copy(
                update={"train": str(manifest), "eval": None, "on_bad_input": on_bad_input}
            )
        }
    )
    reports = task.check_data(config, None)
    model, processor, _ = load_run(run_dir, use_adapter)
    hf_config = model.config if hasattr(model, "config") else model.backbone.config
    family = family_for(hf_config, config.model.family)
    # Held-out windows are drawn the way the run drew its eval windows (fixed eval seed).
    datasets = task.build_datasets(config, {"eval": reports["train"]}, processor, family)
    # Decoding as in the run, so a generative task's scores reproduce the run's.
    options = {
        "batch_size": config.training.eval_batch_size,
        "num_beams": config.training.num_beams,
        "max_new_tokens": config.training.max_new_tokens,
        "desc": "eval",
    }
    with compute_precision(config.training.precision):
        if use_adapter:
            metrics = task.evaluate(model, processor, datasets["eval"], **options)
        else:
            metrics = task.base_metrics(model, processor, datasets["eval"], **options)
    metrics["rejected"] = len(reports["train"].problems)
    metrics["model"] = "adapted" if use_adapter else metrics.get("reference", "base")
    return metrics


def locate_in_sessions(
    run_dir: Path,
    manifest: Path,
    *,
    on_bad_input: str = "stop",
    progress: bool = True,
    hop_s: float | None = None,
) -> dict[str, Any]:
    """Session-level inference for a temporal run: every boundary of every recording.

    Sessions need a transcript when the run was trained with one; boundaries in the manifest
    are optional and, when present, give session-level errors in seconds.
    """
    from audiolora.data.windows import check_sessions
    from audiolora.tasks.temporal import locate_boundaries, session_errors, session_metrics

    config = run_config(run_dir, True)
    if config.task != "temporal":
        raise ConfigError(f"{run_dir}: a '{config.task}' run; --sessions needs a temporal run")
    cfg = config.temporal
    reports = check_sessions(
        {"sessions": Path(manifest)},
        window_s=cfg.window_s,
        boundaries=(),
        on_bad_input=on_bad_input,  # type: ignore[arg-type]
        rejected_path=None,
    )
    prior = training_prior(config)
    model, processor, _ = load_run(run_dir, True)
    sessions = reports["sessions"].rows
    results, errors, coarse_errors, reference_errors = [], [], [], []
    for session in sessions:
        with compute_precision(config.training.precision):
            found = locate_boundaries(
                model,  # type: ignore[arg-type]
                processor,
                session,
                cfg.boundaries,
                window_s=cfg.window_s,
                hop_s=hop_s or cfg.hop_s or cfg.window_s / 2,
                sampling_rate=config.data.sampling_rate,
                transcript=cfg.transcript,
                audio=cfg.audio,
                batch_size=config.training.eval_batch_size,
                progress=progress,
            )
        err = session_errors(found, session)
        errors.append(err)
        coarse = {n: {"time_s": v["coarse_s"]} for n, v in found.items()}
        coarse_errors.append(session_errors(coarse, session))
        reference = {n: {"time_s": f * session.duration} for n, f in prior.items()}
        reference_errors.append(session_errors(reference, session))
        results.append(
            {
                "audio": str(session.audio),
                "line": session.line,
                "boundaries": {n: round(v["time_s"], 2) for n, v in found.items()},
                "coarse": {n: round(v["coarse_s"], 2) for n, v in found.items()},
                "annotated": {n: session.boundaries[n] for n in found if n in session.boundaries},
                "abs_error_s": {n: round(e, 2) for n, e in err.items()},
                "coarse_pass": {n: v["coarse_pass"] for n, v in found.items()},
            }
        )
    return {
        "window_s": cfg.window_s,
        "sessions": results,
        "metrics": session_metrics(errors),
        "coarse_metrics": session_metrics(coarse_errors),
        "reference_metrics": session_metrics(reference_errors),
        "rejected": len(reports["sessions"].problems),
    }


def training_prior(config: RunConfig) -> dict[str, float]:
    """The run's training sessions' mean boundary positions (`phase_prior`), or {} when its
    training manifest cannot be read here (a run copied without its data)."""
    from audiolora.data.sources import resolve_session_manifests
    from audiolora.data.windows import check_sessions
    from audiolora.tasks.temporal import phase_prior

    path = resolve_session_manifests(config.data.train, None).get("train")
    if path is None or not path.is_file():
        log.warning("no training sessions at %s: no prior reference", path)
        return {}
    report = check_sessions(
        {"train": path},
        window_s=config.temporal.window_s,
        boundaries=(),
        on_bad_input="skip",
        rejected_path=None,
    )["train"]
    return phase_prior(report.rows, config.temporal.boundaries)
