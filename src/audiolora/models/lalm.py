"""Prompts, batches and generation for audio-language models (LALMs): Qwen2-Audio, Qwen2.5-Omni.

Why a module of its own: an LALM sees audio through placeholder tokens in a chat prompt, and the
details are easy to get silently wrong. Its encoder takes at most 30 s of mel frames, so longer
audio is split into segments, each announced in the prompt ("Audio 1: <audio>"); each `<|AUDIO|>`
expands into one token per output frame of the encoder (the family knows how many), and the model
scatters the audio embeddings over those tokens in order, so the count per segment must match the
encoder's or audio lands in the wrong place (Qwen2.5-Omni does not even notice one token too
few); and only the answer may carry a loss. Tasks stay generic (audio + instruction -> answer
text) and call the functions here with the run's family.

A batch is what the family's model takes: `input_ids`, `attention_mask`, optional `labels`, and
`input_features` / `feature_attention_mask` holding every segment of every example as one flat
batch of spectrograms, in prompt order (example 0's segments first), padded to the widest
segment (Qwen2-Audio's are all 3000 frames). The model fills the placeholder runs of the
flattened `input_ids` with them in that order.

Text-only examples (no segments) are allowed, so text rows can train next to speech rows: their
prompt has no placeholder, they add no segment to the flat batch, and a batch with no segment at
all carries no `input_features`, which makes Qwen2-Audio's forward skip the audio tower and run
as a plain causal LM.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import ProcessorMixin

from audiolora.data.audio import load_audio
from audiolora.precision import model_device_dtype

if TYPE_CHECKING:
    from audiolora.models.families.base import AudioLanguageFamily

IGNORE_INDEX = -100
"""Label value that the loss skips (prompt, audio placeholders, padding)."""

Batch = dict[str, torch.Tensor]


def split_audio(
    audio: np.ndarray, sr: int, max_seconds: float = 30.0, min_tail_seconds: float = 1.0
) -> list[np.ndarray]:
    """Cut `audio` into consecutive segments of at most `max_seconds`; nothing is dropped.

    Segments are `max_seconds` long except the last (45 s -> 30 s + 15 s). A last piece shorter
    than `min_tail_seconds` would be a few frames the encoder can hardly use, so the last two
    segments then share their samples evenly instead (30.2 s -> 15.1 s + 15.1 s).
    """
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"split_audio takes mono audio of shape (samples,), got {audio.shape}")
    if audio.size == 0:
        raise ValueError("split_audio got empty audio")
    step = int(round(max_seconds * sr))
    if step <= 0:
        raise ValueError(f"max_seconds={max_seconds} at sr={sr} gives no samples per segment")
    bounds = list(range(0, audio.size, step)) + [audio.size]
    tail = bounds[-1] - bounds[-2]
    if len(bounds) > 2 and tail < min_tail_seconds * sr:
        bounds[-2] = (bounds[-3] + bounds[-1]) // 2
    return [audio[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


def build_conversation(segments: int, instruction: str, answer: str | None) -> list[dict]:
    """A one-turn chat: "Audio 1: <audio>" ... "Audio N: <audio>", the instruction, the answer.

    Numbering every segment, even a single one, follows Qwen2-Audio's own template, so prompts
    look like what the model was instruction-tuned on. `segments=0` gives a text-only turn.
    """
    if segments < 0:
        raise ValueError(f"the number of audio segments must be >= 0, got {segments}")
    content: list[dict[str, str]] = []
    for i in range(1, segments + 1):
        content.append({"type": "text", "text": f"Audio {i}: "})
        content.append({"type": "audio"})
    content.append({"type": "text", "text": instruction})
    conversation: list[dict[str, Any]] = [{"role": "user", "content": content}]
    if answer is not None:
        conversation.append({"role": "assistant", "content": answer})
    return conversation


def end_of_turn_id(processor: ProcessorMixin) -> int:
    """Token id the chat template closes an assistant turn with (`<|im_end|>` for ChatML).

    Training labels end with it and generation stops on it. Read from the template itself: what
    follows a probe answer, first token; the tokenizer's eos if the template adds nothing.
    """
    tokenizer = processor.tokenizer
    probe = "PROBE"
    chat = [{"role": "user", "content": "x"}, {"role": "assistant", "content": probe}]
    rendered = processor.apply_chat_template(chat, tokenize=False)
    after = rendered[rendered.rindex(probe) + len(probe) :].strip()
    ids = tokenizer(after, add_special_tokens=False).input_ids if after else []
    if ids:
        return int(ids[0])
    if tokenizer.eos_token_id is None:
        raise ValueError("the chat template ends no turn and the tokenizer has no eos token")
    return int(tokenizer.eos_token_id)


def encode_example(
    family: AudioLanguageFamily,
    processor: ProcessorMixin,
    audios: Sequence[np.ndarray],
    instruction: str,
    answer: str | None,
    sr: int = 16000,
) -> Batch:
    """One example as tensors: prompt tokens (+ answer tokens and labels when `answer` is given).

    `audios` are the segments (each at most the family's limit: see `family.split_audio`); none
    gives a text-only prompt. Returns 1-D `input_ids`, `attention_mask` (and `labels`: -100
    except the answer tokens and the end-of-turn token), `input_features` of shape (segments,
    mel bins, frames) and `feature_attention_mask` (segments, frames) marking the real frames
    (0 segments for a text-only prompt). The answer is tokenized on its own after the prompt,
    exactly the tokens generation would have to produce.
    """
    fe = processor.feature_extractor
    if sr != fe.sampling_rate:
        raise ValueError(f"audio at {sr} Hz; the feature extractor wants {fe.sampling_rate} Hz")
    audios = [np.asarray(a, dtype=np.float32) for a in audios]
    for i, a in enumerate(audios):
        if a.ndim != 1:
            raise ValueError(f"audio segment {i}: shape {a.shape}, expected (samples,)")
        if a.size > fe.n_samples:
            raise ValueError(
                f"audio segment {i} is {a.size / sr:.2f} s; the encoder takes at most "
                f"{fe.n_samples / sr:.0f} s and the feature extractor would cut the rest off. "
                "Split it first with family.split_audio."
            )
        if a.size <= 2 * fe.hop_length:  # fewer than 3 mel frames give 0 encoder outputs
            raise ValueError(f"audio segment {i} has {a.size} samples, too short to encode")

    prompt = rendered_prompt(processor, len(audios), instruction)
    if audios:
        input_ids, features, feature_mask = family.encode_audio_prompt(
            processor, prompt, audios, sr
        )
    else:
        input_ids = processor.tokenizer([prompt], return_tensors="pt").input_ids
        features, feature_mask = family.empty_features(processor)
    return _example(processor, input_ids[0], features, feature_mask, answer)


def encode_example_over(
    family: AudioLanguageFamily,
    processor: ProcessorMixin,
    example: Batch,
    instruction: str,
    answer: str | None,
) -> Batch:
    """`encode_example` for another instruction over the audio of `example` (an
    `encode_example` output): its features and mask taken as they are, so the audio is neither
    read nor featurized again. Why: the session search asks six questions of every window's
    audio. The same tensors as encoding the audio anew (tested)."""
    features, feature_mask = example["input_features"], example["feature_attention_mask"]
    prompt = rendered_prompt(processor, len(features), instruction)
    if len(features):
        input_ids = family.expand_audio_placeholders(processor, prompt, feature_mask)
    else:
        input_ids = processor.tokenizer([prompt], return_tensors="pt").input_ids
    return _example(processor, input_ids[0], features, feature_mask, answer)


def rendered_prompt(processor: ProcessorMixin, segments: int, instruction: str) -> str:
    """The chat template's text of a user turn with `segments` audio placeholders, then the
    instruction, ready for the assistant's answer."""
    return processor.apply_chat_template(
        build_conversation(segments, instruction, None),
        tokenize=False,
        add_generation_prompt=True,
    )


def _example(
    processor: ProcessorMixin,
    input_ids: torch.Tensor,
    features: torch.Tensor,
    feature_mask: torch.Tensor,
    answer: str | None,
) -> Batch:
    """An example's tensors from its prompt ids and features, the answer (if any) appended."""
    example: Batch = {"input_features": features, "feature_attention_mask": feature_mask}
    if answer is not None:
        answer_ids = processor.tokenizer(answer, add_special_tokens=False).input_ids
        target = torch.tensor([*answer_ids, end_of_turn_id(processor)], dtype=input_ids.dtype)
        example["labels"] = torch.cat([torch.full_like(input_ids, IGNORE_INDEX), target])
        input_ids = torch.cat([input_ids, target])
    example["input_ids"] = input_ids
    example["attention_mask"] = torch.ones_like(input_ids)
    return example


def _placeholder_runs(input_ids: torch.Tensor, audio_token_id: int) -> list[tuple[int, int]]:
    """(example index, run length) for each run of consecutive audio tokens, in prompt order."""
    runs: list[tuple[int, int]] = []
    for row, ids in enumerate(input_ids):
        is_audio = (ids == audio_token_id).long()
        edges = torch.diff(is_audio, prepend=is_audio.new_zeros(1), append=is_audio.new_zeros(1))
        starts = (edges == 1).nonzero().flatten()
        ends = (edges == -1).nonzero().flatten()
        runs.extend((row, int(n)) for n in ends - starts)
    return runs


def placeholder_guard(
    family: AudioLanguageFamily,
    input_ids: torch.Tensor,
    feature_attention_mask: torch.Tensor,
    audio_token_id: int,
) -> None:
    """Check that each segment's placeholder run is as long as the encoder's output for it.

    The model scatters audio embeddings over placeholders in order; a mismatch either crashes
    deep in the forward ("tokens: X, features: Y"), or, when counts only shift between segments
    (or, for Qwen2.5-Omni, one is short), silently feeds one segment's audio into another's
    slot. Segments pair with runs of consecutive audio tokens in row-major order. Raises
    ValueError naming the example, the segment and both numbers.
    """
    expected = [int(n) for n in family.audio_token_counts(feature_attention_mask.sum(-1))]
    runs = _placeholder_runs(input_ids, audio_token_id)
    if len(runs) != len(expected):
        raise ValueError(
            f"{len(runs)} runs of audio placeholder tokens (id {audio_token_id}) in the batch but "
            f"{len(expected)} audio segments in input_features; every segment needs its own run"
        )
    for segment, ((row, found), want) in enumerate(zip(runs, expected, strict=True)):
        if found != want:
            raise ValueError(
                f"example {row}, audio segment {segment}: {found} placeholder tokens in the "
                f"prompt but the encoder produces {want} embeddings for its "
                f"{int(feature_attention_mask[segment].sum())} real mel frames"
            )


def padding_token_id(processor: ProcessorMixin) -> int:
    """The tokenizer's pad token, else its eos (small chat LMs often define no pad token)."""
    tokenizer = processor.tokenizer
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


class LalmCollator:
    """Pad `encode_example` outputs into one batch; segments of all examples become one flat batch.

    Text-only examples add no segment; a batch without any segment has no `input_features` /
    `feature_attention_mask`, so the model runs as a plain LM. Segments are padded to the widest
    one. Right padding for training, left padding for batched generation (new tokens then follow
    every prompt directly). Every batch passes `placeholder_guard`.
    """

    def __init__(
        self,
        family: AudioLanguageFamily,
        processor: ProcessorMixin,
        pad_token_id: int | None = None,
        padding_side: Literal["right", "left"] = "right",
    ) -> None:
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.family = family
        self.processor = processor
        self.pad_token_id = padding_token_id(processor) if pad_token_id is None else pad_token_id
        self.padding_side = padding_side
        self.audio_token_id = family.audio_token_id(processor)

    def _pad(self, rows: list[torch.Tensor], value: int, length: int) -> torch.Tensor:
        out = torch.full((len(rows), length), value, dtype=rows[0].dtype)
        for i, row in enumerate(rows):
            if self.padding_side == "right":
                out[i, : row.numel()] = row
            else:
                out[i, length - row.numel() :] = row
        return out

    def __call__(self, features: list[Batch]) -> Batch:
        with_labels = ["labels" in f for f in features]
        if any(with_labels) and not all(with_labels):
            raise ValueError("some examples in the batch have labels and some do not")
        length = max(f["input_ids"].numel() for f in features)
        batch: Batch = {
            "input_ids": self._pad([f["input_ids"] for f in features], self.pad_token_id, length),
            "attention_mask": self._pad([f["attention_mask"] for f in features], 0, length),
        }
        with_audio = [f for f in features if len(f.get("input_features", ())) > 0]
        if with_audio:
            frames = max(f["input_features"].shape[-1] for f in with_audio)
            batch["input_features"] = torch.cat(
                [_pad_frames(f["input_features"], frames) for f in with_audio]
            )
            batch["feature_attention_mask"] = torch.cat(
                [_pad_frames(f["feature_attention_mask"], frames) for f in with_audio]
            )
            mask = batch["feature_attention_mask"]
            placeholder_guard(self.family, batch["input_ids"], mask, self.audio_token_id)
        if all(with_labels):
            batch["labels"] = self._pad([f["labels"] for f in features], IGNORE_INDEX, length)
        return batch


def trimmed_width(real_frames: int, step: int = 100) -> int:
    """Frames that give a masked tower the same outputs as 30 s for `real_frames`: the two its
    convolutions read past the end, rounded up to `step` (1 s) so few shapes occur."""
    return math.ceil((real_frames + 2) / step) * step


def _pad_frames(tensor: torch.Tensor, frames: int) -> torch.Tensor:
    """Zero-pad (or cut) the last (time) axis to `frames`."""
    missing = frames - tensor.shape[-1]
    if missing < 0:
        return tensor[..., :frames]
    return torch.nn.functional.pad(tensor, (0, missing)) if missing > 0 else tensor


def stop_token_ids(model: nn.Module, processor: ProcessorMixin) -> list[int]:
    """Where generation stops: the model's own eos ids, then the template's end-of-turn token,
    so a model fine-tuned on `encode_example` labels stops where its answers ended."""
    eos = model.generation_config.eos_token_id
    ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    stop = end_of_turn_id(processor)
    return ids if stop in ids else [*ids, stop]


def generate_text(
    model: nn.Module,
    processor: ProcessorMixin,
    batch: Batch,
    max_new_tokens: int,
    num_beams: int = 1,
) -> list[str]:
    """Answer every prompt of a left-padded batch; returns only the newly generated text.

    Generation stops at the template's end-of-turn token as well as the model's own eos ids, so a
    model fine-tuned on `encode_example` labels stops where its answers ended.
    """
    mask = batch["attention_mask"]
    if bool((mask[:, -1] == 0).any()):
        raise ValueError(
            "generate_text needs a left-padded batch (LalmCollator(..., padding_side='left')): "
            "with right padding new tokens would follow pad tokens"
        )
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    eos_ids = stop_token_ids(model, processor)
    pad = processor.tokenizer.pad_token_id
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            do_sample=False,
            eos_token_id=eos_ids,
            pad_token_id=eos_ids[0] if pad is None else pad,
        )
    new_tokens = out[:, inputs["input_ids"].shape[1] :]
    texts = processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [t.strip() for t in texts]


