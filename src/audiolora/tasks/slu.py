"""Spoken language understanding (seed 003): the audio LM answers a request with one line of JSON.

Generative SFT: the prompt is the utterance's audio (speech rows) or its transcript (text rows,
no audio at all) plus an instruction; the answer is `format_slu_json(scenario, action,
entities)`. Text is plentiful and speech is not, so a run trains on the text rows
(`slu.text_train`) plus a reproducible share of the speech pool (`slu.speech_fraction` of
`data.train`). Scores are SLURP's (`evaluation.slu_metrics`) on the generated text, so output
that is not valid JSON counts as wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset
from transformers import ProcessorMixin

from audiolora.data.audio import load_audio
from audiolora.data.manifest import Problem, apply_bad_input_policy, summarize_problems
from audiolora.data.slu import SluExample, read_slu_manifest
from audiolora.data.sources import resolve_slu_manifests
from audiolora.evaluation.metrics import perplexity
from audiolora.evaluation.slu_metrics import format_slu_json, slu_metrics
from audiolora.models.adapters import attach_adapters
from audiolora.models.families import AudioLanguageFamily, Family
from audiolora.models.lalm import PromptDataset, encode_example
from audiolora.settings import Section, StageConfig
from audiolora.tasks.base import PERPLEXITY, Metric, Task

if TYPE_CHECKING:
    from audiolora.config import RunConfig

SLU_INSTRUCTION = "Extract the scenario, action and entities of the request as JSON."


class SluConfig(Section):
    """Spoken language understanding (seed 003): the LALM answers with one line of JSON."""

    text_train: str | None = None
    """Text-only training manifest (rows without audio, e.g. `train_text.jsonl`); None with
    `data.train: builtin:slu` uses the builtin text rows, otherwise no text rows."""
    use_text: bool = True
    """Train on the text rows too (False: speech rows only)."""
    speech_fraction: float = Field(1.0, ge=0, le=1)
    """Share of the speech pool (`data.train`) used for training; 0 trains on text only."""
    fraction_seed: int = 0
    """Seed of the speech subset: fixed, so every scheme with the same fraction uses the same
    rows, and a smaller fraction's rows are a subset of a larger one's."""
    eval_input: Literal["speech", "text"] = "speech"
    """Held-out prompts from the audio, or from the transcript (the text-only upper bound)."""
    instruction: str = SLU_INSTRUCTION
    languages: list[str] | None = None
    """Keep only rows of these languages (every split); None keeps all."""
    text_languages: list[str] | None = None
    """Languages of the text rows used for training (None: `languages`). Cross-lingual: the
    target language's text."""
    speech_fraction_by_language: dict[str, float] = {}
    """Per-language share of the speech pool, overriding `speech_fraction` (cross-lingual:
    `{en: 1.0, de: 0.05}` -- all source speech, a little target speech)."""
    eval_languages: list[str] | None = None
    """Languages of the held-out rows (None: `languages`)."""
    scheme: Literal["custom", "text_only", "mixing", "curriculum"] = "custom"
    """The seed's schemes as ready-made schedules (used when the recipe has no `stages`):
    `text_only` -- text rows only, only LoRA trains (audio tower and projector frozen);
    `mixing` -- text rows + the speech fraction in every epoch;
    `curriculum` -- text-only epochs, then a last epoch of text + speech at
    `curriculum_lr_scale` x the learning rate. `custom`: the recipe as written."""
    curriculum_lr_scale: float = Field(0.6, gt=0)
    """Learning-rate factor of the curriculum's speech epoch (the seed: 3e-6 after 5e-6)."""
    span_matching: Literal["auto", "reference", "normalised"] = "auto"
    """How predicted entity values meet the gold ones in SLU-F1 and entity F1. `reference`: as
    SLURP's scorer (gold lower-cased, predictions as generated); `normalised`: both sides
    lower-cased with whitespace collapsed. `auto`: `reference` for data converted from SLURP
    (row ids `slurp-...`), so scores compare with published ones, else `normalised`."""


@dataclass
class SluReport:
    """One checked SLU manifest, in the shape `manifest.apply_bad_input_policy` takes.

    The "train" report of a run also carries the text rows (`text_rows`, from `slu.text_train`)
    so the run's splits stay "train" and "eval"; `rows` are always the rows of `data.train`
    (or `data.eval`), which is what `audiolora eval` scores.
    """

    path: Path
    rows: list[SluExample]
    problems: list[Problem]
    text_rows: list[SluExample] = field(default_factory=list)

    def summary(self) -> str:
        return summarize_problems(self.path, len(self.rows), self.problems)

    def rejected_records(self) -> Any:
        for p in self.problems:
            yield {"file": p.file, "line": p.line, "field": p.field, "reason": p.reason}


def select_languages(rows: Sequence[SluExample], languages: list[str] | None) -> list[SluExample]:
    """Rows of the wanted languages (all rows when `languages` is None)."""
    if languages is None:
        return list(rows)
    wanted = set(languages)
    return [row for row in rows if row.language in wanted]


