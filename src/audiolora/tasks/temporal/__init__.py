"""Temporal localization of session phases (seed 000): where in a window does a phase begin/end?

The task in one place: its recipe section (`config.py`), its metrics and reference, and the run
steps below. Training windows and their scoring are in `windows.py` (windows around annotated
boundaries plus "outside" windows whose target is 0 or 1); an `OffsetRegressor` reads the last
prompt token's hidden state and predicts the offset in [0, 1], with errors reported in seconds
(`evaluation.temporal_metrics`). Whole recordings are searched by `search.py` (a voting coarse
pass, then a re-centred refining pass) and `sessions.py` (`predict --sessions`).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn
from torch.utils.data import Dataset
from transformers import ProcessorMixin

from audiolora.data.augment import install_spec_augment
from audiolora.data.sessions import SessionReport, check_no_shared_recordings, check_sessions
from audiolora.data.sources import resolve_session_manifests
from audiolora.data.windows import sample_windows
from audiolora.models.adapters import attach_adapters
from audiolora.models.families import Family
from audiolora.models.heads.regression import OffsetRegressor, hidden_size_of
from audiolora.tasks.base import Breakdown, Metric, Task
from audiolora.tasks.temporal.config import TemporalConfig
from audiolora.tasks.temporal.windows import (
    WindowCollator,
    WindowDataset,
    offset_prior,
    predict_offsets,
    score_windows,
    training_windows,
)

if TYPE_CHECKING:
    from audiolora.config import RunConfig

__all__ = ["TemporalConfig", "TemporalLocalization"]


class TemporalLocalization(Task):
    """`task: temporal` -- offset of a phase boundary inside a window, by regression."""

    name = "temporal"
    section = TemporalConfig
    needs_audio_lm = True
    full_finetuning = True
    metrics = (
        Metric("mae_s", "MAE (s)", "{:.2f}", curve=True),
        Metric("median_ae_s", "Median abs. error (s)", "{:.2f}"),
        Metric("within_5s", "Within ±5 s", "{:.1%}", higher_is_better=True, percent=True),
        Metric("within_10s", "Within ±10 s", "{:.1%}", higher_is_better=True, percent=True),
        Metric("latency_s_per_window", "Latency / window (s)", "{:.3f}"),
    )
    breakdown = Breakdown("Per boundary type", "boundary", "mae_s", extra="within_5s")

    def head_learning_rate(self, config: RunConfig) -> float | None:
        return config.temporal.head_learning_rate

    def reference_note(self, base_details: dict[str, Any]) -> str | None:
        """The weakest reference (always the window centre), where the table's reference is the
        per-boundary prior."""
        if "centre_mae_s" not in base_details:
            return None
        return (
            "The reference above ignores the input: each boundary type at its median offset in "
            "the training windows (where the fresh head starts). Always answering the window "
            f"centre would give MAE {base_details['centre_mae_s']:.2f} s (median "
            f"{base_details['centre_median_ae_s']:.2f} s, {base_details['centre_within_10s']:.0%}"
            " within ±10 s)."
        )

    def example_label(self, example: dict[str, Any]) -> str:
        return example.get("label") or Path(example["audio"]).name

    def check_data(self, config: RunConfig, run_dir: Path | None) -> dict[str, SessionReport]:
        paths = resolve_session_manifests(config.data.train, config.data.eval)
        if "train" not in paths:
            raise ValueError("data.train is not set: give a session manifest or builtin:sessions")
        reports = check_sessions(
            paths,
            window_s=config.temporal.window_s,
            boundaries=tuple(config.temporal.boundaries),
            on_bad_input=config.data.on_bad_input,
            rejected_path=run_dir / "rejected.jsonl" if run_dir else None,
        )
        check_no_shared_recordings(reports)
        return reports

    def build_datasets(
        self,
        config: RunConfig,
        reports: dict[str, SessionReport],
        processor: ProcessorMixin,
        family: Family,
    ) -> dict[str, Dataset]:
        cfg = config.temporal
        datasets: dict[str, Dataset] = {}
        prior: dict[str, float] = {}
        for split, report in sorted(reports.items(), key=lambda kv: kv[0] != "train"):
            sessions = report.rows
            if split == "train":
                windows = training_windows(sessions, cfg, config.training.seed)
                prior = offset_prior(windows)
            else:
                rng = random.Random(cfg.eval_seed)
                windows = sample_windows(
                    sessions,
                    cfg.window_s,
                    cfg.eval_windows_per_boundary,
                    tuple(cfg.boundaries),
                    rng,
                )
                if config.data.max_eval_samples:
                    windows = windows[: config.data.max_eval_samples]
            datasets[split] = WindowDataset(
                family,  # type: ignore[arg-type]
                sessions,
                windows,
                processor,
                config.data.sampling_rate,
                cfg.transcript,
                cfg.audio,
                cfg.boundaries,
                cfg.question_last,
            )
            datasets[split].prior = prior
        return datasets

    def prepare_model(
        self,
        model: nn.Module,
        config: RunConfig,
        family: Family,
        total_steps: int,
        train_data: Dataset,
    ) -> nn.Module:
        backbone: nn.Module = model
        if config.temporal.head_only:
            for p in model.parameters():
                p.requires_grad_(False)
        else:
            backbone = attach_adapters(model, config.adapter, family, total_steps)
        regressor = OffsetRegressor(
            backbone,
            family,  # type: ignore[arg-type]
            hidden_size_of(model),
            config.temporal.loss,
            config.temporal.boundaries,
        )
        if isinstance(train_data, WindowDataset):
            regressor.init_prior(train_data.prior)
        device = next(model.parameters()).device
        regressor.head.to(device)
        install_spec_augment(regressor, config.data.spec_augment, family.audio_input_name)
        return regressor

    def collator(self, processor: ProcessorMixin, family: Family) -> Any:
        return WindowCollator(family, processor)  # type: ignore[arg-type]

    def base_metrics(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        """A base LM has no head to answer with. The reference is each boundary type at its
        median training offset (what the fresh head answers, `offset_prior`); without training
        windows (`eval --base`) it is "always the window centre". The centre's figures are kept
        beside it (`centre_*`)."""
        assert isinstance(dataset, WindowDataset)
        centre = score_windows(dataset, [0.5] * len(dataset))
        prior = dataset.prior
        if prior and all(w.boundary in prior for w in dataset.windows):
            metrics = score_windows(dataset, [prior[w.boundary] for w in dataset.windows])
            metrics["reference"] = "median training offset per boundary type"
            metrics.update(
                {f"centre_{k}": centre[k] for k in ("mae_s", "median_ae_s", "within_10s")}
            )
        else:
            metrics = centre
            metrics["reference"] = "constant 0.5 (window centre)"
        metrics["latency_s_per_window"] = 0.0
        return metrics

    def evaluate(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        assert isinstance(dataset, WindowDataset) and isinstance(model, OffsetRegressor)
        start = time.perf_counter()
        predictions = predict_offsets(
            model,
            dataset,
            batch_size=options.get("batch_size", 4),
            desc=options.get("desc", "eval"),
            progress=options.get("progress", True),
        )
        metrics = score_windows(dataset, predictions)
        metrics["latency_s_per_window"] = (time.perf_counter() - start) / max(len(dataset), 1)
        metrics["prediction_std"] = float(np.std(predictions))
        return metrics

    def load(self, base: nn.Module, adapter_dir: Path, family: Family) -> nn.Module:
        return OffsetRegressor.from_pretrained(base, adapter_dir, family)  # type: ignore[arg-type]

    def predict_sessions(
        self,
        run_dir: Path,
        manifest: Path,
        hop_s: float | None,
        progress: bool = True,
        min_phase_s: float | None = None,
        workers: int | None = None,
        fill_in: bool | None = None,
    ) -> Any:
        from audiolora.tasks.temporal.sessions import locate_in_sessions, printout

        result = locate_in_sessions(
            run_dir,
            manifest,
            hop_s=hop_s,
            progress=progress,
            min_phase_s=min_phase_s,
            workers=workers,
            fill_in=fill_in,
        )
        return printout(Path(run_dir), Path(manifest), result)
