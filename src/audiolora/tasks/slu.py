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
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from transformers import ProcessorMixin

from audiolora.config import RunConfig, SluConfig
from audiolora.data.audio import load_audio
from audiolora.data.manifest import Problem, apply_bad_input_policy, summarize_problems
from audiolora.data.slu import SluExample, read_slu_manifest
from audiolora.data.sources import resolve_slu_manifests
from audiolora.evaluation.metrics import perplexity
from audiolora.evaluation.slu_metrics import format_slu_json, slu_metrics
from audiolora.models.families import Family
from audiolora.models.lalm import encode_example, split_audio
from audiolora.tasks.base import require_audio_lm
from audiolora.tasks.stt import PromptDataset, SpeechToText, timed_lalm_answers

HEADLINE = ("slu_f1", "intent_acc", "entity_f1", "json_valid_rate", "latency_s_per_utterance")


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
        rows: Sequence[SluExample],
        processor: ProcessorMixin,
        instruction: str,
        sampling_rate: int = 16000,
        with_answer: bool = True,
    ) -> None:
        self.rows = list(rows)
        self.processor = processor
        self.instruction = instruction
        self.sampling_rate = sampling_rate
        self.with_answer = with_answer

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        segments = []
        if row.audio is not None:
            segments = split_audio(load_audio(row.audio, self.sampling_rate), self.sampling_rate)
        answer = slu_answer(row) if self.with_answer else None
        return encode_example(
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
) -> dict[str, Any]:
    """Generate an answer per utterance and score it; perplexity of the reference answers."""
    hyps, nll, tokens, elapsed = timed_lalm_answers(
        model,
        processor,
        dataset,
        batch_size=batch_size,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        desc=desc,
        progress=progress,
    )
    metrics: dict[str, Any] = slu_metrics(hyps, list(dataset.rows))
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


class SpokenLanguageUnderstanding:
    """`task: slu` -- scenario, action and entities of a request as one line of JSON."""

    name = "slu"
    headline = HEADLINE
    lower_is_better = frozenset({"latency_s_per_utterance"})

    def __init__(self) -> None:
        # Adapters, collator and persistence are those of an audio LM transcribing speech.
        self._lalm = SpeechToText()

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
        require_audio_lm(self.name, config, family)
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
                rows, processor, cfg.instruction, config.data.sampling_rate
            )
        return datasets

    def prepare_model(
        self,
        model: nn.Module,
        config: RunConfig,
        family: Family,
        total_steps: int,
        train_data: Dataset,
    ) -> nn.Module:
        return self._lalm.prepare_model(model, config, family, total_steps, train_data)

    def collator(self, model: nn.Module, processor: ProcessorMixin, family: Family) -> Any:
        return self._lalm.collator(model, processor, family)

    def base_metrics(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        """The untouched base model, asked the same way (it may not know the JSON form)."""
        return self.evaluate(model, processor, dataset, **options)

    def evaluate(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        assert isinstance(dataset, SluDataset)
        with torch.no_grad():
            return evaluate_slu(model, processor, dataset, **options)

    def save(self, model: nn.Module, out_dir: Path) -> None:
        self._lalm.save(model, out_dir)

    def load(self, base: nn.Module, adapter_dir: Path) -> nn.Module:
        return self._lalm.load(base, adapter_dir)
