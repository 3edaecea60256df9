"""Where in a recording each phase usually is, learned from labelled sessions, as a prior
beside the LLM's answers.

Why: a small LLM reads a passage without knowing that orientation comes early and processing
late; labelled sessions know it. The prior is p(answer | share of the recording), counted over
the passages of labelled sessions in `BINS` bins with add-one smoothing, and multiplies the
LLM's answer probabilities, raised to `weight`, before the phase search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audiolora.data.sessions import SessionRecord
from audiolora.labeling.chunks import Chunk, transcript_chunks
from audiolora.labeling.prompt import ANSWERS, PHASE_WORD

BINS = 20
DEFAULT_WEIGHT = 0.3
"""Exponent of the prior. Counted prior probabilities are near 0 or 1 and would drown the
LLM at full weight; 0.3 was the best of 0, 0.1, 0.2, 0.3, 0.5 and 1 for SmolLM2 on the
`builtin:sessions` training sessions, each labelled with the prior of the other seven
(leave one session out): MAE 23.9, 11.6, 5.1, 3.8, 4.5 and 4.4 s."""


class PositionPrior:
    """p(answer | position) from labelled sessions (their transcript words' `phase`)."""

    def __init__(self, counts: np.ndarray, weight: float = DEFAULT_WEIGHT) -> None:
        if weight < 0:
            raise ValueError(f"the prior's weight must be >= 0, got {weight}")
        self.table = (counts + 1) / (counts + 1).sum(axis=1, keepdims=True)
        self.weight = weight

    @classmethod
    def from_sessions(
        cls, sessions: Sequence[SessionRecord], max_words: int, weight: float = DEFAULT_WEIGHT
    ) -> PositionPrior:
        words = list(ANSWERS)
        counts = np.zeros((BINS, len(words)))
        for session in sessions:
            for chunk in transcript_chunks(session.words, max_words):
                word = PHASE_WORD.get(chunk.phase if chunk.phase in PHASE_WORD else None)
                counts[position_bin(chunk, session.duration), words.index(word)] += 1
        if not counts.sum():
            raise ValueError("no labelled passage to learn where the phases lie from")
        return cls(counts, weight)

    def combine(
        self, answers: Sequence[dict[str, float]], chunks: Sequence[Chunk], duration: float
    ) -> list[dict[str, float]]:
        """Each passage's answer probabilities times the prior at its position (to the power
        `weight`), renormalised."""
        out = []
        for answer, chunk in zip(answers, chunks, strict=True):
            prior = self.table[position_bin(chunk, duration)] ** self.weight
            joint = np.array([answer[w] for w in ANSWERS]) * prior
            out.append(dict(zip(ANSWERS, (joint / joint.sum()).tolist(), strict=True)))
        return out


def position_bin(chunk: Chunk, duration: float) -> int:
    middle = (chunk.start + chunk.end) / 2
    return min(BINS - 1, max(0, int(BINS * middle / max(duration, 1e-9))))
