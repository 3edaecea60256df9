"""Temporal localization of session phases (seed 000): where in a window does a phase begin/end?

Training examples are windows of `temporal.window_s` seconds around annotated boundaries
(`data.windows.sample_windows`: the boundary at a uniform random offset, target exact). The
prompt is the window's audio (split into 30 s segments for the encoder) followed by the task
sentence naming the boundary and, optionally, the transcript words inside the window; an
`OffsetRegressor` reads the last prompt token's hidden state and predicts the offset in [0, 1].
Errors are reported in seconds (`evaluation.temporal_metrics`).

A user has whole recordings, not windows that happen to contain the boundary. So training can
add "outside" windows whose target is 0 (the boundary lies before the window) or 1 (after it),
and `locate_boundaries` searches a session in two passes: a coarse pass tiles the recording with
overlapping windows, and every window votes: a boundary at time t implies offset
clip((t - start) / W, 0, 1) in each window, and the coarse estimate is the t whose implied offsets
disagree least (L1) with what the head said, the boundaries kept in their phase order. One
confused window cannot move the estimate; windows far before or after the boundary, which the
head should call 1 or 0, vote too. A second pass re-centres a window on the estimate and asks
again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import ProcessorMixin

from audiolora.config import RunConfig, TemporalConfig
from audiolora.data.audio import load_audio
from audiolora.data.augment import install_spec_augment
from audiolora.data.sources import resolve_session_manifests
from audiolora.data.windows import (
    BOUNDARIES,
    SessionRecord,
    SessionReport,
    Window,
    check_sessions,
    coarse_windows,
    sample_windows,
    window_prompt,
    window_words,
)
from audiolora.evaluation.temporal_metrics import localization_metrics
from audiolora.models.adapters import attach_adapters, lalm_trainable_extras
from audiolora.models.families import Family
from audiolora.models.lalm import LalmCollator, encode_example, split_audio
from audiolora.models.regression import OffsetRegressor, hidden_size_of
from audiolora.tasks.base import require_audio_lm

HEADLINE = ("mae_s", "median_ae_s", "within_5s", "within_10s", "latency_s_per_window")


def window_instruction(window: Window, transcript: bool) -> str:
    """The task sentence, then the words heard in the window (when the recipe wants them)."""
    text = window_prompt(window.boundary, window_s=window.length)
    if transcript:
        text += "\nTranscript: " + (" ".join(window.words) if window.words else "(no speech)")
    return text


class WindowDataset(Dataset):
    """Windows of sessions as LALM prompts with an offset target; audio read per item.

    `audio=False` gives text-only prompts (the transcript alone, no audio segments). Each item's
    `boundary_index` is its boundary's position in `boundaries`, the head's output order."""

    def __init__(
        self,
        sessions: Sequence[SessionRecord],
        windows: Sequence[Window],
        processor: ProcessorMixin,
        sampling_rate: int = 16000,
        transcript: bool = True,
        audio: bool = True,
        boundaries: Sequence[str] = BOUNDARIES,
    ) -> None:
        self.sessions = list(sessions)
        self.windows = list(windows)
        self.processor = processor
        self.sampling_rate = sampling_rate
        self.transcript = transcript
        self.audio = audio
        self.boundaries = list(boundaries)
        self.lengths = [w.length for w in self.windows]
        self.prior: dict[str, float] = {}
        """Training windows' mean offset per boundary type (`offset_prior`), for held-out sets."""

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        window = self.windows[index]
        segments = []
        if self.audio:
            session = self.sessions[window.session]
            audio = load_audio(session.audio, self.sampling_rate, window.start, window.length)
            segments = split_audio(audio, self.sampling_rate)
        example = encode_example(
            self.processor,
            segments,
            window_instruction(window, self.transcript),
            None,
            self.sampling_rate,
        )
        example["targets"] = torch.tensor(window.offset, dtype=torch.float32)
        example["boundary_index"] = torch.tensor(self.boundaries.index(window.boundary))
        return example


