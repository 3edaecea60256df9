"""ZSTE scoring on planted-answer models: clips embedded next to the captions that are true of
them (or deliberately of the reverse order) score exactly as planted."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from audiolora.data.sound_events import (
    AND_PHRASES,
    BEFORE_PHRASES,
    WHILE_PHRASES,
    SoundEvent,
    caption,
)
from audiolora.evaluation.zste import pair_candidates, zste_metrics

CLASSES = ["bell", "dog", "door", "drum", "glass", "horn", "rain", "wind"]


def vector(text: str) -> torch.Tensor:
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return F.normalize(torch.randn(256, generator=torch.Generator().manual_seed(seed)), dim=0)


def embed_texts(texts: list[str]) -> torch.Tensor:
    return torch.stack([vector(t) for t in texts])


def event(labels: tuple[str, ...], relation: str) -> SoundEvent:
    return SoundEvent(Path("x.wav"), labels, relation, "", "", 1)


def planted(e: SoundEvent, swap_order: bool = False) -> torch.Tensor:
    """A clip's embedding: the mean of the captions true of it (of its reverse, if asked)."""
    if e.relation == "single":
        return vector(caption(e.labels, "single", 1))
    a, b = e.labels
    texts = [caption((a, b), "before", p, order=False) for p in range(len(AND_PHRASES))]
    order = (b, a) if swap_order else (a, b)
    phrases = BEFORE_PHRASES if e.relation == "before" else WHILE_PHRASES
    texts += [caption(order, e.relation, p) for p in range(len(phrases))]
    return F.normalize(torch.stack([vector(t) for t in texts]).mean(0), dim=0)


EVENTS = [
    event(("dog",), "single"),
    event(("rain",), "single"),
    event(("glass",), "single"),
    event(("dog", "door"), "before"),
    event(("horn", "bell"), "before"),
    event(("wind", "drum"), "while"),
]


def test_a_model_that_knows_everything_scores_one() -> None:
    clips = torch.stack([planted(e) for e in EVENTS])
    m = zste_metrics(clips, EVENTS, CLASSES, embed_texts, distractors=5)
    for key in ("zste_single", "zste_pair", "zste_order", "zste_overlap", "a2t_r@1", "t2a_r@1"):
        assert m[key] == 1.0, key
    assert m["zste_mean"] == 1.0 and m["n"] == len(EVENTS)


def test_a_model_that_hears_the_reverse_order_scores_zero_on_order() -> None:
    clips = torch.stack([planted(e, swap_order=True) for e in EVENTS])
    m = zste_metrics(clips, EVENTS, CLASSES, embed_texts, distractors=5)
    assert m["zste_order"] == 0.0
    assert m["zste_single"] == 1.0 and m["zste_pair"] == 1.0


def test_pair_distractors_differ_from_the_truth() -> None:
    import random

    pairs = pair_candidates(("dog", "door"), CLASSES, 6, random.Random(0))
    assert pairs[0] == ("dog", "door") and len(pairs) == 7
    assert len({frozenset(p) for p in pairs}) == 7
    assert all(len(set(p)) == 2 for p in pairs)
