"""Speech-to-text: manifest rows -> log-mel features + label tokens, and the evaluation loop.

Features come from the model's own feature extractor (log-mel with the normalisation the model
was trained with; Whisper scales log-mel to about [-1, 1] itself, so no second per-utterance
normalisation is applied). Label sequences are padded per batch (dynamic padding); Whisper's
encoder needs exactly 30 s of frames, so audio is padded to that by the extractor.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import ProcessorMixin

from audiolora.config import DataConfig, RunConfig
from audiolora.data.audio import load_audio
from audiolora.data.augment import install_spec_augment
from audiolora.data.manifest import ManifestReport, ManifestRow, check_manifests
from audiolora.data.sources import resolve_manifests
from audiolora.evaluation.metrics import perplexity, transcription_metrics
from audiolora.models.adapters import attach_adapters, lalm_trainable_extras
from audiolora.models.families import Family
from audiolora.models.lalm import (
    IGNORE_INDEX,
    LalmCollator,
    encode_example,
    generate_text,
    split_audio,
)
from audiolora.precision import full_precision


class SpeechTextDataset(Dataset):
    """Lazily decodes each clip, so memory stays flat however long the manifest is."""

    def __init__(
        self,
        rows: list[ManifestRow],
        processor: ProcessorMixin,
        sampling_rate: int = 16000,
        max_label_tokens: int = 200,
    ) -> None:
        self.rows = rows
        self.processor = processor
        self.sampling_rate = sampling_rate
        self.max_label_tokens = max_label_tokens
        # Clip lengths in seconds drive length-grouped batching without decoding anything.
        self.lengths = [row.audio_seconds for row in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def features(self, audio: np.ndarray) -> np.ndarray:
        with full_precision():
            extracted = self.processor.feature_extractor(
                audio, sampling_rate=self.sampling_rate, return_tensors="np"
            )
        return extracted["input_features"][0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        audio = load_audio(row.audio, self.sampling_rate, row.offset, row.duration)
        item: dict[str, Any] = {"input_features": self.features(audio)}
        if row.text is not None:
            ids = self.processor.tokenizer(row.text).input_ids[: self.max_label_tokens]
            item["labels"] = ids
        return item


STT_INSTRUCTION = "Transcribe the audio."


class PromptDataset(Dataset):
    """Rows as `encode_example` items for an audio LM: with their answers for training and
    scoring, or (`prompts_only`) without them for generation. Subclasses set `rows` and
    `with_answer` and build one item per row."""

    rows: list[Any]
    with_answer: bool

    def __len__(self) -> int:
        return len(self.rows)

    def prompts_only(self) -> PromptDataset:
        """The same dataset giving prompts only (what `lalm_transcribe` decodes from)."""
        prompts = copy.copy(self)
        prompts.with_answer = False
        return prompts


class LalmSpeechTextDataset(PromptDataset):
    """Speech-to-text for an audio LM: the clip (split into <= 30 s segments) plus an
    instruction in the chat template; the transcript is the assistant's answer.

    `with_answer=False` gives prompts only, for generation.
    """

    def __init__(
        self,
        rows: list[ManifestRow],
        processor: ProcessorMixin,
        sampling_rate: int = 16000,
        instruction: str = STT_INSTRUCTION,
        with_answer: bool = True,
    ) -> None:
        self.rows = rows
        self.processor = processor
        self.sampling_rate = sampling_rate
        self.instruction = instruction
        self.with_answer = with_answer
        self.lengths = [row.audio_seconds for row in rows]

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        audio = load_audio(row.audio, self.sampling_rate, row.offset, row.duration)
        answer = row.text if self.with_answer else None
        segments = split_audio(audio, self.sampling_rate)
        return encode_example(
            self.processor, segments, self.instruction, answer, self.sampling_rate
        )


def build_stt_dataset(
    family: Family, rows: list[ManifestRow], processor: ProcessorMixin, data: DataConfig
) -> SpeechTextDataset | LalmSpeechTextDataset:
    """The dataset class that turns manifest rows into this family's model inputs."""
    if family.kind == "lalm":
        return LalmSpeechTextDataset(rows, processor, data.sampling_rate)
    return SpeechTextDataset(rows, processor, data.sampling_rate, data.max_label_tokens)


def build_stt_collator(family: Family, model: torch.nn.Module, processor: ProcessorMixin) -> Any:
    if family.kind == "lalm":
        return LalmCollator(processor, pad_token_id(processor), padding_side="right")
    return SpeechCollator(model.config.decoder_start_token_id)


def pad_token_id(processor: ProcessorMixin) -> int:
    tokenizer = processor.tokenizer
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@dataclass
class SpeechCollator:
    """Stacks features and pads labels to the longest in the batch with -100."""

    decoder_start_token_id: int

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {"input_features": torch.tensor(np.stack([it["input_features"] for it in items]))}
        if "labels" in items[0]:
            # The model prepends the decoder start token itself when shifting labels right.
            seqs = [
                it["labels"][1:] if it["labels"][0] == self.decoder_start_token_id else it["labels"]
                for it in items
            ]
            width = max(len(s) for s in seqs)
            labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
            for i, s in enumerate(seqs):
                labels[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            batch["labels"] = labels
        return batch


def model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype that audio features must be cast to before a forward."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


@torch.no_grad()
def transcribe_batches(
    model: torch.nn.Module,
    processor: ProcessorMixin,
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    num_beams: int = 1,
    max_new_tokens: int = 128,
) -> tuple[list[str], float, int]:
    """Greedy/beam decode every batch. Returns texts, summed label NLL and label token count."""
    device, dtype = model_device_dtype(model)
    texts: list[str] = []
    nll, tokens = 0.0, 0
    for batch in batches:
        features = batch["input_features"].to(device=device, dtype=dtype)
        if "labels" in batch:
            labels = batch["labels"].to(device)
            logits = model(input_features=features, labels=labels).logits.float()
            nll += torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="sum"
            ).item()
            tokens += int((labels != IGNORE_INDEX).sum())
        generated = model.generate(
            input_features=features, num_beams=num_beams, max_new_tokens=max_new_tokens
        )
        texts.extend(processor.batch_decode(generated, skip_special_tokens=True))
    return [t.strip() for t in texts], nll, tokens