def speech_subset(rows: Sequence[SluExample], fraction: float, seed: int) -> list[SluExample]:
    """`fraction` of `rows`, the same rows for the same seed whatever the manifest order.

    Rows are ranked by a hash of (seed, id) and the first `round(fraction * n)` kept (at least
    one when `fraction > 0`), so a smaller fraction's subset lies inside a larger one's: schemes
    that differ in their speech share differ only by the extra rows. Kept rows stay in manifest
    order.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if fraction == 0 or not rows:
        return []
    count = max(1, round(fraction * len(rows)))

    def rank(row: SluExample) -> str:
        return hashlib.sha256(f"{seed}:{row.id}".encode()).hexdigest()

    keep = {row.id for row in sorted(rows, key=rank)[:count]}
    return [row for row in rows if row.id in keep]


def slu_prompt(instruction: str, row: SluExample) -> str:
    """The instruction; a row without audio adds its transcript, the only thing to go on."""
    return instruction if row.has_audio else f"{instruction}\nUtterance: {row.text}"


def slu_answer(row: SluExample) -> str:
    return format_slu_json(row.scenario, row.action, row.entities)


class SluDataset(PromptDataset):
    """SLU rows as LALM examples: speech rows give audio segments, text rows a text-only prompt.

    `with_answer=False` gives prompts only, for generation.
    """

    def __init__(
        self,
        family: AudioLanguageFamily,
        rows: Sequence[SluExample],
        processor: ProcessorMixin,
        instruction: str,
        sampling_rate: int = 16000,
        with_answer: bool = True,
    ) -> None:
        self.family = family
        self.rows = list(rows)
        self.processor = processor
        self.instruction = instruction
        self.sampling_rate = sampling_rate
        self.with_answer = with_answer
        self.span_matching = "normalised"
        """How entity values are compared (see `slu.span_matching`)."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        segments = []
        if row.audio is not None:
            audio = load_audio(row.audio, self.sampling_rate)
            segments = self.family.split_audio(audio, self.sampling_rate)
        answer = slu_answer(row) if self.with_answer else None
        return encode_example(
            self.family,
            self.processor,
            segments,
            slu_prompt(self.instruction, row),
            answer,
            self.sampling_rate,
        )


def as_text(rows: Sequence[SluExample]) -> list[SluExample]:
    """The same rows without their audio: their prompt becomes the transcript."""
    return [dataclasses.replace(row, audio=None) for row in rows]


def training_rows(
    speech: Sequence[SluExample], text: Sequence[SluExample], cfg: SluConfig
) -> list[SluExample]:
    """Text rows (when used) plus the recipe's share of the speech pool, language-filtered;
    each language's share is drawn from that language's rows (nested across fractions)."""
    text_languages = cfg.text_languages or cfg.languages
    rows = as_text(select_languages(text, text_languages)) if cfg.use_text else []
    pool = select_languages(speech, cfg.languages)
    for language in sorted({row.language or "" for row in pool}):
        fraction = cfg.speech_fraction_by_language.get(language, cfg.speech_fraction)
        own = [row for row in pool if (row.language or "") == language]
        rows += speech_subset(own, fraction, cfg.fraction_seed)
    return rows


def evaluate_slu(
    model: nn.Module,
    processor: ProcessorMixin,
    dataset: SluDataset,
    *,
    batch_size: int = 8,
    num_beams: int = 1,
    max_new_tokens: int = 128,
    desc: str = "eval",
    progress: bool = True,
    span_matching: str = "normalised",
) -> dict[str, Any]:
    """Generate an answer per utterance and score it; perplexity of the reference answers."""
    hyps, nll, tokens, elapsed = dataset.family.timed_transcribe(
        model,
        processor,
        dataset,
        batch_size=batch_size,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        desc=desc,
        progress=progress,
    )
    metrics: dict[str, Any] = slu_metrics(
        hyps, list(dataset.rows), normalise_predictions=span_matching == "normalised"
    )
    metrics["perplexity"] = perplexity(nll, tokens)
    metrics["n"] = len(dataset)
    metrics["latency_s_per_utterance"] = elapsed / max(len(dataset), 1)
    metrics["examples"] = [
        {
            "audio": str(row.audio) if row.audio is not None else f"(text) {row.text}",
            "reference": slu_answer(row),
            "hypothesis": hyp,
        }
        for row, hyp in zip(dataset.rows, hyps, strict=True)
    ]
    return metrics


def span_matching(cfg: SluConfig, rows: Sequence[SluExample]) -> str:
    """`slu.span_matching`, with `auto` resolved: the reference scorer's exact behaviour for
    data converted from SLURP (ids `slurp-...`), the normalised comparison elsewhere."""
    if cfg.span_matching != "auto":
        return cfg.span_matching
    from_slurp = bool(rows) and all(row.id.startswith("slurp-") for row in rows)
    return "reference" if from_slurp else "normalised"


