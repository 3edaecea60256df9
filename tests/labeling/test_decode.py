"""From passage answers to boundaries: phase order, absent phases, word times."""

from __future__ import annotations

import pytest

from audiolora.data.sessions import Word
from audiolora.labeling.chunks import transcript_chunks
from audiolora.labeling.decode import propose_boundaries
from audiolora.labeling.llm import certain

WORDS = ["other", "orientation", "orientation", "memory", "processing", "processing", "other"]


def passages(n: int):  # noqa: ANN201
    return transcript_chunks([Word(f"w{i}", 10.0 * i, 10.0 * i + 5, f"s{i % 2}") for i in range(n)])


def test_each_phase_spans_its_passages_in_order() -> None:
    found, order = propose_boundaries(passages(7), [certain(w) for w in WORDS])
    times = {name: p.time_s for name, p in found.items()}
    assert times == {
        "P1_start": 10,
        "P1_end": 25,
        "P2_start": 30,
        "P2_end": 35,
        "P3_start": 40,
        "P3_end": 55,
    }
    assert order == ["P1", "P2", "P3"]
    assert found["P2_start"].evidence == "s1 at 30.0 s: w3"


def test_one_answer_out_of_order_cannot_reorder_the_phases() -> None:
    confused = WORDS.copy()
    confused[1] = "processing"  # P3 before P1 is not a valid session: outvoted by the order
    found, _ = propose_boundaries(passages(7), [certain(w) for w in confused])
    assert found["P1_start"].time_s <= found["P2_start"].time_s <= found["P3_start"].time_s
    assert found["P3_start"].time_s == 40


def test_a_phase_nobody_named_is_absent_with_the_confidence_of_that() -> None:
    no_memory = [w if w != "memory" else "orientation" for w in WORDS]
    found, order = propose_boundaries(passages(7), [certain(w) for w in no_memory])
    assert found["P2_start"].time_s is None and found["P2_end"].time_s is None
    assert found["P2_start"].confidence == pytest.approx(1, abs=1e-3)
    assert order == ["P1", "P3"]


def test_any_order_finds_a_reordered_session() -> None:
    swapped = ["other", "memory", "orientation", "orientation", "processing", "other", "other"]
    found, order = propose_boundaries(passages(7), [certain(w) for w in swapped], any_order=True)
    assert order == ["P2", "P1", "P3"]
    assert found["P2_start"].time_s == 10 and found["P1_start"].time_s == 20


def test_confidence_is_the_weaker_side_of_the_boundary() -> None:
    answers = [certain(w) for w in WORDS]
    answers[3] = {"orientation": 0.3, "memory": 0.6, "processing": 0.05, "other": 0.05}
    found, _ = propose_boundaries(passages(7), answers)
    assert found["P2_start"].confidence == pytest.approx(0.6)


def test_long_turns_are_cut_and_no_word_is_lost() -> None:
    words = [Word(f"w{i}", i * 0.5, i * 0.5 + 0.4, "client") for i in range(100)]
    chunks = transcript_chunks(words, max_words=40)
    assert [len(c.text.split()) for c in chunks] == [40, 40, 20]
    assert " ".join(c.text for c in chunks) == " ".join(w.text for w in words)
    paused = [*words[:3], Word("later", 10.0, 10.4, "client")]
    assert len(transcript_chunks(paused)) == 2  # a long silence starts a new passage
