"""Prompts sharing their beginning: one pass over it gives what separate passes give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

from audiolora.config import AdapterConfig
from audiolora.models.adapters import attach_adapters
from audiolora.models.families import QWEN2_5_OMNI, QWEN2_AUDIO
from audiolora.models.heads.regression import last_token_states
from audiolora.models.lalm import encode_example
from audiolora.models.shared_prefix import (
    attention_kind,
    common_prefix_length,
    packed_mask,
    shared_prefix_last_states,
)


def test_common_prefix_length_stops_at_the_first_difference() -> None:
    rows = [torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 9]), torch.tensor([1, 2, 3])]
    assert common_prefix_length(rows) == 2
    assert common_prefix_length([torch.tensor([5, 6]), torch.tensor([5, 6, 7])]) == 2
    assert common_prefix_length([torch.tensor([5]), torch.tensor([6])]) == 0


def test_packed_mask_lets_each_remainder_see_the_prefix_and_itself() -> None:
    seen = packed_mask([2, 1], shared=3, kind="sdpa")[0, 0].int()
    assert seen.tolist() == [
        [1, 1, 1, 1, 0, 0],  # first remainder, first token: the prefix and itself
        [1, 1, 1, 1, 1, 0],  # ... second token: also the first, not the other remainder
        [1, 1, 1, 0, 0, 1],  # second remainder: the prefix and itself only
    ]
    additive = packed_mask([2, 1], shared=3, kind="eager")[0, 0]
    assert torch.equal(additive == 0, seen.bool())
    assert (additive[~seen.bool()] < -1e30).all()
    with pytest.raises(ValueError, match="flash_attention_2"):
        packed_mask([1], shared=1, kind="flash_attention_2")


def one_window_questions(processor: object, audio: bool = True) -> list[dict]:
    """Three questions over the same 3 s of audio, of different lengths."""
    sound = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32)
    questions = ("where does it begin?", "where does it end, do you think?", "when?")
    return [
        encode_example(QWEN2_AUDIO, processor, [sound] if audio else [], q, None) for q in questions
    ]


def separately(model: torch.nn.Module, examples: list[dict]) -> torch.Tensor:
    states = []
    for e in examples:
        batch = {"input_ids": e["input_ids"][None], "attention_mask": e["attention_mask"][None]}
        if len(e["input_features"]):
            batch["input_features"] = e["input_features"]
            batch["feature_attention_mask"] = e["feature_attention_mask"]
        hidden = QWEN2_AUDIO.hidden_states(model, batch).last_hidden_state
        states.append(last_token_states(hidden, batch["attention_mask"])[0])
    return torch.stack(states)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("audio", [True, False], ids=["audio", "text-only"])
def test_shared_prefix_states_equal_separate_forwards_under_lora(
    tiny_qwen2_audio_dir: Path, audio: bool, attention: str
) -> None:
    """Both attentions that take the packed remainders' mask (SDPA a boolean one, eager an
    additive one) give each prompt's own last state."""
    torch.manual_seed(0)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(
        tiny_qwen2_audio_dir, attn_implementation=attention
    )
    assert attention_kind(model) == attention
    QWEN2_AUDIO.configure(model, None)
    model = attach_adapters(model, AdapterConfig(r=4, dropout=0.0), QWEN2_AUDIO, 10)
    for name, p in model.named_parameters():  # a trained adapter, not the zero-init one
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    model.eval()
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)
    examples = one_window_questions(processor, audio)
    audio_id = QWEN2_AUDIO.audio_token_id(processor)
    with torch.no_grad():
        shared = shared_prefix_last_states(QWEN2_AUDIO, model, examples, audio_id)
        alone = separately(model, examples)
    assert shared.shape == alone.shape == (3, model.config.text_config.hidden_size)
    torch.testing.assert_close(shared, alone, rtol=1e-4, atol=1e-5)


def test_shared_prefix_refuses_what_it_cannot_share(tiny_qwen2_audio_dir: Path) -> None:
    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)
    audio_id = QWEN2_AUDIO.audio_token_id(processor)
    examples = one_window_questions(processor)
    other = dict(examples[1], input_features=examples[1]["input_features"] + 1)
    with pytest.raises(ValueError, match="same audio"):
        shared_prefix_last_states(QWEN2_AUDIO, model, [examples[0], other], audio_id)
    with pytest.raises(ValueError, match="do not continue from a cache"):
        shared_prefix_last_states(QWEN2_5_OMNI, model, examples, audio_id)
