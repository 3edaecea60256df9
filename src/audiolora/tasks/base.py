"""The Task protocol: what a training run needs from a task, and the registry by recipe name.

Why: the run (validate data, measure the base, attach adapters, train, measure, report) is the
same for every task; what differs is how rows become model inputs, what sits on top of the
backbone (nothing for speech-to-text, a regression head for temporal localization), how a
model is scored and what the headline numbers are. A task is one small class answering those
questions; `training.run` and `inference` never branch on the task's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from torch import nn
from torch.utils.data import Dataset
from transformers import ProcessorMixin

from audiolora.config import RunConfig
from audiolora.models.families import Family


class Task(Protocol):
    name: str
    headline: tuple[str, ...]
    """Metric keys shown in tables, curves and sweeps, most important first."""
    lower_is_better: frozenset[str]
    """Headline keys where smaller is better (for the report's "improved" marks and sweeps)."""

    def check_data(self, config: RunConfig, run_dir: Path | None) -> dict[str, Any]:
        """Validate every input before any model loads; split -> report with `.rows`,
        `.problems`. Applies `data.on_bad_input`; rejected rows go to `run_dir/rejected.jsonl`."""
        ...

    def build_datasets(
        self, config: RunConfig, reports: dict[str, Any], processor: ProcessorMixin, family: Family
    ) -> dict[str, Dataset]: ...

    def prepare_model(
        self,
        model: nn.Module,
        config: RunConfig,
        family: Family,
        total_steps: int,
        train_data: Dataset,
    ) -> nn.Module:
        """Adapters (and any head) on the frozen base; returns what the Trainer trains.
        `train_data` (the first stage's training set) serves data-dependent initialisation,
        such as the temporal head's per-boundary prior."""
        ...

    def collator(self, model: nn.Module, processor: ProcessorMixin, family: Family) -> Any: ...

    def base_metrics(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        """The reference the adapted model is compared with (the untouched base, or a trivial
        predictor where the base cannot answer at all)."""
        ...

    def evaluate(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]: ...

    def save(self, model: nn.Module, out_dir: Path) -> None:
        """Write the trained parts (adapter, head) so `load` can rebuild the model."""
        ...

    def load(self, base: nn.Module, adapter_dir: Path) -> nn.Module: ...


def require_audio_lm(task: str, config: RunConfig, family: Family) -> None:
    """Tasks that prompt with audio + text need an audio LM, not an encoder-decoder."""
    if family.kind != "lalm":
        raise ValueError(
            f"task {task} needs an audio LM (Qwen2-Audio class); '{config.model.name}' is a "
            f"{family.name} model"
        )


def get_task(name: str) -> Task:
    """The task a recipe names (`task: stt`)."""
    from audiolora.tasks.slu import SpokenLanguageUnderstanding
    from audiolora.tasks.stt import SpeechToText
    from audiolora.tasks.temporal import TemporalLocalization

    tasks: dict[str, Task] = {
        "stt": SpeechToText(),
        "temporal": TemporalLocalization(),
        "slu": SpokenLanguageUnderstanding(),
    }
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(tasks)}")
    return tasks[name]
