"""Cached tower outputs equal what the model computes inside its own forward, and the prompt
tokens around them equal the training path's."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor

from audiolora.builtin.align.features import PromptTokens, cached_examples, tower_outputs
from audiolora.data.manifest import read_manifest
from audiolora.models.families import family_for
from audiolora.models.lalm import STT_INSTRUCTION, encode_example


def _setup(tiny_qwen2_audio_dir: Path, speech_dataset: Path):
    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio_dir).eval()
    processor = Qwen2AudioProcessor.from_pretrained(tiny_qwen2_audio_dir)
    family = family_for(model.config, "auto")
    rows = read_manifest(speech_dataset / "train.jsonl").rows[:3]
    return model, processor, family, rows


def test_trimmed_tower_equals_the_padded_forward(
    tiny_qwen2_audio_dir: Path, speech_dataset: Path
) -> None:
    model, processor, family, rows = _setup(tiny_qwen2_audio_dir, speech_dataset)
    from audiolora.data.audio import load_audio

    audio = load_audio(rows[0].audio, 16000)
    example = encode_example(family, processor, [audio], STT_INSTRUCTION, None)
    seen: list[torch.Tensor] = []
    hook = model.model.multi_modal_projector.register_forward_hook(
        lambda _m, args, _out: seen.append(args[0])
    )
    with torch.no_grad():
        model(
            input_ids=example["input_ids"][None],
            attention_mask=example["attention_mask"][None],
            input_features=example["input_features"],
            feature_attention_mask=example["feature_attention_mask"],
        )
    hook.remove()
    frames = int(example["feature_attention_mask"].sum())
    trimmed = tower_outputs(model.model.audio_tower, example["input_features"][0], frames)
    n = int(family.audio_token_counts(torch.tensor(frames)))
    assert trimmed.shape[0] == n
    assert torch.allclose(trimmed, seen[0][0, :n], atol=1e-4, rtol=1e-4)


def test_prompt_tokens_match_encode_example(
    tiny_qwen2_audio_dir: Path, speech_dataset: Path
) -> None:
    _, processor, _, rows = _setup(tiny_qwen2_audio_dir, speech_dataset)
    audio_token = processor.tokenizer.convert_ids_to_tokens(processor.audio_token_id)
    prompts = PromptTokens(processor, audio_token, STT_INSTRUCTION)
    ids, start = prompts.example(7, "hello there")
    assert (ids == prompts.audio_id).sum() == 7
    assert ids[-1] == prompts.end_id
    answer = processor.tokenizer.decode(ids[start:-1])
    assert answer == "hello there"


def test_cache_is_reused_and_matches_fresh_outputs(
    tiny_qwen2_audio_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    model, processor, family, rows = _setup(tiny_qwen2_audio_dir, speech_dataset)
    first = cached_examples(
        family, model, processor, rows, tmp_path, STT_INSTRUCTION, progress=False
    )
    shard = next(tmp_path.glob("*.pt"))
    mtime = shard.stat().st_mtime_ns
    again = cached_examples(
        family, model, processor, rows, tmp_path, STT_INSTRUCTION, progress=False
    )
    assert shard.stat().st_mtime_ns == mtime
    assert [e.text for e in first] == [r.text for r in rows]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.audio, b.audio) and torch.equal(a.input_ids, b.input_ids)
        assert (a.labels()[: a.answer_start] == -100).all()
