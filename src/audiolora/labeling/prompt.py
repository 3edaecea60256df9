"""The question asked of the LLM for each passage: a template file the user can edit.

A template is plain text with `{placeholders}`: `{text}` (the passage, required), `{speaker}`,
`{position}` (how far into the recording, "35 %"), `{previous}` (the passage before, for
context) and `{examples}` (few-shot examples from labelled sessions, empty without them). The
LLM answers with one of `ANSWERS`. Everything before the first per-passage placeholder is the
same for every question, so a local model reads it once (a key/value cache).
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from audiolora.labeling.chunks import Chunk

DEFAULT_TEMPLATE = Path(__file__).resolve().parent.parent / "recipes" / "labeling" / "phases.txt"

ANSWERS: dict[str, str | None] = {
    "orientation": "P1",
    "memory": "P2",
    "processing": "P3",
    "other": None,
}
"""Answer word -> the phase it names (None: outside every phase)."""

PHASE_WORD = {phase: word for word, phase in ANSWERS.items()}
PER_PASSAGE = ("previous", "speaker", "position", "text")
KNOWN = ("examples", *PER_PASSAGE)


class TemplateError(ValueError):
    """A template the labeller cannot use; the message names the file and the fix."""


@dataclass(frozen=True)
class PromptTemplate:
    """A checked template, split where the per-passage part begins."""

    path: Path
    text: str

    @classmethod
    def load(cls, path: Path | None = None) -> PromptTemplate:
        path = Path(path).resolve() if path else DEFAULT_TEMPLATE
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TemplateError(f"prompt template {path}: unreadable ({e})") from e
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
        except ValueError as e:
            raise TemplateError(
                f"prompt template {path}: {e}; write a literal brace as {{{{ or }}}}"
            ) from e
        unknown = sorted({f for f in fields if f not in KNOWN})
        if unknown:
            raise TemplateError(
                f"prompt template {path}: unknown placeholder(s) {unknown}; use {list(KNOWN)}"
            )
        if "text" not in fields:
            raise TemplateError(f"prompt template {path}: needs {{text}}, where the passage goes")
        return cls(path, text)

    def fill(self, chunk: Chunk, previous: Chunk | None, duration: float, examples: str) -> str:
        """The whole question for one passage."""
        return self.text.format(
            examples=examples,
            previous=previous.text if previous else "(start of the session)",
            speaker=chunk.speaker or "speaker",
            position=f"{100 * chunk.start / max(duration, 1e-9):.0f} %",
            text=chunk.text,
        )


def few_shot_examples(chunks: Sequence[Chunk], per_answer: int, seed: int = 0) -> str:
    """`per_answer` labelled passages for each answer word, as lines the template's
    `{examples}` takes; passages come from labelled sessions (their words' `phase`)."""
    if per_answer <= 0:
        return ""
    rng = random.Random(seed)
    lines = ["Examples:"]
    for word, phase in ANSWERS.items():
        pool = [c for c in chunks if (c.phase if c.phase in PHASE_WORD else None) == phase]
        for chunk in rng.sample(pool, min(per_answer, len(pool))):
            lines.append(f"Passage ({chunk.speaker or 'speaker'}): {chunk.text}\nAnswer: {word}")
    return "\n".join(lines) + "\n"
