"""Speech-to-text: a transcript from audio, on any family (Whisper's decoder, or an audio LM's
chat answer to "Transcribe the audio."). The family builds the examples and decodes; this task
checks the data, attaches adapters, and scores WER / CER / BLEU / perplexity / latency.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.utils.data import Dataset
from transformers import ProcessorMixin

from audiolora.data.augment import install_spec_augment
from audiolora.data.manifest import ManifestReport, check_manifests
from audiolora.data.sources import resolve_manifests
from audiolora.evaluation.metrics import perplexity, transcription_metrics
from audiolora.models.adapters import attach_adapters
from audiolora.models.families import Family
from audiolora.models.lalm import STT_INSTRUCTION
from audiolora.models.speech_gate import install_speech_gate
from audiolora.tasks.base import PERPLEXITY, Metric, Task

if TYPE_CHECKING:
    from audiolora.config import RunConfig


def evaluate_transcription(
    family: Family,
    model: nn.Module,
    processor: ProcessorMixin,
    dataset: Any,
    *,
    batch_size: int = 8,
    num_beams: int = 1,
    max_new_tokens: int = 128,
    desc: str = "eval",
    progress: bool = True,
) -> dict[str, Any]:
    """WER/CER/BLEU on decoded text, perplexity on the references, latency per clip."""
    hyps, nll, tokens, elapsed = family.timed_transcribe(
        model,
        processor,
        dataset,
        batch_size=batch_size,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        desc=desc,
        progress=progress,
    )
    refs = [row.text or "" for row in dataset.rows]
    metrics: dict[str, Any] = transcription_metrics(hyps, refs)
    metrics["perplexity"] = perplexity(nll, tokens)
    metrics["n"] = len(refs)
    metrics["latency_s_per_clip"] = elapsed / max(len(refs), 1)
    metrics["examples"] = [
        {"audio": str(row.audio), "reference": ref, "hypothesis": hyp}
        for row, ref, hyp in zip(dataset.rows, refs, hyps, strict=True)
    ]
    return metrics


class SpeechToText(Task):
    """`task: stt` -- transcripts from audio."""

    name = "stt"
    full_finetuning = True
    metrics = (
        Metric("wer", "WER", "{:.1%}", percent=True, curve=True),
        Metric("cer", "CER", "{:.1%}", percent=True),
        Metric("bleu", "BLEU", "{:.1f}", higher_is_better=True),
        PERPLEXITY,
        Metric("latency_s_per_clip", "Latency / clip (s)", "{:.3f}"),
    )

    def check_data(self, config: RunConfig, run_dir: Path | None) -> dict[str, ManifestReport]:
        manifests = resolve_manifests(config.data.train, config.data.eval)
        if "train" not in manifests:
            raise ValueError(
                "data.train is not set: give a manifest, a saved dataset or builtin:speech"
            )
        return check_manifests(
            manifests,
            on_bad_input=config.data.on_bad_input,
            rejected_path=run_dir / "rejected.jsonl" if run_dir else None,
            sampling_rate=config.data.sampling_rate,
            max_duration_s=config.data.max_duration_s,
            progress=True,
        )

    def build_datasets(
        self,
        config: RunConfig,
        reports: dict[str, ManifestReport],
        processor: ProcessorMixin,
        family: Family,
    ) -> dict[str, Dataset]:
        datasets: dict[str, Dataset] = {}
        for split, report in reports.items():
            rows = report.rows
            if split == "eval" and config.data.max_eval_samples:
                rows = rows[: config.data.max_eval_samples]
            datasets[split] = family.transcription_dataset(
                rows, processor, config.data, STT_INSTRUCTION, config.adapter.speech_gate
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
        peft_model = attach_adapters(model, config.adapter, family, total_steps)
        install_spec_augment(peft_model, config.data.spec_augment, family.audio_input_name)
        if config.adapter.speech_gate:
            install_speech_gate(peft_model, family.audio_encoder_prefix)
        return peft_model

    def collator(self, processor: ProcessorMixin, family: Family) -> Any:
        return family.transcription_collator(processor)

    def evaluate(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        family = options.pop("family")
        return evaluate_transcription(family, model, processor, dataset, **options)

    def instruction(self, config: RunConfig) -> str:
        return STT_INSTRUCTION
