"""Prompt templates: the user's file, checked with the file named; few-shot examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiolora.labeling.chunks import Chunk
from audiolora.labeling.llm import AnswerError, parse_answer
from audiolora.labeling.prompt import (
    DEFAULT_TEMPLATE,
    PromptTemplate,
    TemplateError,
    few_shot_examples,
)


def test_the_shipped_template_asks_for_each_answer_word() -> None:
    template = PromptTemplate.load()
    question = template.fill(Chunk(30.0, 34.0, "client", "It is raining."), None, 120.0, "")
    assert "Passage (client, 25 % into the session): It is raining." in question
    for word in ("orientation", "memory", "processing", "other"):
        assert word in question


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("Label {passage}", "unknown placeholder(s) ['passage']"),
        ("Label this: {previous}", "needs {text}"),
        ("A brace { here {text}", "write a literal brace"),
    ],
)
def test_a_bad_template_is_named_with_the_fix(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "mine.txt"
    path.write_text(text)
    with pytest.raises(TemplateError, match="mine.txt") as caught:
        PromptTemplate.load(path)
    assert complaint in str(caught.value)


def test_few_shot_examples_take_each_answer_from_labelled_passages() -> None:
    chunks = [
        Chunk(0, 1, "clinician", "hello", "lead_in"),
        Chunk(1, 2, "clinician", "the plan", "P1"),
        Chunk(2, 3, "client", "it is dark", "P2"),
        Chunk(3, 4, "client", "it was hard", "P3"),
    ]
    text = few_shot_examples(chunks, 1)
    assert "Passage (clinician): hello\nAnswer: other" in text
    assert "Passage (client): it is dark\nAnswer: memory" in text
    assert few_shot_examples(chunks, 0) == ""


@pytest.mark.parametrize(
    ("reply", "word"),
    [
        ("memory", "memory"),
        ("Orientation.", "orientation"),
        ("The answer is: processing", "processing"),
    ],
)
def test_a_reply_naming_one_answer_word_is_read(reply: str, word: str) -> None:
    assert parse_answer(reply) == word


def test_a_reply_naming_none_or_two_is_an_answer_error() -> None:
    for reply in ("I am not sure", "either memory or processing", ""):
        with pytest.raises(AnswerError):
            parse_answer(reply)


@pytest.mark.parametrize(
    "path", sorted(DEFAULT_TEMPLATE.parent.glob("*.txt")), ids=lambda p: p.name
)
def test_every_shipped_template_loads_and_names_every_answer(path: Path) -> None:
    text = PromptTemplate.load(path).fill(Chunk(0, 1, "client", "hello"), None, 10.0, "")
    assert all(word in text for word in ("orientation", "memory", "processing", "other"))
