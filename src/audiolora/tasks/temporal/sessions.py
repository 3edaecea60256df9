"""`audiolora predict RUN --sessions M`: every boundary of every whole recording, scored
against annotated boundaries when the manifest has them, with the no-model reference beside."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiolora.atomic import atomic_write_json
from audiolora.data.sessions import check_sessions
from audiolora.data.sources import resolve_session_manifests
from audiolora.models.shared_prefix import can_share_prefix
from audiolora.precision import compute_precision, store_in_compute_dtype
from audiolora.tasks.temporal.parallel import usable_workers
from audiolora.tasks.temporal.search import (
    coarse_pass_windows,
    locate_boundaries,
    phase_prior,
    session_errors,
    session_metrics,
)
from audiolora.tasks.temporal.windows import predict_offsets_shared_many

log = logging.getLogger(__name__)


@dataclass
class Printout:
    """What the CLI shows of a prediction: a table, sentences, and the files written."""

    title: str
    header: list[str]
    rows: list[list[str]]
    lines: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def locate_in_sessions(
    run_dir: Path,
    manifest: Path,
    *,
    on_bad_input: str = "stop",
    progress: bool = True,
    hop_s: float | None = None,
    share_prefix: bool = True,
    min_phase_s: float | None = None,
    workers: int | None = None,
    fill_in: bool | None = None,
) -> dict[str, Any]:
    """Session-level inference for a temporal run: every boundary of every recording.

    Sessions need a transcript when the run was trained with one; boundaries in the manifest
    are optional and, when present, give session-level errors in seconds. `share_prefix`:
    see `locate_boundaries` (False only to measure the one-prompt-at-a-time path). `workers`:
    processes the recordings' windows are spread over (None: one per CPU core for a run loaded on
    the CPU on Linux, else 1; `parallel.usable_workers`).
    """
    from audiolora.inference import run_config

    began = time.perf_counter()
    config = run_config(run_dir, True)
    cfg = config.temporal
    reports = check_sessions(
        {"sessions": Path(manifest)},
        window_s=cfg.window_s,
        boundaries=(),
        on_bad_input=on_bad_input,  # type: ignore[arg-type]
        rejected_path=None,
    )
    prior = training_prior(config)
    model, processor = load_for_search(run_dir, config)
    sessions = reports["sessions"].rows
    results, errors, coarse_errors, reference_errors = [], [], [], []
    workers = usable_workers(workers, next(model.parameters()).device)
    windows = {
        "window_s": cfg.window_s,
        "hop_s": hop_s or cfg.hop_s or cfg.window_s / 2,
        "sampling_rate": config.data.sampling_rate,
        "transcript": cfg.transcript,
        "audio": cfg.audio,
        "question_last": cfg.question_last,
    }
    min_phase = cfg.min_phase_s if min_phase_s is None else min_phase_s
    fill_in = cfg.fill_in if fill_in is None else fill_in
    coarse: Sequence[Sequence[float] | None] = [None] * len(sessions)
    shared = share_prefix and can_share_prefix(model.family, model.backbone)
    if not shared:
        workers = 1  # the one-prompt-at-a-time path runs in this process
    else:
        # Every recording's coarse windows in one list: spread over the workers, they come out
        # even across recordings (a recording's own windows rarely split evenly).
        datasets = [
            coarse_pass_windows(model, processor, s, cfg.boundaries, **windows) for s in sessions
        ]
        with compute_precision(config.training.precision):
            coarse = predict_offsets_shared_many(
                model,
                datasets,
                group=len(cfg.boundaries),
                desc="coarse pass",
                progress=progress,
                workers=workers,
            )
    for session, answers in zip(sessions, coarse, strict=True):
        with compute_precision(config.training.precision):
            found = locate_boundaries(
                model,  # type: ignore[arg-type]
                processor,
                session,
                cfg.boundaries,
                **windows,
                batch_size=config.training.eval_batch_size,
                progress=progress,
                share_prefix=share_prefix,
                min_phase_s=min_phase,
                any_order=cfg.any_phase_order,
                fill_in=fill_in,
                coarse=answers,
            )
        err = session_errors(found, session)
        errors.append(err)
        coarse_found = {n: {"time_s": v["coarse_s"]} for n, v in found.items()}
        coarse_errors.append(session_errors(coarse_found, session))
        reference = {n: {"time_s": f * session.duration} for n, f in prior.items()}
        reference_errors.append(session_errors(reference, session))
        results.append(
            {
                "audio": str(session.audio),
                "line": session.line,
                "boundaries": {
                    n: None if v["time_s"] is None else round(v["time_s"], 2)
                    for n, v in found.items()
                },
                "coarse": {n: round(v["coarse_s"], 2) for n, v in found.items()},
                **(
                    {"filled": {n: round(v["filled_s"], 2) for n, v in found.items()}}
                    if fill_in
                    else {}
                ),
                "annotated": {
                    n: session.boundaries.get(n)
                    for n in found
                    if n in session.boundaries or n in session.absent
                },
                "abs_error_s": {
                    n: e if isinstance(e, str) else round(e, 2) for n, e in err.items()
                },
                "coarse_pass": {n: v["coarse_pass"] for n, v in found.items()},
                "refined": {
                    n: [v["window_start_s"], v["refined_offset"]] for n, v in found.items()
                },
            }
        )
    result = {
        "manifest": str(Path(manifest).resolve()),
        "window_s": cfg.window_s,
        "hop_s": windows["hop_s"],
        "min_phase_s": min_phase,
        "any_phase_order": cfg.any_phase_order,
        "fill_in": fill_in,
        "sessions": results,
        "metrics": session_metrics(errors),
        "coarse_metrics": session_metrics(coarse_errors),
        "reference_metrics": session_metrics(reference_errors),
        "rejected": len(reports["sessions"].problems),
        "workers": workers,
        # Loading and search together: what a user waits for, against what was heard.
        "seconds": round(time.perf_counter() - began, 2),
        "audio_s": round(sum(s.duration for s in sessions), 2),
    }
    return result


def load_for_search(run_dir: Path, config: Any) -> tuple[Any, Any]:
    """The run's model and processor as the session search runs them: frozen, every weight
    stored in the run's compute dtype (each forward runs inside `compute_precision`, so the
    weights are cast once instead of at every call; a search trains nothing, whatever the run
    trained)."""
    from audiolora.inference import load_run

    model, processor, _ = load_run(run_dir, True)
    model.requires_grad_(False)
    store_in_compute_dtype(model, config.training.precision)
    return model, processor


def training_prior(config: Any) -> dict[str, float]:
    """The run's training sessions' mean boundary positions (`phase_prior`), or {} when its
    training manifest cannot be read here (a run copied without its data)."""
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


def shown_time(times: dict[str, float | None], name: str) -> str:
    if name not in times:
        return "—"
    return "absent" if times[name] is None else str(times[name])


def printout(run_dir: Path, manifest: Path, result: dict[str, Any]) -> Printout:
    """The located boundaries as a table, the session-level errors as sentences, and the
    result written to RUN/sessions-M.json with its plot."""
    from audiolora.reporting.session_plot import plot_sessions

    rows = [
        [
            Path(session["audio"]).name,
            name,
            "absent" if t is None else f"{t:.1f}",
            shown_time(session["annotated"], name),
            str(session["abs_error_s"].get(name, "—")),
        ]
        for session in result["sessions"]
        for name, t in session["boundaries"].items()
    ]
    lines = []
    m = result["metrics"]
    if m:
        lines.append(
            f"session-level MAE {m['mae_s']:.2f} s (median {m['median_ae_s']:.2f} s, "
            f"{m['within_5s']:.0%} within ±5 s, {m['within_10s']:.0%} within ±10 s, "
            f"{m['count']} boundaries)"
        )
    if m.get("missed") or m.get("invented"):
        lines.append(
            f"phase presence: {m['missed']} boundaries of present phases reported absent, "
            f"{m['invented']} of absent phases given a time (not in the MAE)"
        )
    c = result.get("coarse_metrics")
    if m and c:
        lines.append(
            f"coarse pass alone (before re-centring): MAE {c['mae_s']:.2f} s "
            f"(median {c['median_ae_s']:.2f} s, {c['within_10s']:.0%} within ±10 s)"
        )
    r = result.get("reference_metrics")
    if m and r:
        lines.append(
            f"reference (each boundary at its mean share of the recording in the training "
            f"sessions): MAE {r['mae_s']:.2f} s (median {r['median_ae_s']:.2f} s, "
            f"{r['within_10s']:.0%} within ±10 s)"
        )
    if result.get("audio_s"):
        lines.append(
            f"{len(result['sessions'])} recordings, {result['audio_s'] / 60:.1f} min of audio, "
            f"searched in {result['seconds']:.1f} s ({result['seconds'] / result['audio_s']:.3f}x "
            f"real time; hop {result['hop_s']:g} s{', fill-in' if result.get('fill_in') else ''}, "
            f"{result['workers']} process(es))"
        )
    out = run_dir / f"sessions-{manifest.stem}.json"
    atomic_write_json(out, result)
    plot = out.with_suffix(".png")
    plot_sessions(result, plot, result["window_s"])
    return Printout(
        title=f"Boundaries located in {manifest}",
        header=["recording", "boundary", "found (s)", "annotated (s)", "error (s)"],
        rows=rows,
        lines=lines,
        files=[out, plot],
    )
