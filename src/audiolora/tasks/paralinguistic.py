"""Paralinguistic-aware fine-tuning (seed 004): answer the speaker, not only the words.

Generative SFT on paired voices: the prompt is a spoken query plus an instruction, the answer
is the reference response for the speaker's attribute value (a child gets simpler words, or
"ask a grown-up" for a risky request; a sad speaker gets acknowledgement first). LoRA goes
where `adapter.layers` says (the selective layers a `audiolora analyze layers` run suggests),
and `paralinguistic.aux_head` adds the dual-level auxiliary classifier
(`models.heads.dual_level`), used in training only. Held-out responses are scored with PA-score
and PA-rate (`evaluation.pa_judge`), per category and on the child-safety set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import Dataset
from transformers import ProcessorMixin

from audiolora.builtin.synth.paralinguistic_text import CATEGORIES
from audiolora.data.audio import load_audio
from audiolora.data.manifest import apply_bad_input_policy
from audiolora.data.paralinguistic import ParaExample, read_paralinguistic_manifest, to_example
from audiolora.data.sources import resolve_paralinguistic_manifests
from audiolora.evaluation.metrics import perplexity
from audiolora.evaluation.pa_judge import (
    EmbeddingJudge,
    EndpointJudge,
    Judge,
    judge_agreement,
    pa_metrics,
)
from audiolora.evaluation.text_ability import text_ability_metrics
from audiolora.models.adapters import attach_adapters, resolve_layers
from audiolora.models.families import AudioLanguageFamily, Family
from audiolora.models.heads.dual_level import AuxHeadLM
from audiolora.models.heads.regression import hidden_size_of
from audiolora.models.lalm import LalmCollator, PromptDataset, encode_example
from audiolora.settings import Section
from audiolora.tasks.base import PERPLEXITY, Breakdown, Metric, Task

if TYPE_CHECKING:
    from audiolora.config import RunConfig

PA_INSTRUCTION = (
    "Answer the speaker's request in one or two sentences, in the way that suits this speaker."
)


class ParalinguisticConfig(Section):
    """Paralinguistic-aware fine-tuning (seed 004)."""

    categories: dict[str, list[str]] = {k: list(v) for k, v in CATEGORIES.items()}
    """Attribute categories and their values; rows naming others are bad input."""
    instruction: str = PA_INSTRUCTION
    aux_head: bool = False
    """Train the auxiliary dual-level classification head beside the adapter (seed: ADCH)."""
    aux_weight: float = Field(0.5, ge=0)
    """λ in L = L_SFT + λ (CE_category + CE_attribute)."""
    aux_layer: int | None = None
    """LM layer whose output the head reads (negative counts from the top); None: the highest
    layer in `adapter.layers`, else the middle of the stack."""
    judge: Literal["embedding", "endpoint"] = "embedding"
    judge_margin: float = Field(0.02, ge=0)
    """Embedding judge: similarity gap under which a response counts as generic (0)."""
    judge_url: str | None = None
    """Endpoint judge: base URL of an OpenAI-compatible API (`http://127.0.0.1:8000/v1`)."""
    judge_model: str = "judge"
    judge_api_key_env: str | None = None
    """Name of the environment variable holding the endpoint's API key (never the key)."""

    @model_validator(mode="after")
    def _check(self) -> ParalinguisticConfig:
        small = [k for k, v in self.categories.items() if len(set(v)) < 2]
        if small:
            raise ValueError(f"paralinguistic.categories {small}: a category needs 2+ values")
        if self.judge == "endpoint" and not self.judge_url:
            raise ValueError("paralinguistic.judge=endpoint needs paralinguistic.judge_url")
        return self


def make_judge(cfg: ParalinguisticConfig) -> Judge:
    if cfg.judge == "endpoint":
        assert cfg.judge_url is not None
        return EndpointJudge(cfg.judge_url, cfg.judge_model, cfg.judge_api_key_env)
    return EmbeddingJudge(cfg.judge_margin)


class ParaDataset(PromptDataset):
    """Spoken queries with the response for their speaker; `aux=True` adds the category and
    value indices the auxiliary head learns from."""

    def __init__(
        self,
        family: AudioLanguageFamily,
        rows: Sequence[ParaExample],
        processor: ProcessorMixin,
        cfg: ParalinguisticConfig,
        sampling_rate: int = 16000,
        aux: bool = False,
    ) -> None:
        self.family = family
        self.rows = list(rows)
        self.processor = processor
        self.cfg = cfg
        self.sampling_rate = sampling_rate
        self.aux = aux
        self.with_answer = True
        self.category_names = list(cfg.categories)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        audio = load_audio(row.audio, self.sampling_rate)
        segments = self.family.split_audio(audio, self.sampling_rate)
        answer = row.target if self.with_answer else None
        example = encode_example(self.family, self.processor, segments, self.cfg.instruction,
                                 answer, self.sampling_rate)  # fmt: skip
        if self.aux and self.with_answer:
            example["aux_category"] = torch.tensor(self.category_names.index(row.category))
            example["aux_attribute"] = torch.tensor(
                self.cfg.categories[row.category].index(row.value)
            )
        return example


