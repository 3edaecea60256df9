"""Synthetic therapy sessions: what a user training a phase localizer on them relies on."""

from __future__ import annotations

import json
import random
import re
import shutil
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolora.builtin.synth import sessions
from audiolora.builtin.synth.session_text import (
    NARRATIVE_DETAILS,
    PAST_MARKERS,
    PRESENT_VERBS,
    RETELL_OPENERS,
    SCENARIOS,
    SessionScript,
)
from audiolora.builtin.synth.sessions import PHASES, check_session, synth_sessions_dataset

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)"
)
SMALL = {"n_sessions": 2, "n_eval": 1, "min_minutes": 0.75, "max_minutes": 1.25, "progress": False}


def read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def sessions_of(root: Path) -> list[tuple[dict, list[dict]]]:
    """Every (manifest row, transcript words) pair, train first."""
    rows = read_manifest(root / "train.jsonl") + read_manifest(root / "eval.jsonl")
    return [(r, json.loads((root / r["transcript"]).read_text(encoding="utf-8"))) for r in rows]


def sentences(words: list[dict]) -> list[list[str]]:
    """Lower-cased words grouped into sentences at . ? and !"""
    out: list[list[str]] = [[]]
    for w in words:
        out[-1].append(re.sub(r"[^a-z']", "", w["word"].lower()))
        if w["word"][-1] in ".?!":
            out.append([])
    return [s for s in out if s]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sessions")
    return out, synth_sessions_dataset(out, seed=0, **SMALL)


def test_narrative_templates_are_first_person_present_tense() -> None:
    templates = [s for sc in SCENARIOS for beat in sc.beats for s in beat]
    for sentence in [*templates, *NARRATIVE_DETAILS, *RETELL_OPENERS]:
        words = set(re.findall(r"[a-z']+", sentence.lower()))
        assert words & PRESENT_VERBS, f"no present-tense verb in {sentence!r}"
        assert not words & PAST_MARKERS, f"past tense in the narrative: {sentence!r}"
    story, again = SessionScript(random.Random(0)), SessionScript(random.Random(0))
    told = [story.narrative_sentence() for _ in range(40)]
    assert told == [again.narrative_sentence() for _ in range(40)], "same seed, same story"
    assert len(set(told)) > 25, "a narrative should not repeat itself sentence by sentence"


@needs_espeak
def test_manifests_list_every_session_with_relative_paths(dataset: tuple[Path, dict]) -> None:
    out, summary = dataset
    assert json.loads((out / "dataset.json").read_text()) == summary
    for split in ("train", "eval"):
        rows = read_manifest(out / f"{split}.jsonl")
        assert len(rows) == 1 == summary["splits"][split]["sessions"]
        row = rows[0]
        assert row["audio"] == f"audio/{split}/session_000.wav"
        assert row["transcript"] == f"transcripts/{split}/session_000.json"
        assert (out / row["audio"]).is_file() and (out / row["transcript"]).is_file()
        assert set(row["boundaries"]) == {f"{p}_{e}" for p in PHASES for e in ("start", "end")}
        assert set(row["speakers"]) == {"clinician", "client"}


@needs_espeak
def test_phases_come_in_order_and_every_word_lies_inside_its_phase(
    dataset: tuple[Path, dict],
) -> None:
    out, _ = dataset
    for row, words in sessions_of(out):
        b = row["boundaries"]
        edges = [b[f"{p}_{e}"] for p in PHASES for e in ("start", "end")]
        assert edges[0] >= 0 and edges == sorted(edges) and edges[-1] <= row["duration"]
        assert all(b[f"{p}_end"] - b[f"{p}_start"] > 3 for p in PHASES), f"a phase is empty: {b}"
        order = ("lead_in", *PHASES, "wrap_up")
        phase_order = [order.index(w["phase"]) for w in words]
        assert phase_order == sorted(phase_order), "small talk, P1, P2, P3, small talk"
        assert set(phase_order) == {0, 1, 2, 3, 4}
        # P1_start and P3_end are real boundaries: small talk lies before and after them.
        assert b["P1_start"] > 3 and row["duration"] - b["P3_end"] > 3, b
        for w in words:
            if w["phase"] == "lead_in":
                assert w["end"] <= b["P1_start"]
            elif w["phase"] == "wrap_up":
                assert w["start"] >= b["P3_end"]
            else:
                assert b[f"{w['phase']}_start"] <= w["start"] < w["end"] <= b[f"{w['phase']}_end"]
        starts = [w["start"] for w in words]
        assert starts == sorted(starts), "word times must increase through the session"
        check_session(row, words)  # the same check, as a user would run it on loaded data