STT_INSTRUCTION = "Transcribe the audio."


class PromptDataset(Dataset):
    """Rows as `encode_example` items for an audio LM: with their answers for training and
    scoring, or (`prompts_only`) without them for generation. Subclasses set `family`, `rows`
    and `with_answer` and build one item per row."""

    family: AudioLanguageFamily
    rows: list[Any]
    with_answer: bool

    def __len__(self) -> int:
        return len(self.rows)

    def prompts_only(self) -> PromptDataset:
        """The same dataset giving prompts only (what `answer_prompts` decodes from)."""
        prompts = copy.copy(self)
        prompts.with_answer = False
        return prompts


def file_rows(paths: list[Path]) -> list[Any]:
    """Whole audio files as manifest rows without text (what `predict` answers)."""
    from audiolora.data.manifest import ManifestRow

    return [
        ManifestRow(
            line=i + 1,
            audio=Path(p),
            text=None,
            offset=0.0,
            duration=None,
            audio_seconds=0.0,
            raw={},
        )
        for i, p in enumerate(paths)
    ]


class SpeechPromptDataset(PromptDataset):
    """Speech in, text out: the clip (split into segments the encoder takes) plus an
    instruction in the chat template; the row's `text` is the assistant's answer."""

    def __init__(
        self,
        family: AudioLanguageFamily,
        rows: list[Any],
        processor: ProcessorMixin,
        sampling_rate: int = 16000,
        instruction: str = STT_INSTRUCTION,
        with_answer: bool = True,
    ) -> None:
        self.family = family
        self.rows = rows
        self.processor = processor
        self.sampling_rate = sampling_rate
        self.instruction = instruction
        self.with_answer = with_answer
        self.lengths = [getattr(row, "audio_seconds", 0.0) for row in rows]

    @classmethod
    def for_files(
        cls,
        family: AudioLanguageFamily,
        paths: list[Path],
        processor: ProcessorMixin,
        sampling_rate: int,
        instruction: str,
    ) -> SpeechPromptDataset:
        """Whole audio files, prompts only (for `predict`)."""
        rows = file_rows(paths)
        return cls(family, rows, processor, sampling_rate, instruction, with_answer=False)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        audio = load_audio(row.audio, self.sampling_rate, row.offset, row.duration)
        answer = row.text if self.with_answer else None
        segments = self.family.split_audio(audio, self.sampling_rate)
        return encode_example(
            self.family, self.processor, segments, self.instruction, answer, self.sampling_rate
        )