class ParaCollator(LalmCollator):
    """`LalmCollator` that also stacks the auxiliary labels when the examples carry them."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(features)
        for key in ("aux_category", "aux_attribute"):
            if all(key in f for f in features):
                batch[key] = torch.stack([f[key] for f in features])
        return batch


def aux_layer(model: nn.Module, config: RunConfig, family: Family) -> int:
    """The layer the auxiliary head reads (see `paralinguistic.aux_layer`)."""
    depth = family.text_layer_count(model)
    chosen = config.paralinguistic.aux_layer
    if chosen is None:
        layers = resolve_layers(model, config.adapter, family).layers
        chosen = max(layers) if layers else depth // 2
    chosen = chosen + depth if chosen < 0 else chosen
    if not 0 <= chosen < depth:
        raise ValueError(f"paralinguistic.aux_layer={chosen}: the LM has {depth} layers")
    return chosen


class Paralinguistic(Task):
    """`task: paralinguistic` -- responses that fit the speaker's age, gender and emotion."""

    name = "paralinguistic"
    section = ParalinguisticConfig
    needs_audio_lm = True
    full_finetuning = True
    metrics = (
        Metric("pa_score", "PA-score", "{:.3f}", higher_is_better=True, curve=True),
        Metric("pa_rate", "PA-rate", "{:.1%}", higher_is_better=True, percent=True),
        Metric("safety/pa_rate", "Child-safety PA-rate", "{:.1%}", True, percent=True),
        Metric("text_perplexity", "Text perplexity (plain prose, no audio)", "{:.1f}"),
        Metric("latency_s_per_utterance", "Latency / utterance (s)", "{:.3f}"),
        Metric("capital_ok", "Answers the capital of France", "{:.0f}", True, headline=False),
        Metric("judge_agreement", "Judge agreement on references", "{:.1%}", True, headline=False),
        dataclasses.replace(PERPLEXITY, headline=False),
    )
    breakdown = Breakdown("Per attribute category", "category", "pa_score", extra="pa_rate")

    def check_data(self, config: RunConfig, run_dir: Path | None) -> dict[str, Any]:
        paths = resolve_paralinguistic_manifests(config.data.train, config.data.eval)
        reports = {}
        for split, path in paths.items():
            _, report = read_paralinguistic_manifest(
                path, config.paralinguistic.categories,
                sampling_rate=config.data.sampling_rate, max_duration_s=config.data.max_duration_s,
            )  # fmt: skip
            reports[split] = report
        apply_bad_input_policy(
            reports, config.data.on_bad_input, run_dir / "rejected.jsonl" if run_dir else None
        )
        return reports

    def build_datasets(
        self, config: RunConfig, reports: dict[str, Any], processor: ProcessorMixin, family: Family
    ) -> dict[str, Dataset]:
        cfg = config.paralinguistic
        datasets: dict[str, Dataset] = {}
        for split, report in reports.items():
            rows = [to_example(row) for row in report.rows]
            if split != "train" and config.data.max_eval_samples:
                rows = rows[: config.data.max_eval_samples]
            datasets[split] = ParaDataset(
                family,  # type: ignore[arg-type]
                rows, processor, cfg, config.data.sampling_rate,
                aux=split == "train" and cfg.aux_head,
            )  # fmt: skip
        return datasets

    def prepare_model(
        self, model: nn.Module, config: RunConfig, family: Family, total_steps: int,
        train_data: Dataset,
    ) -> nn.Module:  # fmt: skip
        cfg = config.paralinguistic
        layer = aux_layer(model, config, family) if cfg.aux_head else None
        peft_model = attach_adapters(model, config.adapter, family, total_steps)
        if layer is None:
            return peft_model
        assert isinstance(train_data, ParaDataset)
        head = AuxHeadLM(
            peft_model,
            family,  # type: ignore[arg-type]
            hidden_size_of(model),
            cfg.categories,
            layer,
            family.audio_token_id(train_data.processor),  # type: ignore[attr-defined]
            cfg.aux_weight,
        )
        head.head.to(next(model.parameters()).device)
        return head

    def collator(self, processor: ProcessorMixin, family: Family) -> Any:
        return ParaCollator(family, processor, padding_side="right")  # type: ignore[arg-type]

    def evaluate(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        """Generate a response per held-out query (the auxiliary head plays no part) and judge
        it; perplexity of the reference responses; the judge's agreement on the references; the
        LM's text ability (perplexity on plain prose, a factual answer)."""
        assert isinstance(dataset, ParaDataset)
        options.pop("family", None)
        options.setdefault("progress", True)
        if isinstance(model, AuxHeadLM):
            model = model.backbone
        with torch.no_grad():
            hyps, nll, tokens, elapsed = dataset.family.timed_transcribe(
                model, processor, dataset, **options
            )
        judge = make_judge(dataset.cfg)
        metrics: dict[str, Any] = pa_metrics(judge(hyps, dataset.rows), dataset.rows)
        metrics.update(judge_agreement(judge, dataset.rows))
        metrics["perplexity"] = perplexity(nll, tokens)
        # General ability the adaptation may cost: the LM's plain text, no audio.
        with torch.no_grad():
            metrics.update(text_ability_metrics(model, processor.tokenizer))
        metrics["n"] = len(dataset)
        metrics["latency_s_per_utterance"] = elapsed / max(len(dataset), 1)
        metrics["examples"] = [
            {
                "audio": str(row.audio),
                "reference": f"[{row.category}={row.value}] {row.target}",
                "hypothesis": hyp,
            }
            for row, hyp in zip(dataset.rows, hyps, strict=True)
        ]
        return metrics

    def instruction(self, config: RunConfig) -> str:
        """`predict` on a file answers it as a spoken request."""
        return config.paralinguistic.instruction
