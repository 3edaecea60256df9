"""Prompts, batches and generation for audio-language models (LALMs) such as Qwen2-Audio.

Why a module of its own: an LALM sees audio through placeholder tokens in a chat prompt, and the
details are easy to get silently wrong. Its encoder takes exactly 30 s of mel frames, so longer
audio must be split into segments, each announced in the prompt ("Audio 1: <audio>"); the
processor expands each `<|AUDIO|>` into one token per output frame of the encoder, and the model
scatters the audio embeddings over those tokens in order, so the count per segment must match the
encoder's or audio lands in the wrong place; and only the answer may carry a loss. Tasks stay
generic (audio + instruction -> answer text) and call the functions here.

A batch is what `Qwen2AudioForConditionalGeneration` takes: `input_ids`, `attention_mask`,
optional `labels`, and `input_features` / `feature_attention_mask` holding every segment of every
example as one flat batch of 3000-frame spectrograms, in prompt order (example 0's segments
first). The model fills the placeholder runs of the flattened `input_ids` with them in that order.

Text-only examples (no segments) are allowed, so text rows can train next to speech rows: their
prompt has no placeholder, they add no segment to the flat batch, and a batch with no segment at
all carries no `input_features`, which makes Qwen2-Audio's forward skip the audio tower and run
as a plain causal LM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from transformers import ProcessorMixin

from audiolora.precision import full_precision

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
    processor: ProcessorMixin,
    audios: Sequence[np.ndarray],
    instruction: str,
    answer: str | None,
    sr: int = 16000,
) -> Batch:
    """One example as tensors: prompt tokens (+ answer tokens and labels when `answer` is given).

    `audios` are the segments (at most 30 s each: see `split_audio`); none gives a text-only
    prompt. Returns 1-D `input_ids`, `attention_mask` (and `labels`: -100 except the answer
    tokens and the end-of-turn token), `input_features` of shape (segments, mel bins, 3000) and
    `feature_attention_mask` (segments, 3000) marking the real frames (0 segments for a text-only
    prompt). The answer is tokenized on its own after the prompt, exactly the tokens generation
    would have to produce.
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
                "Split it first with audiolora.models.lalm.split_audio."
            )
        if a.size <= 2 * fe.hop_length:  # fewer than 3 mel frames give 0 encoder outputs
            raise ValueError(f"audio segment {i} has {a.size} samples, too short to encode")

    prompt = processor.apply_chat_template(
        build_conversation(len(audios), instruction, None),
        tokenize=False,
        add_generation_prompt=True,
    )
    if audios:
        # The processor pads every segment to 30 s (padding="max_length"), returns the real-frame
        # mask as feature_attention_mask and expands each <|AUDIO|> to the encoder's output count.
        with full_precision():
            encoded = processor(text=[prompt], audio=audios, sampling_rate=sr, return_tensors="pt")
        features = encoded["input_features"]
        feature_mask = encoded["feature_attention_mask"].long()
    else:
        encoded = processor.tokenizer([prompt], return_tensors="pt")
        features = torch.zeros((0, fe.feature_size, fe.nb_max_frames), dtype=torch.float32)
        feature_mask = torch.zeros((0, fe.nb_max_frames), dtype=torch.long)
    input_ids = encoded["input_ids"][0]
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
    input_ids: torch.Tensor,
    feature_attention_mask: torch.Tensor,
    audio_token_id: int,
    encoder: nn.Module,
) -> None:
    """Check that each segment's placeholder run is as long as the encoder's output for it.

    The model scatters audio embeddings over placeholders in order; a mismatch either crashes
    deep in the forward ("tokens: X, features: Y") or, when counts only shift between segments,
    silently feeds one segment's audio into another's slot. Segments pair with runs of
    consecutive audio tokens in row-major order. Raises ValueError naming the example, the
    segment and both numbers.
    """
    _, expected = encoder._get_feat_extract_output_lengths(feature_attention_mask.sum(-1))
    expected = [int(n) for n in expected]
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


class LalmCollator:
    """Pad `encode_example` outputs into one batch; segments of all examples become one flat batch.

    Text-only examples add no segment; a batch without any segment has no `input_features` /
    `feature_attention_mask`, so the model runs as a plain LM. Right padding for training, left
    padding for batched generation (new tokens then follow every prompt directly). With `encoder`
    given, every batch passes `placeholder_guard`.
    """

    def __init__(
        self,
        processor: ProcessorMixin,
        pad_token_id: int,
        padding_side: Literal["right", "left"] = "right",
        encoder: nn.Module | None = None,
    ) -> None:
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.processor = processor
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side
        self.encoder = encoder
        self.audio_token_id = int(processor.audio_token_id)

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
            batch["input_features"] = torch.cat([f["input_features"] for f in with_audio])
            batch["feature_attention_mask"] = torch.cat(
                [f["feature_attention_mask"] for f in with_audio]
            )
        if all(with_labels):
            batch["labels"] = self._pad([f["labels"] for f in features], IGNORE_INDEX, length)
        if self.encoder is not None and with_audio:
            placeholder_guard(
                batch["input_ids"],
                batch["feature_attention_mask"],
                self.audio_token_id,
                self.encoder,
            )
        return batch


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
    eos = model.generation_config.eos_token_id
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    stop = end_of_turn_id(processor)
    if stop not in eos_ids:
        eos_ids.append(stop)
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