def _cast_features(batch: Batch, dtype: torch.dtype) -> Batch:
    """Audio features in the model's dtype; a text-only batch has none and passes unchanged."""
    if "input_features" in batch:
        batch["input_features"] = batch["input_features"].to(dtype)
    return batch


@torch.no_grad()
def answer_prompts(
    family: AudioLanguageFamily,
    model: nn.Module,
    processor: ProcessorMixin,
    dataset: PromptDataset,
    *,
    batch_size: int,
    num_beams: int,
    max_new_tokens: int,
    desc: str,
    progress: bool,
) -> tuple[list[str], float, int]:
    """Perplexity of the reference answers (teacher forcing), then generation from the prompts.
    Returns texts, summed answer NLL and answer token count."""
    device, dtype = model_device_dtype(model)
    nll, tokens = 0.0, 0
    scoring = DataLoader(dataset, batch_size=batch_size, collate_fn=LalmCollator(family, processor))
    for batch in tqdm(scoring, desc=f"{desc} (score)", leave=False, disable=not progress):
        batch = _cast_features({k: v.to(device) for k, v in batch.items()}, dtype)
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
        collate_fn=LalmCollator(family, processor, padding_side="left"),
    )
    texts: list[str] = []
    for batch in tqdm(prompts, desc=f"{desc} (decode)", leave=False, disable=not progress):
        batch = _cast_features(batch, dtype)
        texts.extend(generate_text(model, processor, batch, max_new_tokens, num_beams))
    return texts, nll, tokens
