"""From one answer per passage to phase boundaries: the best segmentation in phase order.

The passages are split into other / P1 / other / P2 / other / P3 / other, any part possibly
empty (an empty P part is an absent phase), maximising the sum of the passages' log
probabilities for the part they land in (a Viterbi search over a left-to-right chain). A phase
starts where its first passage starts and ends where its last passage ends, so boundaries are
word times and always in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations

import numpy as np

from audiolora.labeling.chunks import Chunk
from audiolora.labeling.llm import log_probabilities
from audiolora.labeling.prompt import PHASE_WORD

PHASES = ("P1", "P2", "P3")
EVIDENCE_WORDS = 16


@dataclass(frozen=True)
class Proposal:
    """One boundary as the labeller proposes it."""

    time_s: float | None
    """None: the phase is absent from the recording."""
    evidence: str
    """The words the proposal rests on (the passage that starts or ends the phase)."""
    confidence: float
    """How sure the LLM was of the passages on both sides of the boundary (0 to 1)."""

    def as_json(self) -> dict[str, object]:
        time = None if self.time_s is None else round(self.time_s, 3)
        return {"time_s": time, "evidence": self.evidence, "confidence": round(self.confidence, 3)}


def segment(scores: np.ndarray, order: Sequence[str]) -> tuple[float, list[str | None]]:
    """Best chain segmentation: (its total log probability, each passage's phase or None).

    `scores[i, k]`: log p of passage i under phase `order[k]` for k < len(order), and under
    "outside every phase" in the last column.
    """
    n, phases = len(scores), len(order)
    # Chain states: outside, phase 0, outside, phase 1, ..., outside.
    columns = [phases if s % 2 == 0 else s // 2 for s in range(2 * phases + 1)]
    emit = scores[:, columns]  # (n, states)
    states = emit.shape[1]
    best = np.full((n, states), -np.inf)
    back = np.zeros((n, states), dtype=int)
    best[0] = emit[0]
    for i in range(1, n):
        # Moving only forward: the best earlier-or-same state so far.
        running = np.maximum.accumulate(best[i - 1])
        arg = np.zeros(states, dtype=int)
        for s in range(1, states):
            arg[s] = s if best[i - 1, s] >= running[s - 1] else arg[s - 1]
        best[i] = running + emit[i]
        back[i] = arg
    path = [int(best[-1].argmax())]
    for i in range(n - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    path.reverse()
    labels = [None if s % 2 == 0 else order[s // 2] for s in path]
    return float(best[-1].max()), labels


def propose_boundaries(
    chunks: Sequence[Chunk], answers: Sequence[dict[str, float]], any_order: bool = False
) -> tuple[dict[str, Proposal], list[str]]:
    """Every boundary of P1..P3 from the passages' answer probabilities, and the phase order
    found (always P1, P2, P3 unless `any_order`, which also tries the other five orders)."""
    if not chunks:
        raise ValueError("no transcript words to label")
    logp = [log_probabilities(a) for a in answers]
    orders = list(permutations(PHASES)) if any_order else [PHASES]
    found = []
    for order in orders:
        words = [PHASE_WORD[p] for p in order] + [PHASE_WORD[None]]
        scores = np.array([[lp[w] for w in words] for lp in logp])
        total, labels = segment(scores, order)
        found.append((total, order, labels))
    _, order, labels = max(found, key=lambda f: f[0])

    proposals: dict[str, Proposal] = {}
    for phase in PHASES:
        word = PHASE_WORD[phase]
        inside = [i for i, label in enumerate(labels) if label == phase]
        if not inside:
            sure = 1 - max(a[word] for a in answers)
            for edge in ("start", "end"):
                proposals[f"{phase}_{edge}"] = Proposal(None, "", sure)
            continue
        first, last = inside[0], inside[-1]
        before = 1 - answers[first - 1][word] if first > 0 else 1.0
        after = 1 - answers[last + 1][word] if last + 1 < len(chunks) else 1.0
        proposals[f"{phase}_start"] = Proposal(
            chunks[first].start, evidence(chunks[first]), min(answers[first][word], before)
        )
        proposals[f"{phase}_end"] = Proposal(
            chunks[last].end, evidence(chunks[last]), min(answers[last][word], after)
        )
    return proposals, [p for p in order if any(label == p for label in labels)]


def evidence(chunk: Chunk) -> str:
    words = chunk.text.split()
    text = " ".join(words[:EVIDENCE_WORDS]) + (" ..." if len(words) > EVIDENCE_WORDS else "")
    return f"{chunk.speaker or 'speaker'} at {chunk.start:.1f} s: {text}"