class SpokenLanguageUnderstanding(Task):
    """`task: slu` -- scenario, action and entities of a request as one line of JSON."""

    name = "slu"
    section = SluConfig
    needs_audio_lm = True
    full_finetuning = True
    metrics = (
        Metric("slu_f1", "SLU-F1", "{:.3f}", higher_is_better=True, curve=True),
        Metric("intent_acc", "Intent accuracy", "{:.1%}", higher_is_better=True, percent=True),
        Metric("entity_f1", "Entity F1 (exact)", "{:.3f}", higher_is_better=True),
        Metric("json_valid_rate", "Valid JSON", "{:.1%}", higher_is_better=True, percent=True),
        Metric("latency_s_per_utterance", "Latency / utterance (s)", "{:.3f}"),
        Metric("scenario_acc", "Scenario accuracy", "{:.1%}", True, headline=False),
        Metric("action_acc", "Action accuracy", "{:.1%}", True, headline=False),
        dataclasses.replace(PERPLEXITY, headline=False),
    )

    def stages(self, config: RunConfig) -> list[StageConfig]:
        """The seed's schemes as stages (none for `custom`)."""
        scheme = config.slu.scheme
        epochs = config.training.epochs
        if scheme == "text_only":
            return [StageConfig(name="text", set={"slu.speech_fraction": 0.0}, trainable=["lora_"])]
        if scheme == "mixing":
            return [StageConfig(name="mixed")]
        if scheme == "curriculum":
            if epochs < 2:
                raise ValueError(
                    f"slu.scheme=curriculum needs training.epochs >= 2 (text epochs, then a "
                    f"speech epoch), got {epochs:g}"
                )
            return [
                StageConfig(
                    name="text",
                    set={"slu.speech_fraction": 0.0, "training.epochs": epochs - 1},
                ),
                StageConfig(
                    name="speech",
                    set={
                        "training.epochs": 1,
                        "training.learning_rate": config.training.learning_rate
                        * config.slu.curriculum_lr_scale,
                    },
                ),
            ]
        return []

    def example_label(self, example: dict[str, Any]) -> str:
        audio = example["audio"]
        return audio if audio.startswith("(text)") else Path(audio).name

    def check_data(self, config: RunConfig, run_dir: Path | None) -> dict[str, SluReport]:
        paths = resolve_slu_manifests(config.data.train, config.data.eval, config.slu.text_train)
        if "train" not in paths:
            raise ValueError("data.train is not set: give an SLU manifest or builtin:slu")
        if not config.slu.use_text:
            paths.pop("train_text", None)
        reports: dict[str, SluReport] = {}
        for split, path in paths.items():
            rows, problems = read_slu_manifest(
                path,
                sampling_rate=config.data.sampling_rate,
                max_duration_s=config.data.max_duration_s,
            )
            reports[split] = SluReport(Path(path), rows, problems)
        apply_bad_input_policy(
            reports,
            config.data.on_bad_input,
            run_dir / "rejected.jsonl" if run_dir else None,
        )
        text = reports.pop("train_text", None)
        if text is not None:
            train = reports["train"]
            train.text_rows = text.rows
            train.problems = [*train.problems, *text.problems]
        return reports

    def build_datasets(
        self,
        config: RunConfig,
        reports: dict[str, SluReport],
        processor: ProcessorMixin,
        family: Family,
    ) -> dict[str, Dataset]:
        cfg = config.slu
        datasets: dict[str, Dataset] = {}
        for split, report in reports.items():
            if split == "train":
                rows = training_rows(report.rows, report.text_rows, cfg)
            else:
                rows = select_languages(report.rows, cfg.eval_languages or cfg.languages)
                if cfg.eval_input == "text":
                    rows = as_text(rows)
                if config.data.max_eval_samples:
                    rows = rows[: config.data.max_eval_samples]
            if not rows:
                raise ValueError(
                    f"no {split} rows left (slu.languages={cfg.languages}, "
                    f"slu.speech_fraction={cfg.speech_fraction}, slu.use_text={cfg.use_text})"
                )
            datasets[split] = SluDataset(
                family,  # type: ignore[arg-type]
                rows,
                processor,
                cfg.instruction,
                config.data.sampling_rate,
            )
            datasets[split].span_matching = span_matching(cfg, rows)
        return datasets

    def prepare_model(
        self,
        model: nn.Module,
        config: RunConfig,
        family: Family,
        total_steps: int,
        train_data: Dataset,
    ) -> nn.Module:
        return attach_adapters(model, config.adapter, family, total_steps)

    def collator(self, processor: ProcessorMixin, family: Family) -> Any:
        return family.transcription_collator(processor)

    def evaluate(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        assert isinstance(dataset, SluDataset)
        options.pop("family", None)
        with torch.no_grad():
            return evaluate_slu(
                model, processor, dataset, span_matching=dataset.span_matching, **options
            )

    def instruction(self, config: RunConfig) -> str:
        """`predict` on a file gives the JSON answer to the spoken request."""
        return config.slu.instruction
