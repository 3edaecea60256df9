"""Whisper (encoder-decoder): log-mel features in, transcript tokens out of the decoder.

Features come from the model's own feature extractor (log-mel with the normalisation the model
was trained with; Whisper scales log-mel to about [-1, 1] itself, so no second per-utterance
normalisation is applied). Label sequences are padded per batch (dynamic padding). The
extractor pads audio to the encoder's 30 s window; with `data.encoder_context: batch` the
collator cuts the frames back to the batch's longest clip (see `audiolora.models.encoder_context`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel, ProcessorMixin, WhisperProcessor

from audiolora.data.audio import load_audio
from audiolora.models.encoder_context import accept_any_width, context_frames
from audiolora.models.families.base import Family
from audiolora.models.speech_gate import (
    GATE_KEY,
    encoder_gate,
    is_gated,
    set_speech_gate,
    speech_activity,
)
from audiolora.precision import full_precision, model_device_dtype
from audiolora.settings import DataConfig

IGNORE_INDEX = -100


class SpeechTextDataset(Dataset):
    """Lazily decodes each clip, so memory stays flat however long the manifest is."""

    def __init__(
        self,
        rows: list[Any],
        processor: ProcessorMixin,
        sampling_rate: int = 16000,
        max_label_tokens: int = 200,
        speech_gate: bool = False,
        trim_context: tuple[float, float] | None = None,
    ) -> None:
        self.rows = rows
        self.speech_gate = speech_gate
        self.trim_context = trim_context
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
        if self.trim_context is not None:
            seconds = len(audio) / self.sampling_rate
            item[FRAMES_KEY] = context_frames(seconds, *self.trim_context)
        if self.speech_gate:
            frames = item["input_features"].shape[-1] // 2
            item[GATE_KEY] = speech_activity(audio, self.sampling_rate, frames, 0.02)
        if row.text is not None:
            ids = self.processor.tokenizer(row.text).input_ids[: self.max_label_tokens]
            item["labels"] = ids
        return item


FRAMES_KEY = "encoder_frames"
"""Item key: the mel frames a clip needs (present when the encoder input is trimmed)."""


@dataclass
class SpeechCollator:
    """Stacks features, cut to the longest clip's frames when items say how many they need,
    and pads labels to the longest in the batch with -100."""

    decoder_start_token_id: int

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max((it.get(FRAMES_KEY, 0) for it in items), default=0) or None
        features = np.stack([it["input_features"][..., :width] for it in items])
        batch = {"input_features": torch.tensor(features)}
        if GATE_KEY in items[0]:
            gate_width = width // 2 if width else None
            batch[GATE_KEY] = torch.tensor(np.stack([it[GATE_KEY][:gate_width] for it in items]))
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


@torch.no_grad()
def transcribe_batches(
    model: nn.Module,
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
        set_speech_gate(model, batch.get(GATE_KEY))
        features = batch["input_features"].to(device=device, dtype=dtype)
        if "labels" in batch:
            labels = batch["labels"].to(device)
            logits = model(input_features=features, labels=labels).logits.float()
            nll += torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="sum"
            ).item()
            tokens += int((labels != IGNORE_INDEX).sum())
        # The encoder runs here, not inside generate(), which pads narrower input back to 30 s.
        encoded = model.get_encoder()(input_features=features)
        generated = model.generate(
            encoder_outputs=encoded, num_beams=num_beams, max_new_tokens=max_new_tokens
        )
        texts.extend(processor.batch_decode(generated, skip_special_tokens=True))
    return [t.strip() for t in texts], nll, tokens


class Whisper(Family):
    name = "whisper"
    model_types = ("whisper",)
    model_class = "WhisperForConditionalGeneration"
    audio_encoder_prefix = "model.encoder"
    text_prefix = "model.decoder"
    default_targets = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
    quant_skip_modules = ("proj_out",)

    def load_processor(self, path: str) -> ProcessorMixin:
        return WhisperProcessor.from_pretrained(path)

    def configure(self, model: PreTrainedModel, language: str | None) -> None:
        # Inputs narrower than 30 s are fed only when data.encoder_context asks for it.
        accept_any_width(model.get_submodule(self.audio_encoder_prefix))
        # generate() reads language/task for multilingual checkpoints.
        if language and hasattr(model, "generation_config"):
            model.generation_config.language = language
            model.generation_config.task = "transcribe"

    def transcription_dataset(
        self,
        rows: list[Any],
        processor: ProcessorMixin,
        data: DataConfig,
        instruction: str,
        speech_gate: bool = False,
    ) -> Dataset:
        return SpeechTextDataset(
            rows,
            processor,
            data.sampling_rate,
            data.max_label_tokens,
            speech_gate,
            data.trim_context(),
        )

    def transcription_collator(self, processor: ProcessorMixin) -> Any:
        start = processor.tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
        return SpeechCollator(start)

    def transcribe(
        self,
        model: nn.Module,
        processor: ProcessorMixin,
        dataset: Dataset,
        *,
        batch_size: int,
        num_beams: int,
        max_new_tokens: int,
        desc: str,
        progress: bool,
    ) -> tuple[list[str], float, int]:
        """Clips the encoder takes whole are scored and decoded in batches; longer ones are
        decoded piece by piece as `predict` does (their NLL is not counted: the decoder never
        saw them whole)."""
        limit = self.max_audio_seconds or float("inf")
        rows = dataset.rows
        short = [i for i, row in enumerate(rows) if row.audio_seconds <= limit]
        long = [i for i, row in enumerate(rows) if row.audio_seconds > limit]
        loader = DataLoader(
            torch.utils.data.Subset(dataset, short),
            batch_size=batch_size,
            collate_fn=self.transcription_collator(processor),
        )
        batches = tqdm(loader, desc=desc, leave=False, disable=not progress)
        texts, nll, tokens = transcribe_batches(
            model, processor, batches, num_beams=num_beams, max_new_tokens=max_new_tokens
        )
        hyps = dict(zip(short, texts, strict=True))
        if long:
            pieces = self.answer_rows(
                model,
                processor,
                [rows[i] for i in long],
                sampling_rate=dataset.sampling_rate,
                batch_size=batch_size,
                num_beams=num_beams,
                max_new_tokens=max_new_tokens,
                trim_context=dataset.trim_context,
            )
            hyps.update(zip(long, pieces, strict=True))
        return [hyps[i] for i in range(len(rows))], nll, tokens

    def answer_files(
        self,
        model: nn.Module,
        processor: ProcessorMixin,
        audio_paths: list[Path],
        *,
        sampling_rate: int,
        instruction: str,
        batch_size: int,
        num_beams: int,
        max_new_tokens: int,
        trim_context: tuple[float, float] | None = None,
    ) -> list[str]:
        """Files longer than 30 s are decoded piece by piece and the pieces joined."""
        from audiolora.models.lalm import file_rows

        return self.answer_rows(
            model,
            processor,
            file_rows(audio_paths),
            sampling_rate=sampling_rate,
            batch_size=batch_size,
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            trim_context=trim_context,
        )

    def answer_rows(
        self,
        model: nn.Module,
        processor: ProcessorMixin,
        rows: list[Any],
        *,
        sampling_rate: int,
        batch_size: int,
        num_beams: int,
        max_new_tokens: int,
        trim_context: tuple[float, float] | None = None,
    ) -> list[str]:
        """Each row's audio split into 30 s pieces, decoded in batches, pieces joined; with
        `trim_context` each batch's frames are cut to its longest piece, rounded up."""
        sr = sampling_rate
        pieces = [
            (index, segment)
            for index, row in enumerate(rows)
            for segment in self.split_audio(load_audio(row.audio, sr, row.offset, row.duration), sr)
        ]
        texts: list[list[str]] = [[] for _ in rows]
        for start in range(0, len(pieces), batch_size):
            chunk = pieces[start : start + batch_size]
            with full_precision():
                feats = processor.feature_extractor(
                    [segment for _, segment in chunk], sampling_rate=sr, return_tensors="pt"
                )["input_features"]
            if trim_context is not None:
                longest = max(len(segment) for _, segment in chunk) / sr
                feats = feats[..., : context_frames(longest, *trim_context)]
            batch = {"input_features": feats}
            if is_gated(model):
                batch[GATE_KEY] = encoder_gate([segment for _, segment in chunk], sr, feats)
            out, _, _ = transcribe_batches(
                model,
                processor,
                [batch],
                num_beams=num_beams,
                max_new_tokens=max_new_tokens,
            )
            for (index, _), text in zip(chunk, out, strict=True):
                texts[index].append(text)
        return [" ".join(t for t in parts if t) for parts in texts]