def test_check_session_names_the_file_and_the_problem() -> None:
    row = {
        "audio": "audio/train/session_000.wav",
        "duration": 30.0,
        "boundaries": {"P1_start": 0.5, "P1_end": 9.0, "P2_start": 8.0, "P2_end": 20.0,
                       "P3_start": 21.0, "P3_end": 29.0},
    }  # fmt: skip
    with pytest.raises(ValueError, match="session_000.wav: phase boundaries out of order"):
        check_session(row, [])
    row["boundaries"]["P2_start"] = 10.0
    late = {"word": "I", "start": 20.5, "end": 20.7, "speaker": "client", "phase": "P2"}
    with pytest.raises(ValueError, match="session_000.wav: word outside its phase"):
        check_session(row, [late])


@needs_espeak
def test_audio_is_16k_mono_speech_as_long_as_the_manifest_says(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    for row, _ in sessions_of(out):
        info = sf.info(str(out / row["audio"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.duration - row["duration"]) < 0.002
        audio, sr = sf.read(str(out / row["audio"]), dtype="float32")
        b = row["boundaries"]
        for p in PHASES:
            part = audio[int(b[f"{p}_start"] * sr) : int(b[f"{p}_end"] * sr)]
            assert np.sqrt(np.mean(part**2)) > 0.02, f"{p} of {row['audio']} is (nearly) silent"
        gap = audio[int(b["P1_end"] * sr) + 160 : int(b["P2_start"] * sr) - 160]
        assert gap.size and np.sqrt(np.mean(gap**2)) < 0.01, "phases should be parted by a pause"


@needs_espeak
def test_the_narrative_is_the_client_alone_in_first_person_present_tense(
    dataset: tuple[Path, dict],
) -> None:
    out, _ = dataset
    for _, words in sessions_of(out):
        narrative = [w for w in words if w["phase"] == "P2"]
        assert {w["speaker"] for w in narrative} == {"client"}
        for p in ("P1", "P3"):
            assert {w["speaker"] for w in words if w["phase"] == p} == {"clinician", "client"}
        told = sentences(narrative)
        assert len(told) >= 3
        for s in told:
            assert set(s) & PRESENT_VERBS, f"no present-tense verb: {' '.join(s)}"
            assert not set(s) & PAST_MARKERS, f"past tense in the narrative: {' '.join(s)}"
        first_person = [s for s in told if {"i", "my", "me"} & set(s)]
        assert len(first_person) >= len(told) / 3, "the narrative should be told as 'I'"


@needs_espeak
def test_the_client_narrates_slower_than_they_talk(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    for row, words in sessions_of(out):
        letters: dict[bool, float] = defaultdict(float)
        seconds: dict[bool, float] = defaultdict(float)
        for w in words:
            if w["speaker"] == "client":
                letters[w["phase"] == "P2"] += len(w["word"])
                seconds[w["phase"] == "P2"] += w["end"] - w["start"]
        narrating, talking = (letters[k] / seconds[k] for k in (True, False))
        assert narrating < 0.95 * talking, f"{row['audio']}: {narrating:.1f} vs {talking:.1f}"


@needs_espeak
def test_eval_sessions_use_voices_held_out_of_train(dataset: tuple[Path, dict]) -> None:
    out, summary = dataset
    train = read_manifest(out / "train.jsonl")
    evals = read_manifest(out / "eval.jsonl")
    train_voices = {v for r in train for v in r["speakers"].values()}
    eval_voices = {v for r in evals for v in r["speakers"].values()}
    assert not train_voices & eval_voices
    assert eval_voices <= set(summary["held_out_voices"])
    for r in train + evals:
        assert r["speakers"]["clinician"] != r["speakers"]["client"]


@needs_espeak
def test_same_seed_gives_the_same_sessions(dataset: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = dataset
    synth_sessions_dataset(tmp_path / "again", seed=0, **SMALL)
    synth_sessions_dataset(tmp_path / "other", seed=1, **SMALL)
    assert sessions_of(tmp_path / "again") == sessions_of(out)
    assert sessions_of(tmp_path / "other") != sessions_of(out)
    for row, _ in sessions_of(out):
        a, _ = sf.read(str(out / row["audio"]), dtype="int16")
        b, _ = sf.read(str(tmp_path / "again" / row["audio"]), dtype="int16")
        assert np.array_equal(a, b), f"{row['audio']} differs between two runs with seed 0"


@needs_espeak
def test_sessions_fill_the_requested_minutes_with_phases_of_varied_length(tmp_path: Path) -> None:
    summary = synth_sessions_dataset(
        tmp_path, n_sessions=3, n_eval=0, min_minutes=2.0, max_minutes=2.5, seed=3, progress=False
    )
    rows = read_manifest(tmp_path / "train.jsonl")
    assert len(rows) == 3
    assert all(120 <= r["duration"] <= 150 for r in rows), [r["duration"] for r in rows]
    shares = {
        p: [(r["boundaries"][f"{p}_end"] - r["boundaries"][f"{p}_start"]) / r["duration"]
            for r in rows]
        for p in PHASES
    }  # fmt: skip
    assert max(shares["P2"]) > max(shares["P1"]), "the narrative should be the longest part"
    for p in PHASES:
        assert len({round(s, 6) for s in shares[p]}) == 3, f"{p} lengths should vary"
    assert summary["splits"]["eval"]["requested"] == 0 and not read_manifest(
        tmp_path / "eval.jsonl"
    )


def hang_first_calls(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the first ``n`` engine calls of every session hang (sessions run in two threads)."""
    real_command = sessions._utterance_command
    calls: dict[Path, int] = defaultdict(int)
    lock = threading.Lock()

    def first_calls_hang(delivery: sessions.Delivery, text: str, wav: Path) -> list[str]:
        with lock:  # each session has its own temporary folder: count per folder
            calls[wav.parent] += 1
            hang = calls[wav.parent] <= n
        return ["sleep", "5"] if hang else real_command(delivery, text, wav)

    monkeypatch.setattr(sessions, "_utterance_command", first_calls_hang)


@needs_espeak
def test_a_hanging_call_times_out_and_is_retried_with_the_same_voice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hang_first_calls(monkeypatch, 1)
    started = time.monotonic()
    summary = synth_sessions_dataset(tmp_path, timeout_s=1.5, **SMALL)
    assert time.monotonic() - started < 20, "a hung engine call must not stall the run"
    assert summary["failed_calls"] == 2
    assert all("timed out after 1.5 s" in f["error"] for f in summary["failures"])
    rows = {r["audio"].split("/")[1]: r for r, _ in sessions_of(tmp_path)}
    for failure in summary["failures"]:  # the retry used the voice that hung
        assert failure["voice"] == rows[failure["split"]]["speakers"]["clinician"]
    assert [summary["splits"][s]["rebuilt"] for s in ("train", "eval")] == [0, 0]


@needs_espeak
def test_a_voice_that_fails_twice_makes_the_session_rebuild_with_other_voices(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hang_first_calls(monkeypatch, sessions.CALLS_PER_SENTENCE)
    summary = synth_sessions_dataset(tmp_path, timeout_s=1.5, **SMALL)
    assert summary["failed_calls"] == 2 * sessions.CALLS_PER_SENTENCE
    for split in ("train", "eval"):
        assert summary["splits"][split]["sessions"] == 1
        assert summary["splits"][split]["rebuilt"] == 1


@needs_espeak
def test_engines_that_always_hang_fail_fast_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sessions, "_utterance_command", lambda *args: ["sleep", "5"])
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="no session could be synthesized.*timed out"):
        synth_sessions_dataset(tmp_path, timeout_s=0.3, **SMALL)
    assert time.monotonic() - started < 10
    summary = json.loads((tmp_path / "failed.json").read_text())
    assert summary["splits"]["train"]["skipped"] == 1 and summary["splits"]["eval"]["skipped"] == 1
    assert not (tmp_path / "dataset.json").exists(), "a failed build is not a dataset"


def test_bad_arguments_name_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_eval <= n_sessions"):
        synth_sessions_dataset(tmp_path, n_sessions=2, n_eval=3, progress=False)
    with pytest.raises(ValueError, match="min_minutes <= max_minutes"):
        synth_sessions_dataset(tmp_path, min_minutes=5, max_minutes=4, progress=False)


@needs_espeak
def test_sessions_that_break_the_structure_say_so_and_still_check(tmp_path: Path) -> None:
    """A missing P1 or P3 is null in the manifest; reordered phases come with their
    `phase_order`; every word still lies inside its (moved) phase, and the reader takes them."""
    from audiolora.data.sessions import read_sessions

    summary = synth_sessions_dataset(
        tmp_path, n_sessions=6, n_eval=0, min_minutes=0.75, max_minutes=1.0, seed=0,
        progress=False, missing_share=0.5, reorder_share=0.5,
    )  # fmt: skip
    layouts = summary["splits"]["train"]["layouts"]
    assert "P1-P2-P3" not in layouts and sum(layouts.values()) == 6
    assert any(len(k.split("-")) == 2 for k in layouts) and any(len(k) == 8 for k in layouts)
    for row, words in sessions_of(tmp_path):
        b = row["boundaries"]
        absent = [p for p in PHASES if b[f"{p}_start"] is None]
        if absent:
            assert absent in (["P1"], ["P3"]) and b[f"{absent[0]}_end"] is None
            assert "phase_order" not in row
            assert not any(w["phase"] == absent[0] for w in words)
        else:
            assert row["phase_order"] != list(PHASES) and sorted(row["phase_order"]) == list(PHASES)
            order = row["phase_order"]
            assert b[f"{order[0]}_end"] <= b[f"{order[1]}_start"] <= b[f"{order[2]}_start"]
        check_session(row, words)
        starts = [w["start"] for w in words]
        assert starts == sorted(starts), "words in time order after the phases moved"
    sessions_read, problems = read_sessions(tmp_path / "train.jsonl", window_s=10, boundaries=())
    assert not problems and len(sessions_read) == 6
    with_absent = [s for s in sessions_read if s.absent]
    assert with_absent and all(len(s.absent) == 2 for s in with_absent)
