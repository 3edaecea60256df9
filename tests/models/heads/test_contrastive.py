"""The modified InfoNCE against a hand-computed batch, and the kinds a batch gets."""

from __future__ import annotations

import math

import torch

from audiolora.models.heads.contrastive import (
    SAME,
    WRONG_ORDER,
    WRONG_OVERLAP,
    temporal_info_nce,
    weighted_info_nce,
)
from audiolora.tasks.contrastive import kind_matrix, temporal_kind


def test_loss_matches_a_hand_computed_batch() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.0, 1.5, -1.0]])
    kinds = torch.tensor([[0, 0, WRONG_ORDER], [0, 0, 0]])
    row0 = -2.0 + math.log(math.exp(2.0) + math.exp(1.0) + 3.0 * math.exp(0.5))
    row1 = -1.5 + math.log(math.exp(0.0) + math.exp(1.5) + math.exp(-1.0))
    got = weighted_info_nce(logits, kinds, order_weight=2.0, overlap_weight=5.0)
    assert math.isclose(float(got), (row0 + row1) / 2, rel_tol=1e-6)


def test_the_extra_weight_moves_exactly_the_temporally_wrong_pairs() -> None:
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    kinds = torch.zeros(3, 5, dtype=torch.long)
    kinds[0, 3], kinds[1, 4], kinds[2, 0] = WRONG_ORDER, WRONG_OVERLAP, SAME

    def grad(order: float, overlap: float) -> torch.Tensor:
        logits.grad = None
        weighted_info_nce(logits, kinds, order, overlap).backward()
        return logits.grad.clone()

    plain, weighted = grad(0.0, 0.0), grad(1.0, 3.0)
    changed = ~torch.isclose(plain, weighted)
    # Only rows holding a wrong pair change; there the wrong pair is pushed down harder...
    assert changed[2].sum() == 0
    assert weighted[0, 3] > plain[0, 3] and weighted[1, 4] > plain[1, 4]
    # ...and the masked same-meaning caption gets no gradient at all.
    assert plain[2, 0] == 0 and weighted[2, 0] == 0


def test_symmetric_loss_is_the_mean_of_both_directions() -> None:
    g = torch.Generator().manual_seed(1)
    audio = torch.nn.functional.normalize(torch.randn(2, 4, generator=g), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(3, 4, generator=g), dim=-1)
    kinds = torch.tensor([[0, 0, WRONG_ORDER], [0, 0, 0]])
    scale = torch.tensor(10.0)
    one_way = temporal_info_nce(audio, text, scale, kinds, 1.0, 1.0, symmetric=False)
    both = temporal_info_nce(audio, text, scale, kinds, 1.0, 1.0)
    logits = scale * text[:2] @ audio.T
    t2a = weighted_info_nce(logits, kinds[:, :2].T, 1.0, 1.0)
    assert torch.isclose(both, (one_way + t2a) / 2)


def test_kinds_of_a_batch() -> None:
    ab, ba = ("before", ("a", "b")), ("before", ("b", "a"))
    both = ("while", ("a", "b"))
    other = ("before", ("a", "c"))
    assert temporal_kind(ba, ab) == WRONG_ORDER
    assert temporal_kind(both, ab) == WRONG_OVERLAP and temporal_kind(ab, both) == WRONG_OVERLAP
    assert temporal_kind(other, ab) == 0 and temporal_kind(("and", ("a", "b")), ab) == 0
    kinds = kind_matrix([ab, ab, both], [ab, ab, both, ba])
    assert kinds.tolist() == [
        [0, SAME, WRONG_OVERLAP, WRONG_ORDER],
        [SAME, 0, WRONG_OVERLAP, WRONG_ORDER],
        [WRONG_OVERLAP, WRONG_OVERLAP, 0, WRONG_OVERLAP],
    ]