class WindowCollator:
    """`LalmCollator` for the prompts plus the stacked offset targets and boundary indices."""

    STACKED = ("targets", "boundary_index")

    def __init__(self, processor: ProcessorMixin, pad_token_id: int) -> None:
        self.prompts = LalmCollator(processor, pad_token_id, padding_side="right")

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.prompts(
            [{k: v for k, v in it.items() if k not in self.STACKED} for it in items]
        )
        for key in self.STACKED:
            if key in items[0]:
                batch[key] = torch.stack([it[key] for it in items])
        return batch


def outside_windows(
    sessions: Sequence[SessionRecord],
    count: int,
    window_s: float,
    boundaries: Sequence[str],
    rng: random.Random,
) -> list[Window]:
    """`count` windows that miss their boundary: target 1 when the window ends before it,
    0 when it starts after it. Boundary/side pairs with no room for such a window are skipped."""
    options = []
    for index, session in enumerate(sessions):
        for name in boundaries:
            t = session.boundaries[name]
            if t - window_s > 0:
                options.append((index, name, 0.0, t - window_s, 1.0))
            if session.duration - window_s > t:
                options.append((index, name, t, session.duration - window_s, 0.0))
    windows = []
    for _ in range(count if options else 0):
        index, name, lo, hi, target = rng.choice(options)
        start = rng.uniform(lo, hi)
        words = window_words(sessions[index].words, start, window_s)
        windows.append(Window(index, name, start, window_s, target, words, inside=False))
    return windows


def training_windows(
    sessions: Sequence[SessionRecord], cfg: TemporalConfig, seed: int
) -> list[Window]:
    """The seed's windows around each boundary, plus the recipe's share of outside windows."""
    rng = random.Random(seed)
    boundaries = tuple(cfg.boundaries)
    inside = sample_windows(list(sessions), cfg.window_s, cfg.windows_per_boundary, boundaries, rng)
    extra = round(len(inside) * cfg.outside_fraction / (1 - cfg.outside_fraction))
    return inside + outside_windows(sessions, extra, cfg.window_s, boundaries, rng)


def offset_prior(windows: Sequence[Window]) -> dict[str, float]:
    """Median offset per boundary type over the windows that contain their boundary.

    Why: near a recording's edges a window is moved inside, so offsets are not uniform and
    "always the window centre" is a weak reference. This prior, taken from the training
    windows, is the best a model that ignores its input can do for the MAE (the median
    minimises absolute error): a trained model is only worth its gap to it. The head starts
    from it (`OffsetRegressor.init_prior`).
    """
    by_type: dict[str, list[float]] = {}
    for w in windows:
        if w.inside:
            by_type.setdefault(w.boundary, []).append(w.offset)
    return {name: float(np.median(offsets)) for name, offsets in by_type.items()}


@torch.no_grad()
def predict_offsets(
    model: OffsetRegressor,
    dataset: WindowDataset,
    *,
    batch_size: int,
    desc: str = "windows",
    progress: bool = True,
) -> list[float]:
    """The head's offset for every window of `dataset`, in order."""
    was_training = model.training
    model.eval()
    pad = _pad_id(dataset.processor)
    loader = DataLoader(
        dataset, batch_size=batch_size, collate_fn=WindowCollator(dataset.processor, pad)
    )
    device = next(model.head.parameters()).device
    offsets: list[float] = []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        batch.pop("targets")
        out = model(**{k: v.to(device) for k, v in batch.items()})
        offsets += [float(x) for x in out["predictions"].float().cpu()]
    if was_training:
        model.train()
    return offsets


def _pad_id(processor: ProcessorMixin) -> int:
    tok = processor.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def score_windows(dataset: WindowDataset, predictions: Sequence[float]) -> dict[str, Any]:
    """Localization metrics in seconds, plus a few examples for the report."""
    windows = dataset.windows
    metrics: dict[str, Any] = localization_metrics(
        predictions,
        [w.offset for w in windows],
        [w.length for w in windows],
        [w.boundary for w in windows],
    )
    metrics["examples"] = [
        {
            "audio": str(dataset.sessions[w.session].audio),
            "boundary": w.boundary,
            "window_start_s": round(w.start, 2),
            "reference": f"{w.boundary_time:.1f} s",
            "hypothesis": f"{w.start + p * w.length:.1f} s",
        }
        for w, p in zip(windows, predictions, strict=True)
    ]
    return metrics


