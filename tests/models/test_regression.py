"""The LALM regression head: last real token under either padding, persistence, head-only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

from audiolora.config import AdapterConfig
from audiolora.models.adapters import attach_adapters
from audiolora.models.families import QWEN2_AUDIO
from audiolora.models.heads.regression import OffsetRegressor, hidden_size_of, last_token_states
from audiolora.models.lalm import LalmCollator, encode_example


def test_last_token_states_picks_the_last_real_position_for_both_paddings() -> None:
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_token_states(hidden, right).flatten().tolist() == [1.0, 7.0]
    assert last_token_states(hidden, left).flatten().tolist() == [3.0, 7.0]
    with pytest.raises(ValueError, match="no real token"):
        last_token_states(hidden, torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]]))


@pytest.fixture
def tiny(tiny_qwen2_audio_dir: Path) -> tuple[Qwen2AudioForConditionalGeneration, object]:
    torch.manual_seed(0)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio_dir)
    return model, AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)


def two_examples(processor: object) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        encode_example(
            QWEN2_AUDIO, processor, [rng.standard_normal(16000 * s).astype(np.float32)], text, None
        )
        for s, text in ((2, "short"), (3, "a somewhat longer instruction"))
    ]


def test_predictions_do_not_depend_on_the_padding_side(tiny: tuple) -> None:
    model, processor = tiny
    regressor = OffsetRegressor(model, QWEN2_AUDIO, hidden_size_of(model)).eval()
    torch.nn.init.normal_(regressor.head.weight, std=0.5)
    examples = two_examples(processor)
    pad = processor.tokenizer.pad_token_id
    outs = {}
    for side in ("right", "left"):
        batch = LalmCollator(QWEN2_AUDIO, processor, pad, padding_side=side)(examples)
        with torch.no_grad():
            outs[side] = regressor(**batch)["predictions"]
    # each example alone, unpadded
    alone = []
    for ex in examples:
        batch = LalmCollator(QWEN2_AUDIO, processor, pad)([ex])
        with torch.no_grad():
            alone.append(regressor(**batch)["predictions"][0])
    torch.testing.assert_close(outs["right"], torch.stack(alone), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(outs["left"], torch.stack(alone), atol=1e-5, rtol=1e-4)
    assert ((outs["right"] > 0) & (outs["right"] < 1)).all()


def test_a_fresh_head_predicts_the_window_centre_and_the_l1_loss_follows(tiny: tuple) -> None:
    model, processor = tiny
    regressor = OffsetRegressor(model, QWEN2_AUDIO, hidden_size_of(model), loss="l1")
    batch = LalmCollator(QWEN2_AUDIO, processor, processor.tokenizer.pad_token_id)(
        two_examples(processor)
    )
    out = regressor(**batch, targets=torch.tensor([0.1, 0.9]))
    torch.testing.assert_close(out["predictions"], torch.tensor([0.5, 0.5]))
    assert out["loss"].item() == pytest.approx(0.4)
    with pytest.raises(ValueError, match="unknown loss"):
        OffsetRegressor(model, QWEN2_AUDIO, 8, loss="huber")


def test_head_only_builds_no_graph_through_the_backbone(tiny: tuple) -> None:
    model, processor = tiny
    for p in model.parameters():
        p.requires_grad_(False)
    regressor = OffsetRegressor(model, QWEN2_AUDIO, hidden_size_of(model))
    batch = LalmCollator(QWEN2_AUDIO, processor, processor.tokenizer.pad_token_id)(
        two_examples(processor)
    )
    out = regressor(**batch, targets=torch.tensor([0.2, 0.7]))
    out["loss"].backward()
    assert regressor.head.weight.grad is not None and regressor.head.weight.grad.abs().sum() > 0
    assert set(regressor.trainable_state_dict()) == {"head.weight", "head.bias"}


def test_save_and_reload_give_the_same_predictions_with_lora(
    tiny: tuple, tiny_qwen2_audio_dir: Path, tmp_path: Path
) -> None:
    model, processor = tiny
    peft_model = attach_adapters(model, AdapterConfig(r=2, layers=[-1]), QWEN2_AUDIO, 10)
    lora = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert lora and all(".language_model.layers.1." in n for n in lora), "layer -1 is the top"
    regressor = OffsetRegressor(peft_model, QWEN2_AUDIO, hidden_size_of(model)).eval()
    with torch.no_grad():
        for _name, p in regressor.named_parameters():
            if p.requires_grad:
                p.normal_(std=0.3)
    batch = LalmCollator(QWEN2_AUDIO, processor, processor.tokenizer.pad_token_id)(
        two_examples(processor)
    )
    with torch.no_grad():
        before = regressor(**batch)["predictions"]
    regressor.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").exists()

    base = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio_dir)
    reloaded = OffsetRegressor.from_pretrained(base, tmp_path / "adapter", QWEN2_AUDIO).eval()
    with torch.no_grad():
        after = reloaded(**batch)["predictions"]
    torch.testing.assert_close(after, before)


def test_trainable_checkpoint_round_trip_and_mismatch_error(tiny: tuple, tmp_path: Path) -> None:
    model, _ = tiny
    peft_model = attach_adapters(model, AdapterConfig(r=2), QWEN2_AUDIO, 10)
    regressor = OffsetRegressor(peft_model, QWEN2_AUDIO, hidden_size_of(model))
    with torch.no_grad():
        regressor.head.weight.fill_(0.25)
    regressor.save_trainable(tmp_path)
    saved = regressor.trainable_state_dict()
    with torch.no_grad():
        regressor.head.weight.zero_()
    regressor.load_trainable(tmp_path)
    assert torch.equal(regressor.head.weight, saved["head.weight"])

    other = OffsetRegressor(
        model, QWEN2_AUDIO, hidden_size_of(model)
    )  # same base, no adapter trainable
    for p in other.backbone.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="does not match"):
        other.load_trainable(tmp_path)


def test_one_output_per_boundary_starts_at_the_training_prior(tiny: tuple, tmp_path: Path) -> None:
    model, processor = tiny
    names = ["P1_start", "P3_end"]
    regressor = OffsetRegressor(model, QWEN2_AUDIO, hidden_size_of(model), boundaries=names)
    regressor.init_prior({"P1_start": 0.05, "P3_end": 0.9})
    batch = LalmCollator(QWEN2_AUDIO, processor, processor.tokenizer.pad_token_id)(
        two_examples(processor)
    )
    with torch.no_grad():
        said = regressor(**batch, boundary_index=torch.tensor([0, 1]))["predictions"]
        swapped = regressor(**batch, boundary_index=torch.tensor([1, 0]))["predictions"]
    torch.testing.assert_close(said, torch.tensor([0.05, 0.9]))
    torch.testing.assert_close(swapped, torch.tensor([0.9, 0.05]))
    with pytest.raises(ValueError, match="needs boundary_index"):
        regressor(**batch)

    regressor.init_prior({"P1_start": 0.0})  # an edge prior keeps the sigmoid off its flat tail
    with torch.no_grad():
        edge = regressor(**batch, boundary_index=torch.tensor([0, 0]))["predictions"]
    torch.testing.assert_close(edge, torch.tensor([0.02, 0.02]))

    regressor.save_pretrained(tmp_path)
    reloaded = OffsetRegressor.from_pretrained(model, tmp_path, QWEN2_AUDIO)
    assert reloaded.boundaries == names
    torch.testing.assert_close(reloaded.head.bias, regressor.head.bias)
