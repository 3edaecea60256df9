"""The Task interface: everything a run, the report, sweeps and the CLI need to know of a task.

Why: the run (validate data, measure the reference, attach adapters, train, measure, report) is
the same for every task; what differs is how rows become model inputs, what sits on top of the
backbone (nothing for speech-to-text, a regression head for temporal localization), how a model
is scored, which numbers are the headline and which way they should move. A task declares those
here, once: its config section, its metrics, its ready-made schedules, what `predict` prints.
`training.run`, `inference`, `reporting`, `sweep` and `cli` read only these declarations, so they
never branch on a task's name. Tasks are registered in `audiolora.tasks.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel
from torch import nn
from torch.utils.data import Dataset
from transformers import ProcessorMixin

from audiolora.models.families import AudioLanguageFamily, Family
from audiolora.models.loading import load_full_finetune
from audiolora.settings import StageConfig

if TYPE_CHECKING:
    from audiolora.config import RunConfig


@dataclass(frozen=True)
class Metric:
    """One number a task reports: how to label and format it, and which way is better."""

    key: str
    label: str
    fmt: str = "{:.3f}"
    higher_is_better: bool = False
    headline: bool = True
    """Shown in tables, curves and sweeps (the first headline metric leads everywhere)."""
    percent: bool = False
    """A fraction that sweep tables show as a percentage."""
    curve: bool = False
    """Drawn as a held-out curve over training in the report."""

    @property
    def better(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    def format(self, value: Any) -> str:
        if value is None:
            return "—"
        return self.fmt.format(value) if isinstance(value, int | float) else str(value)


@dataclass(frozen=True)
class Breakdown:
    """Figures per category (`P1_start/mae_s`, ...) that the report tabulates and sweeps show."""

    title: str
    """Report heading, e.g. "Per boundary type"."""
    column: str
    """Name of the category column, e.g. "boundary"."""
    metric: str
    """The per-category metric compared reference vs adapted (a key of the task's metrics)."""
    extra: str | None = None
    """A second per-category metric shown for the adapted model only."""
    count: str = "count"
    """Per-category count of scored items."""


PERPLEXITY = Metric("perplexity", "Perplexity", "{:.3f}", curve=True)


class Task:
    """Base of every task; subclasses fill in the declarations and the data/model/score steps."""

    name: ClassVar[str]
    section: ClassVar[type[BaseModel] | None] = None
    """The task's recipe section (`temporal:`), a pydantic model, or None."""
    metrics: ClassVar[tuple[Metric, ...]] = ()
    breakdown: ClassVar[Breakdown | None] = None
    needs_audio_lm: ClassVar[bool] = False
    """True for tasks that prompt with audio + text (they refuse an encoder-decoder)."""
    full_finetuning: ClassVar[bool] = False
    """Whether `adapter.method: full` is supported (the saved model is then a whole folder)."""
    contrastive: ClassVar[bool] = False
    """True for tasks on audio-text embedding models (CLAP); the others refuse those models."""

    # ---- declarations read by the report, sweeps and the CLI -----------------------------------

    @property
    def headline(self) -> tuple[str, ...]:
        """Metric keys shown in tables, curves and sweeps, most important first."""
        return tuple(m.key for m in self.metrics if m.headline)

    @property
    def lower_is_better(self) -> frozenset[str]:
        return frozenset(m.key for m in self.metrics if not m.higher_is_better)

    def metric(self, key: str) -> Metric:
        """The declaration of `key`; a per-category key (`P1_start/mae_s`) takes its metric's."""
        by_key = {m.key: m for m in self.metrics}
        name = key.rsplit("/", 1)[-1].removesuffix(" before training")
        return by_key.get(name, Metric(key, key, "{}"))

    def stages(self, config: RunConfig) -> list[StageConfig]:
        """Ready-made stages a task setting stands for (SLU's schemes); used when the recipe
        lists no `stages` of its own."""
        return []

    def head_learning_rate(self, config: RunConfig) -> float | None:
        """A learning rate of the task's head different from the adapters' (None: the same)."""
        return None

    def reference_note(self, base_details: dict[str, Any]) -> str | None:
        """One sentence about a further reference in the base details, or None."""
        return None

    def example_label(self, example: dict[str, Any]) -> str:
        """How the report names a held-out example (the clip's file name by default)."""
        return Path(example["audio"]).name

    def check_family(self, family: Family, model_name: str) -> None:
        if family.contrastive != self.contrastive:
            kind = "an audio-text embedding model (CLAP)" if family.contrastive else "a model"
            want = "needs a contrastive model" if self.contrastive else "needs a generative one"
            raise ValueError(
                f"task {self.name} {want}; '{model_name}' is {kind} of family {family.name}"
            )
        if self.needs_audio_lm and not isinstance(family, AudioLanguageFamily):
            raise ValueError(
                f"task {self.name} needs an audio LM (Qwen2-Audio, Qwen2.5-Omni); "
                f"'{model_name}' is a {family.name} model"
            )

    # ---- the steps of a run --------------------------------------------------------------------

    def check_data(self, config: RunConfig, run_dir: Path | None) -> dict[str, Any]:
        """Validate every input before any model loads; split -> report with `.rows`,
        `.problems`. Applies `data.on_bad_input`; rejected rows go to `run_dir/rejected.jsonl`."""
        raise NotImplementedError

    def build_datasets(
        self, config: RunConfig, reports: dict[str, Any], processor: ProcessorMixin, family: Family
    ) -> dict[str, Dataset]:
        raise NotImplementedError

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
        raise NotImplementedError

    def collator(self, processor: ProcessorMixin, family: Family) -> Any:
        raise NotImplementedError

    def calibration_forward(self, model: nn.Module, batch: dict[str, Any], family: Family) -> Any:
        """One forward of the bare base model on a training batch, for measurements made before
        adapters attach (entropy-aware rank allocation)."""
        return model(**batch)

    def base_metrics(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        """The reference the adapted model is compared with (the untouched base by default; a
        trivial predictor where the base cannot answer at all). `options` hold the decoding
        settings and the run's `family`."""
        return self.evaluate(model, processor, dataset, **options)

    def evaluate(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, model: nn.Module, out_dir: Path) -> None:
        """Write the trained parts (adapter, head) so `load` can rebuild the model."""
        model.save_pretrained(str(out_dir))

    def load(self, base: nn.Module, adapter_dir: Path, family: Family) -> nn.Module:
        from peft import PeftModel

        if (Path(adapter_dir) / "config.json").exists():  # adapter.method=full: a whole model
            return load_full_finetune(base, Path(adapter_dir), family)
        if not (Path(adapter_dir) / "adapter_config.json").exists():
            raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json (did training finish?)")
        return PeftModel.from_pretrained(base, str(adapter_dir))

    # ---- predict -------------------------------------------------------------------------------

    def instruction(self, config: RunConfig) -> str | None:
        """What the model is asked about a whole audio file in `predict` (None: the task does
        not answer single files)."""
        return None

    def predict_files(
        self,
        model: nn.Module,
        processor: ProcessorMixin,
        family: Family,
        config: RunConfig,
        audio_paths: list[Path],
        batch_size: int,
    ) -> list[str]:
        """One answer per audio file (what `audiolora predict RUN FILES` prints), decoded as
        the run decodes."""
        instruction = self.instruction(config)
        if instruction is None:
            raise ValueError(f"a {self.name} run does not answer single audio files")
        return family.answer_files(
            model,
            processor,
            audio_paths,
            sampling_rate=config.data.sampling_rate,
            instruction=instruction,
            batch_size=batch_size,
            num_beams=config.training.num_beams,
            max_new_tokens=config.training.max_new_tokens,
            trim_context=config.data.trim_context(),
        )

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
        """Whole recordings of a session manifest (`audiolora predict RUN --sessions M`): a
        result with `.table` (title, header, rows), `.lines` and `.files` for the CLI to show.
        `hop_s`, `min_phase_s`, `fill_in`: None takes the run's setting; `workers`: CPU
        processes (None: one per core)."""
        raise ValueError(f"a {self.name} run does not search whole sessions (--sessions)")
