"""Windows of sessions as audio-LM prompts with an offset target, and their scoring.

Training examples are windows of `temporal.window_s` seconds around annotated boundaries
(`data.windows.sample_windows`: the boundary at a uniform random offset, target exact), plus
"outside" windows whose target is 0 (the boundary lies before the window) or 1 (after it). The
prompt is the window's audio (split into segments the encoder takes) followed by the task
sentence naming the boundary and, optionally, the transcript words inside the window.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import ProcessorMixin

from audiolora.data.audio import load_audio
from audiolora.data.sessions import BOUNDARIES, SessionRecord
from audiolora.data.windows import (
    Window,
    answer_format,
    sample_windows,
    short_question,
    window_prompt,
    window_words,
)
from audiolora.evaluation.temporal_metrics import localization_metrics
from audiolora.models.families import AudioLanguageFamily
from audiolora.models.heads.regression import OffsetRegressor
from audiolora.models.lalm import LalmCollator, encode_example, encode_example_over
from audiolora.models.shared_prefix import shared_prefix_last_states
from audiolora.tasks.temporal.config import TemporalConfig
from audiolora.tasks.temporal.parallel import spread


def window_instruction(window: Window, transcript: bool, question_last: bool = False) -> str:
    """The task sentence and the words heard in the window (when the recipe wants them): the
    sentence first, or with `question_last` the answer format, the words, then the boundary
    question, so the six questions of a window differ only in their last dozen tokens."""
    question = window_prompt(window.boundary, window_s=window.length)
    if not transcript:
        return question
    words = "Transcript: " + (" ".join(window.words) if window.words else "(no speech)")
    if question_last:
        return f"{answer_format(window.length)}\n{words}\n{short_question(window.boundary)}"
    return f"{question}\n{words}"


class WindowDataset(Dataset):
    """Windows of sessions as LALM prompts with an offset target; audio read per item.

    `audio=False` gives text-only prompts (the transcript alone, no audio segments). Each item's
    `boundary_index` is its boundary's position in `boundaries`, the head's output order."""

    def __init__(
        self,
        family: AudioLanguageFamily,
        sessions: Sequence[SessionRecord],
        windows: Sequence[Window],
        processor: ProcessorMixin,
        sampling_rate: int = 16000,
        transcript: bool = True,
        audio: bool = True,
        boundaries: Sequence[str] = BOUNDARIES,
        question_last: bool = False,
    ) -> None:
        self.family = family
        self.sessions = list(sessions)
        self.windows = list(windows)
        self.processor = processor
        self.sampling_rate = sampling_rate
        self.transcript = transcript
        self.audio = audio
        self.boundaries = list(boundaries)
        self.question_last = question_last
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
            segments = self.family.split_audio(audio, self.sampling_rate)
        example = encode_example(
            self.family,
            self.processor,
            segments,
            window_instruction(window, self.transcript, self.question_last),
            None,
            self.sampling_rate,
        )
        return self._with_target(example, window)

    def same_window_items(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """`[self[i] for i in indices]` for windows over the same stretch of the same session
        (one question per boundary): the audio read and featurized once for all of them."""
        first = self.windows[indices[0]]
        for index in indices[1:]:
            window = self.windows[index]
            if (window.session, window.start, window.length) != (
                first.session,
                first.start,
                first.length,
            ):
                raise ValueError(f"window {index} covers other audio than window {indices[0]}")
        items = [self[indices[0]]]

        def over_first(window: Window) -> dict[str, Any]:
            instruction = window_instruction(window, self.transcript, self.question_last)
            example = encode_example_over(self.family, self.processor, items[0], instruction, None)
            return self._with_target(example, window)

        # A tokenizer that adds tokens of its own around the prompt would differ: read anew.
        if not torch.equal(over_first(first)["input_ids"], items[0]["input_ids"]):
            return items + [self[index] for index in indices[1:]]
        return items + [over_first(self.windows[index]) for index in indices[1:]]

    def _with_target(self, example: dict[str, Any], window: Window) -> dict[str, Any]:
        example["targets"] = torch.tensor(window.offset, dtype=torch.float32)
        example["boundary_index"] = torch.tensor(self.boundaries.index(window.boundary))
        return example


class WindowCollator:
    """`LalmCollator` for the prompts plus the stacked offset targets and boundary indices."""

    STACKED = ("targets", "boundary_index")

    def __init__(self, family: AudioLanguageFamily, processor: ProcessorMixin) -> None:
        self.prompts = LalmCollator(family, processor, padding_side="right")

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
            if name not in session.boundaries:
                continue  # absent from this recording
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
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=WindowCollator(dataset.family, dataset.processor),
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


@torch.no_grad()
def predict_offsets_shared(
    model: OffsetRegressor,
    dataset: WindowDataset,
    *,
    group: int,
    desc: str = "windows",
    progress: bool = True,
    workers: int = 1,
) -> list[float]:
    """`predict_offsets` for a dataset whose items come in runs of `group` prompts over the
    same audio (one window, one question per boundary): each run's common beginning, audio
    included, goes through the model once (`shared_prefix_last_states`). Same numbers."""
    return predict_offsets_shared_many(
        model, [dataset], group=group, desc=desc, progress=progress, workers=workers
    )[0]


@torch.no_grad()
def predict_offsets_shared_many(
    model: OffsetRegressor,
    datasets: Sequence[WindowDataset],
    *,
    group: int,
    desc: str = "windows",
    progress: bool = True,
    workers: int = 1,
) -> list[list[float]]:
    """`predict_offsets_shared` for each of `datasets` (e.g. the windows of several
    recordings), their runs spread over `workers` forked single-thread processes as one list
    (`parallel.spread`), so the processes come out even across recordings."""
    for dataset in datasets:
        if len(dataset) % group:
            raise ValueError(f"{len(dataset)} windows do not come in runs of {group}")
    runs = [(dataset, first) for dataset in datasets for first in range(0, len(dataset), group)]
    was_training = model.training
    model.eval()

    @torch.no_grad()
    def offsets_of(start: int, stop: int) -> list[float]:
        offsets: list[float] = []
        shown = progress and workers <= 1  # else `spread` shows the bar
        for dataset, first in tqdm(runs[start:stop], desc=desc, leave=False, disable=not shown):
            items = dataset.same_window_items(range(first, first + group))
            audio_token_id = dataset.family.audio_token_id(dataset.processor)
            states = shared_prefix_last_states(
                dataset.family, model.backbone, items, audio_token_id
            )
            which = torch.stack([it["boundary_index"] for it in items])
            offsets += [float(x) for x in model.offsets_from_states(states, which).float().cpu()]
        return offsets

    flat = spread(offsets_of, len(runs), workers, desc=desc, progress=progress)
    if was_training:
        model.train()
    ends = np.cumsum([len(dataset) for dataset in datasets])
    return [flat[end - len(dataset) : end] for dataset, end in zip(datasets, ends, strict=True)]


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
            "label": f"{Path(dataset.sessions[w.session].audio).name} · {w.boundary} · window "
            f"at {round(w.start, 2)} s",
            "boundary": w.boundary,
            "window_start_s": round(w.start, 2),
            "reference": f"{w.boundary_time:.1f} s",
            "hypothesis": f"{w.start + p * w.length:.1f} s",
        }
        for w, p in zip(windows, predictions, strict=True)
    ]
    return metrics