def cast_features(batch: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Audio features in the model's dtype; a text-only batch has none and passes unchanged."""
    if "input_features" in batch:
        batch["input_features"] = batch["input_features"].to(dtype)
    return batch


@torch.no_grad()
def lalm_transcribe(
    model: torch.nn.Module,
    processor: ProcessorMixin,
    dataset: PromptDataset,
    *,
    batch_size: int,
    num_beams: int,
    max_new_tokens: int,
    desc: str,
    progress: bool,
) -> tuple[list[str], float, int]:
    """Perplexity of the reference answers (teacher forcing), then generation from the prompts."""
    device, dtype = model_device_dtype(model)
    pad = pad_token_id(processor)
    nll, tokens = 0.0, 0
    scoring = DataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=LalmCollator(processor, pad, padding_side="right"),
    )
    for batch in tqdm(scoring, desc=f"{desc} (score)", leave=False, disable=not progress):
        batch = cast_features({k: v.to(device) for k, v in batch.items()}, dtype)
        labels = batch.pop("labels")
        logits = model(**batch).logits.float()
        # Causal LM: the logit at position t predicts token t + 1.
        shifted = labels[:, 1:]
        nll += torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), shifted, ignore_index=IGNORE_INDEX, reduction="sum"
        ).item()
        tokens += int((shifted != IGNORE_INDEX).sum())
    prompts = DataLoader(
        dataset.prompts_only(),
        batch_size=batch_size,
        collate_fn=LalmCollator(processor, pad, padding_side="left"),
    )
    texts: list[str] = []
    for batch in tqdm(prompts, desc=f"{desc} (decode)", leave=False, disable=not progress):
        batch = cast_features(batch, dtype)
        texts.extend(generate_text(model, processor, batch, max_new_tokens, num_beams))
    return texts, nll, tokens


def timed_lalm_answers(
    model: torch.nn.Module, processor: ProcessorMixin, dataset: PromptDataset, **options: Any
) -> tuple[list[str], float, int, float]:
    """`lalm_transcribe` in eval mode (restored after), plus the seconds it took."""
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    hyps, nll, tokens = lalm_transcribe(model, processor, dataset, **options)
    elapsed = time.perf_counter() - start
    if was_training:
        model.train()
    return hyps, nll, tokens, elapsed


def evaluate_stt(
    model: torch.nn.Module,
    processor: ProcessorMixin,
    dataset: SpeechTextDataset,
    *,
    batch_size: int = 8,
    num_beams: int = 1,
    max_new_tokens: int = 128,
    desc: str = "eval",
    progress: bool = True,
) -> dict[str, Any]:
    """WER/CER/BLEU on decoded text, perplexity on the references, latency per clip."""
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    if isinstance(dataset, LalmSpeechTextDataset):
        hyps, nll, tokens = lalm_transcribe(
            model,
            processor,
            dataset,
            batch_size=batch_size,
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            desc=desc,
            progress=progress,
        )
    else:
        collator = SpeechCollator(model.config.decoder_start_token_id)
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collator)
        batches = tqdm(loader, desc=desc, leave=False, disable=not progress)
        hyps, nll, tokens = transcribe_batches(
            model, processor, batches, num_beams=num_beams, max_new_tokens=max_new_tokens
        )
    elapsed = time.perf_counter() - start
    if was_training:
        model.train()
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


class SpeechToText:
    """`task: stt` -- transcripts from audio (Whisper seq2seq or an audio LM's chat answer)."""

    name = "stt"
    headline = ("wer", "cer", "bleu", "perplexity", "latency_s_per_clip")
    lower_is_better = frozenset({"wer", "cer", "perplexity", "latency_s_per_clip"})

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
            datasets[split] = build_stt_dataset(family, rows, processor, config.data)
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
        if family.kind == "lalm":
            lalm_trainable_extras(
                peft_model,
                family,
                config.adapter.train_projector,
                config.adapter.train_audio_encoder_fully,
            )
        install_spec_augment(peft_model, config.data.spec_augment, family.audio_input_name)
        return peft_model

    def collator(self, model: nn.Module, processor: ProcessorMixin, family: Family) -> Any:
        return build_stt_collator(family, model, processor)

    def base_metrics(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        return evaluate_stt(model, processor, dataset, **options)  # type: ignore[arg-type]

    def evaluate(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        return evaluate_stt(model, processor, dataset, **options)  # type: ignore[arg-type]

    def save(self, model: nn.Module, out_dir: Path) -> None:
        model.save_pretrained(str(out_dir))

    def load(self, base: nn.Module, adapter_dir: Path) -> nn.Module:
        if not (Path(adapter_dir) / "adapter_config.json").exists():
            raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json (did training finish?)")
        return PeftModel.from_pretrained(base, str(adapter_dir))
