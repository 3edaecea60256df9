"""The verified manifest: decisions written at once, read back on start, always whole."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from audiolora.data.sessions import BOUNDARIES, read_sessions
from audiolora.review.sources import ReviewError, load_source, select
from audiolora.review.store import DecisionError, Store
from tests.review.helpers import write_manifest


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_decisions_round_trip_through_the_verified_file(manifest: Path, tmp_path: Path) -> None:
    sessions = load_source(manifest).sessions
    out = tmp_path / "elsewhere" / "verified.jsonl"
    out.parent.mkdir()
    store = Store(out, "annotated", sessions, "ana")
    store.decide(sessions[1], "P1_start", "accept")
    store.decide(sessions[1], "P2_start", "move", 4.25)
    store.decide(sessions[1], "P2_start", "move", 4.75)
    store.decide(sessions[1], "P3_start", "absent")

    [row] = rows(out)  # only sessions with a decision are written
    assert row["audio"] == "../data/audio/s1.wav"  # relative to the output's folder
    assert (out.parent / row["transcript"]).resolve() == sessions[1].transcript.resolve()
    assert row["speakers"] == 2  # the rest of the source row is kept
    assert row["boundaries"]["P2_start"] == 4.75
    assert row["boundaries"]["P3_start"] is None
    assert row["boundaries"]["P2_end"] == 6.1  # undecided: the annotation stays
    assert row["review_complete"] is False
    moves = [e for e in row["review"] if e["boundary"] == "P2_start"]
    assert [(e["before"], e["value"]) for e in moves] == [(4.1, 4.25), (4.25, 4.75)]
    assert row["review"][0] == {
        **row["review"][0],
        "action": "accept",
        "value": 1.1,
        "before": 1.1,
        "rater": "ana",
    }
    assert row["review"][0]["time"].endswith("+00:00")

    again = Store(out, "annotated", sessions, "ben")
    assert again.decisions(sessions[1]) == {"P1_start": 1.1, "P2_start": 4.75, "P3_start": None}
    assert again.decisions(sessions[0]) == {}


def test_a_complete_review_is_a_manifest_training_reads(manifest: Path) -> None:
    sessions = load_source(manifest).sessions
    out = manifest.with_name("v.jsonl")
    store = Store(out, "annotated", sessions, "ana")
    for name in BOUNDARIES[:-1]:
        store.decide(sessions[0], name, "accept")
    store.decide(sessions[0], "P3_end", "move", 11.5)
    [row] = rows(out)
    assert row["review_complete"] is True
    read, problems = read_sessions(out, window_s=5, boundaries=BOUNDARIES)
    assert problems == []
    assert read[0].boundaries["P3_end"] == 11.5


def test_rows_of_sessions_not_loaded_now_are_kept(tmp_path: Path) -> None:
    all_sessions = load_source(write_manifest(tmp_path, n=5)).sessions
    out = tmp_path / "v.jsonl"
    first = select(all_sessions, sample=0.2, seed=0, sort="order")
    Store(out, "annotated", first, "ana").decide(first[0], "P1_start", "accept")
    second = [s for s in all_sessions if s is not first[0]][:1]
    Store(out, "annotated", second, "ana").decide(second[0], "P1_end", "absent")
    assert len(rows(out)) == 2


def test_refused_decisions_change_nothing(manifest: Path) -> None:
    sessions = load_source(manifest).sessions
    out = manifest.with_name("v.jsonl")
    store = Store(out, "annotated", sessions, "ana")
    with pytest.raises(DecisionError, match="between 0 and 12.00 s"):
        store.decide(sessions[0], "P1_start", "move", 13)
    with pytest.raises(DecisionError, match="unknown boundary"):
        store.decide(sessions[0], "P4_start", "accept")
    with pytest.raises(DecisionError, match="unknown action"):
        store.decide(sessions[0], "P1_start", "delete")
    sessions[0].annotated.pop("P1_start")
    with pytest.raises(DecisionError, match="no value to accept"):
        store.decide(sessions[0], "P1_start", "accept")
    assert not out.exists()


def test_a_damaged_verified_file_is_named_not_overwritten(manifest: Path) -> None:
    out = manifest.with_name("v.jsonl")
    out.write_text('{"audio": "a.wav", "review": []}\n{"audio": \n')
    with pytest.raises(ReviewError, match="v.jsonl:2: .*move the file aside"):
        Store(out, "annotated", load_source(manifest).sessions, "ana")
    with pytest.raises(ReviewError, match="does not exist"):
        Store(manifest.parent / "no" / "v.jsonl", "annotated", [], "ana")


def test_the_file_is_always_whole_json_lines(manifest: Path) -> None:
    """A reader (training, a second look) never sees half a write."""
    sessions = load_source(manifest).sessions
    out = manifest.with_name("v.jsonl")
    store = Store(out, "annotated", sessions, "ana")
    store.decide(sessions[0], "P1_start", "accept")
    done, seen, bad = threading.Event(), [0], []

    def read() -> None:
        while not done.is_set():
            text = out.read_text()
            try:
                seen[0] += len([json.loads(line) for line in text.splitlines()])
            except json.JSONDecodeError as e:
                bad.append(f"{e}: {text!r}")

    reader = threading.Thread(target=read)
    reader.start()
    for k in range(300):
        store.decide(sessions[k % 3], "P2_start", "move", 4 + k / 100)
    done.set()
    reader.join()
    assert bad == [] and seen[0] > 0
    assert len(rows(out)) == 3
    assert [p.name for p in out.parent.iterdir() if ".tmp" in p.name] == []
