"""Transcript passages the LLM labels one at a time: a speaker's turn, split when it is long."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from audiolora.data.sessions import Word

MAX_CHUNK_WORDS = 40
"""A long monologue (a whole narrative) is cut into passages of at most this many words, so
every word is seen (nothing truncated) and a boundary inside a long turn can still be found."""


PAUSE_S = 1.0
"""A silence this long inside one speaker's speech starts a new passage: consecutive turns of
one speaker (a transcript without a turn between them) are often different parts."""


@dataclass(frozen=True)
class Chunk:
    """Consecutive words of one speaker, with their span in the recording."""

    start: float
    end: float
    speaker: str | None
    text: str
    phase: str | None = None
    """The transcript's own phase label of the chunk's first word, when it has one: used only
    to pick few-shot examples from labelled sessions, never to label."""


def transcript_chunks(words: Sequence[Word], max_words: int = MAX_CHUNK_WORDS) -> list[Chunk]:
    """Speaker turns of `words` (in time order; a pause of `PAUSE_S` also ends a turn), each
    split into passages of <= `max_words`."""
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    chunks: list[Chunk] = []
    turn: list[Word] = []

    def close() -> None:
        for i in range(0, len(turn), max_words):
            part = turn[i : i + max_words]
            text = " ".join(w.text for w in part)
            chunks.append(Chunk(part[0].start, part[-1].end, part[0].speaker, text, part[0].phase))
        turn.clear()

    for word in words:
        if turn and (word.speaker != turn[-1].speaker or word.start - turn[-1].end >= PAUSE_S):
            close()
        turn.append(word)
    close()
    return chunks
