"""The frozen audio tower's outputs, computed once per clip, and the token ids around them.

Why: aligning the assembled model trains only the projector and LoRA on the language model, so
the Whisper tower computes the same numbers for a clip in every epoch. Computing them once, on
the clip's real frames instead of 30 s of padding, removes most of a training step's cost.

The trimmed pass is exact, not an approximation: Qwen2-Audio's forward masks the padded
positions out of the tower's attention, so the real positions see only real positions; the one
place padding enters is the two convolutions at the clip's end, and feeding them the two padded
frames after the last real one reproduces that too (tested against the model's own forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import ProcessorMixin

from audiolora.atomic import atomic_save_torch
from audiolora.data.audio import load_audio
from audiolora.data.manifest import ManifestRow
from audiolora.models.families.base import AudioLanguageFamily
from audiolora.models.lalm import IGNORE_INDEX, build_conversation, encode_example, end_of_turn_id
from audiolora.models.tower_cache import tower_outputs
from audiolora.precision import full_precision

SHARD_SIZE = 250
"""Clips per cache file: an interrupted feature pass loses at most one shard."""


@dataclass
class AlignExample:
    """One clip as the alignment loop uses it: tower outputs and the full token sequence."""

    audio: torch.Tensor
    """(placeholders, audio width) tower outputs, one row per `<|AUDIO|>` of `input_ids`."""
    input_ids: torch.Tensor
    answer_start: int
    """Index of the first answer token in `input_ids` (everything before carries no loss)."""
    text: str

    def labels(self) -> torch.Tensor:
        labels = self.input_ids.clone()
        labels[: self.answer_start] = IGNORE_INDEX
        return labels


class PromptTokens:
    """Token ids of the family's transcription prompt around `n` audio placeholders.

    Built once from the chat template and checked against `encode_example` (the path training
    and evaluation take elsewhere) on the first clip, so the two can never drift apart."""

    def __init__(self, processor: ProcessorMixin, audio_token: str, instruction: str) -> None:
        prompt = processor.apply_chat_template(
            build_conversation(1, instruction, None), tokenize=False, add_generation_prompt=True
        )
        if prompt.count(audio_token) != 1:
            raise ValueError(f"the chat template should render one {audio_token}: {prompt!r}")
        before, after = prompt.split(audio_token)
        tok = processor.tokenizer
        self.before = tok(before, add_special_tokens=False).input_ids
        self.after = tok(after, add_special_tokens=False).input_ids
        self.audio_id = int(tok.convert_tokens_to_ids(audio_token))
        self.end_id = end_of_turn_id(processor)
        self.tokenizer = tok

    def example(self, n_audio: int, text: str | None) -> tuple[torch.Tensor, int]:
        """(input_ids, answer start) for `n_audio` placeholders and the answer `text`."""
        prompt = [*self.before, *([self.audio_id] * n_audio), *self.after]
        answer = [] if text is None else self.tokenizer(text, add_special_tokens=False).input_ids
        ids = prompt + ([*answer, self.end_id] if text is not None else [])
        return torch.tensor(ids, dtype=torch.long), len(prompt)


def _encode_clip(
    family: AudioLanguageFamily,
    model: nn.Module,
    processor: ProcessorMixin,
    prompts: PromptTokens,
    row: ManifestRow,
    sr: int,
) -> AlignExample:
    audio = load_audio(row.audio, sr, row.offset, row.duration)
    segments = family.split_audio(audio, sr)
    if len(segments) != 1:
        raise ValueError(f"{row.audio}: alignment clips must fit one encoder pass")
    fe = processor.feature_extractor
    with full_precision():
        encoded = fe(segments[0], sampling_rate=sr, return_attention_mask=True, return_tensors="pt")
    frames = int(encoded["attention_mask"].sum())
    tower = model.get_submodule(family.audio_encoder_prefix)
    outputs = tower_outputs(tower, encoded["input_features"][0], frames)
    expected = int(family.audio_token_counts(torch.tensor(frames)))
    if outputs.shape[0] != expected:
        raise RuntimeError(f"tower gave {outputs.shape[0]} outputs, the prompt needs {expected}")
    ids, start = prompts.example(expected, row.text)
    return AlignExample(outputs.to(torch.float16), ids, start, row.text or "")


def check_prompt_tokens(
    family: AudioLanguageFamily,
    processor: ProcessorMixin,
    prompts: PromptTokens,
    row: ManifestRow,
    instruction: str,
    sr: int,
) -> None:
    """Fail unless `PromptTokens` builds exactly the ids `encode_example` builds for `row`."""
    audio = load_audio(row.audio, sr, row.offset, row.duration)
    reference = encode_example(family, processor, [audio], instruction, row.text, sr)["input_ids"]
    n_audio = int((reference == prompts.audio_id).sum())
    ids, _ = prompts.example(n_audio, row.text)
    if not torch.equal(ids, reference):
        raise RuntimeError(
            "alignment prompt tokens differ from the training path's (encode_example); "
            f"first difference at {int((ids[: len(reference)] != reference).nonzero()[0])}"
        )


def cached_examples(
    family: AudioLanguageFamily,
    model: nn.Module,
    processor: ProcessorMixin,
    rows: list[ManifestRow],
    cache: Path,
    instruction: str,
    sr: int = 16000,
    desc: str = "audio tower",
    progress: bool = True,
) -> list[AlignExample]:
    """Every row's `AlignExample`, computing missing shards (`cache/NNNNN.pt`) and reusing the
    rest; each shard is written atomically, so a killed pass resumes where it stopped."""
    cache.mkdir(parents=True, exist_ok=True)
    audio_token = processor.tokenizer.convert_ids_to_tokens(family.audio_token_id(processor))
    prompts = PromptTokens(processor, audio_token, instruction)
    if rows:
        check_prompt_tokens(family, processor, prompts, rows[0], instruction, sr)
    examples: list[AlignExample] = []
    with tqdm(total=len(rows), desc=desc, unit="clip", disable=not progress) as bar:
        for first in range(0, len(rows), SHARD_SIZE):
            shard = cache / f"{first:05d}.pt"
            chunk = rows[first : first + SHARD_SIZE]
            if shard.is_file():
                stored = torch.load(shard, weights_only=False)
                if [e.text for e in stored] == [r.text or "" for r in chunk]:
                    examples += stored
                    bar.update(len(chunk))
                    continue
            fresh = []
            for row in chunk:
                fresh.append(_encode_clip(family, model, processor, prompts, row, sr))
                bar.update(1)
            atomic_save_torch(fresh, shard)
            examples += fresh
    return examples


def stack_audio(examples: list[AlignExample]) -> np.ndarray:
    """Every tower output row of `examples`, in order, as one float32 matrix."""
    return torch.cat([e.audio for e in examples]).float().numpy()
