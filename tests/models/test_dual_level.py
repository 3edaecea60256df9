"""The auxiliary dual-level head: each sample is routed to its own category's attribute head,
and the loss is the plain cross-entropy sum a hand computation gives."""

import math

import pytest
import torch

from audiolora.models.heads.dual_level import DualLevelHead, audio_pooled

CATEGORIES = {"age": ["adult", "child"], "emotion": ["neutral", "happy", "sad"]}


def test_routing_and_loss_match_a_hand_computed_case() -> None:
    head = DualLevelHead(2, CATEGORIES)
    with torch.no_grad():
        head.category.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        head.category.bias.zero_()
        head.attributes[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        head.attributes[0].bias.zero_()
        head.attributes[1].weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
        head.attributes[1].bias.zero_()
    pooled = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    category = torch.tensor([0, 1])  # row 0 is an age sample, row 1 an emotion sample
    attribute = torch.tensor([1, 1])  # child; happy
    category_loss, attribute_loss = head.losses(pooled, category, attribute)

    def ce(logits: list[float], target: int) -> float:
        return -logits[target] + math.log(sum(math.exp(x) for x in logits))

    # Category logits: row 0 -> [1, 0], row 1 -> [0, 1]; both right.
    assert category_loss.item() == pytest.approx((ce([1, 0], 0) + ce([0, 1], 1)) / 2)
    # Row 0 goes to the age head (logits [1, 0], target child); row 1 to the emotion head
    # (logits [0, 2, 0], target happy). Never to the other category's head.
    assert attribute_loss.item() == pytest.approx((ce([1, 0], 1) + ce([0, 2, 0], 1)) / 2)


def test_a_head_per_category_sized_to_its_values() -> None:
    head = DualLevelHead(8, CATEGORIES)
    assert [h.out_features for h in head.attributes] == [2, 3]
    assert head.category.out_features == 2


def test_pooling_reads_audio_positions_only() -> None:
    hidden = torch.arange(12, dtype=torch.float32).view(1, 4, 3)
    input_ids = torch.tensor([[5, 9, 9, 7]])  # 9 = audio placeholder
    mask = torch.ones_like(input_ids)
    pooled = audio_pooled(hidden, input_ids, mask, audio_token_id=9)
    assert torch.allclose(pooled, hidden[0, 1:3].mean(0, keepdim=True))
    # A row without audio falls back to every real position.
    text_only = audio_pooled(hidden, torch.tensor([[5, 6, 7, 8]]), mask, audio_token_id=9)
    assert torch.allclose(text_only, hidden[0].mean(0, keepdim=True))