def locate_boundaries(
    model: OffsetRegressor,
    processor: ProcessorMixin,
    session: SessionRecord,
    boundaries: Sequence[str],
    *,
    window_s: float,
    hop_s: float,
    sampling_rate: int = 16000,
    transcript: bool = True,
    audio: bool = True,
    batch_size: int = 4,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Boundary times in a whole recording: coarse pass, then a re-centred refining pass.

    Returns boundary -> {"time_s", "coarse_s", "window_start_s", "coarse_pass": [[start, said
    offset], ...]}. Recordings shorter than the window are seen as one shorter window.
    """
    boundaries = sorted(boundaries, key=BOUNDARIES.index)  # time order, for the ordered search
    length = min(window_s, session.duration)
    starts = coarse_windows(session.duration, length, min(hop_s, length))

    def windows_at(pairs: list[tuple[str, float]]) -> WindowDataset:
        windows = [
            Window(0, name, start, length, 0.0, window_words(session.words, start, length))
            for name, start in pairs
        ]
        # The head's output order, not the search's time order, indexes the answers.
        return WindowDataset(
            [session], windows, processor, sampling_rate, transcript, audio, model.boundaries
        )

    coarse_pairs = [(name, start) for name in boundaries for start in starts]
    coarse = predict_offsets(
        model,
        windows_at(coarse_pairs),
        batch_size=batch_size,
        desc="coarse pass",
        progress=progress,
    )
    said = np.asarray(coarse, dtype=np.float64).reshape(len(boundaries), len(starts))
    grid = candidate_times(np.asarray(starts), length, said, session.duration)
    costs = np.stack([disagreement(grid, np.asarray(starts), length, row) for row in said])
    estimates = dict(zip(boundaries, grid[ordered_argmin(costs)].tolist(), strict=True))
    refine_pairs = [
        (name, min(max(t - length / 2, 0.0), session.duration - length))
        for name, t in estimates.items()
    ]
    refined = predict_offsets(
        model, windows_at(refine_pairs), batch_size=batch_size, desc="refine", progress=progress
    )
    # Each boundary is refined in its own window, so a weak head can undo the coarse pass's
    # phase order (P2_end before P2_start); a running maximum restores it.
    times = np.maximum.accumulate(
        [start + p * length for (_, start), p in zip(refine_pairs, refined, strict=True)]
    )
    return {
        name: {
            "time_s": float(time_s),
            "coarse_s": estimates[name],
            "window_start_s": start,
            "coarse_pass": [
                [round(s, 2), round(float(q), 4)] for s, q in zip(starts, row, strict=True)
            ],
        }
        for (name, start), time_s, row in zip(refine_pairs, times, said, strict=True)
    }


def candidate_times(
    starts: np.ndarray, length: float, said: np.ndarray, duration: float
) -> np.ndarray:
    """Every time where some window's disagreement bends: its start, its end and the time its
    offset names. Disagreements are piecewise linear in t, so the (ordered) best lies on one."""
    named = (starts[None, :] + said * length).ravel()
    times = np.concatenate([starts, starts + length, named, [0.0, duration]])
    return np.unique(np.clip(times, 0.0, duration))


def disagreement(
    grid: np.ndarray, starts: np.ndarray, length: float, said: np.ndarray
) -> np.ndarray:
    """For a boundary at each grid time: sum over windows of |implied offset - said offset|."""
    implied = np.clip((grid[:, None] - starts[None, :]) / length, 0.0, 1.0)
    return np.abs(implied - said[None, :]).sum(axis=1)


def ordered_argmin(costs: np.ndarray) -> np.ndarray:
    """Grid indices i_0 <= i_1 <= ... (one per row, rows in time order) minimising the summed
    cost: boundaries of a session come in phase order, so a search may not swap them."""
    n_rows, n_grid = costs.shape
    total = costs[0].copy()
    came_from = np.zeros((n_rows, n_grid), dtype=np.int64)
    for row in range(1, n_rows):
        best_before = np.minimum.accumulate(total)  # best total with the previous index <= here
        came_from[row] = _running_argmin(total)
        total = costs[row] + best_before
    picks = np.zeros(n_rows, dtype=np.int64)
    picks[-1] = int(np.argmin(total))
    for row in range(n_rows - 1, 0, -1):
        picks[row - 1] = came_from[row][picks[row]]
    return picks


def _running_argmin(values: np.ndarray) -> np.ndarray:
    """out[i] = index of the smallest of values[: i + 1] (the first one on ties)."""
    out = np.zeros(len(values), dtype=np.int64)
    for i in range(1, len(values)):
        out[i] = i if values[i] < values[out[i - 1]] else out[i - 1]
    return out


def phase_prior(sessions: Sequence[SessionRecord], boundaries: Sequence[str]) -> dict[str, float]:
    """Each boundary's mean position as a fraction of the recording, over `sessions`.

    Why: placing every boundary at its usual share of a new recording needs no model at all;
    on recordings with regular phase lengths it is hard to beat, so a session-level result is
    only worth its gap to this reference.
    """
    return {
        name: float(np.mean(fractions))
        for name in boundaries
        if (
            fractions := [s.boundaries[name] / s.duration for s in sessions if name in s.boundaries]
        )
    }


def session_errors(
    predicted: dict[str, dict[str, Any]], session: SessionRecord
) -> dict[str, float]:
    """|predicted - annotated| in seconds for each boundary the session annotates."""
    return {
        name: abs(found["time_s"] - session.boundaries[name])
        for name, found in predicted.items()
        if name in session.boundaries
    }


def session_metrics(errors: list[dict[str, float]]) -> dict[str, float]:
    """Session-level MAE over all (session, boundary) pairs and per boundary type."""
    flat = [(name, e) for per_session in errors for name, e in per_session.items()]
    if not flat:
        return {}
    names = [n for n, _ in flat]
    values = [e for _, e in flat]
    # Offsets 0 vs error/1 with unit "windows" give errors in seconds directly.
    return localization_metrics(values, [0.0] * len(values), [1.0] * len(values), names)


class TemporalLocalization:
    """`task: temporal` -- offset of a phase boundary inside a window, by regression."""

    name = "temporal"
    headline = HEADLINE
    lower_is_better = frozenset({"mae_s", "median_ae_s", "latency_s_per_window"})

    def check_data(self, config: RunConfig, run_dir: Path | None) -> dict[str, SessionReport]:
        paths = resolve_session_manifests(config.data.train, config.data.eval)
        if "train" not in paths:
            raise ValueError("data.train is not set: give a session manifest or builtin:sessions")
        return check_sessions(
            paths,
            window_s=config.temporal.window_s,
            boundaries=tuple(config.temporal.boundaries),
            on_bad_input=config.data.on_bad_input,
            rejected_path=run_dir / "rejected.jsonl" if run_dir else None,
        )

    def build_datasets(
        self,
        config: RunConfig,
        reports: dict[str, SessionReport],
        processor: ProcessorMixin,
        family: Family,
    ) -> dict[str, Dataset]:
        require_audio_lm(self.name, config, family)
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
                sessions,
                windows,
                processor,
                config.data.sampling_rate,
                cfg.transcript,
                cfg.audio,
                cfg.boundaries,
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
            lalm_trainable_extras(
                backbone,  # type: ignore[arg-type]
                family,
                config.adapter.train_projector,
                config.adapter.train_audio_encoder_fully,
            )
        regressor = OffsetRegressor(
            backbone, hidden_size_of(model), config.temporal.loss, config.temporal.boundaries
        )
        if isinstance(train_data, WindowDataset):
            regressor.init_prior(train_data.prior)
        device = next(model.parameters()).device
        regressor.head.to(device)
        install_spec_augment(regressor, config.data.spec_augment, family.audio_input_name)
        return regressor

    def collator(self, model: nn.Module, processor: ProcessorMixin, family: Family) -> Any:
        return WindowCollator(processor, _pad_id(processor))

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

    def save(self, model: nn.Module, out_dir: Path) -> None:
        assert isinstance(model, OffsetRegressor)
        model.save(out_dir)

    def load(self, base: nn.Module, adapter_dir: Path) -> nn.Module:
        return OffsetRegressor.from_pretrained(base, adapter_dir)
