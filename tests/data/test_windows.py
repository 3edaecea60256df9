"""Windows around phase boundaries: exact targets, windows inside the audio, bad sessions named."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from audiolora.data.manifest import FILE_FIELD, LINE_FIELD, Problem
from audiolora.data.sessions import BOUNDARIES, SessionRecord, Word, read_sessions
from audiolora.data.windows import (
    Window,
    coarse_windows,
    sample_windows,
    window_prompt,
    window_words,
)

ALL = BOUNDARIES


def random_session(rng: random.Random, window_s: float) -> SessionRecord:
    """A session of 1 to 20 windows with ordered boundaries, some exactly at 0 or at the end."""
    duration = rng.uniform(1.0, 20.0) * window_s
    times = sorted(rng.uniform(0.0, duration) for _ in ALL)
    if rng.random() < 0.2:
        times[0] = 0.0
    if rng.random() < 0.2:
        times[-1] = duration
    words = []
    t = 0.0
    while t < duration:
        length = rng.uniform(0.1, 0.6)
        words.append(Word(f"w{len(words)}", t, min(t + length, duration)))
        t += length + rng.uniform(0.0, 0.3)
    return SessionRecord(0, Path("s.wav"), duration, dict(zip(ALL, times, strict=True)), words)


def check_window(window: Window, session: SessionRecord) -> None:
    t = session.boundaries[window.boundary]
    assert window.start >= 0.0
    assert window.start + window.length <= session.duration + 1e-9, "window runs past the audio"
    assert window.start <= t <= window.start + window.length, "boundary outside its window"
    assert 0.0 <= window.offset <= 1.0
    assert abs(window.offset * window.length + window.start - t) <= 1e-9, "target not exact"
    assert abs(window.boundary_time - t) <= 1e-9


def test_sampled_windows_hold_the_boundary_at_an_exact_offset_inside_the_audio() -> None:
    rng = random.Random(0)
    for _ in range(300):
        window_s = rng.choice([2.0, 30.0, 60.0, 120.0, rng.uniform(0.5, 100.0)])
        session = random_session(rng, window_s)
        windows = sample_windows([session], window_s, 4, ALL, rng)
        assert len(windows) == 4 * len(ALL)
        assert [w.boundary for w in windows] == [b for b in ALL for _ in range(4)]
        for window in windows:
            assert window.session == 0
            assert window.length == window_s
            check_window(window, session)


def test_offsets_are_uniform_when_the_boundary_is_far_from_the_edges() -> None:
    session = SessionRecord(0, Path("s.wav"), 3600.0, {"P2_start": 1800.0})
    windows = sample_windows([session], 30.0, 2000, ("P2_start",), random.Random(1))
    offsets = np.array([w.offset for w in windows])
    assert abs(offsets.mean() - 0.5) < 0.03  # +-0.1 would do; seeded, so this cannot flake
    counts, _ = np.histogram(offsets, bins=10, range=(0.0, 1.0))
    assert counts.min() > 150 and counts.max() < 250, counts  # 200 expected per tenth
    assert offsets.min() < 0.01 and offsets.max() > 0.99


def test_window_near_the_start_is_clipped_to_zero_with_the_offset_recomputed() -> None:
    session = SessionRecord(0, Path("s.wav"), 60.0, {"P1_start": 0.5, "P3_end": 60.0})
    windows = sample_windows([session], 2.0, 200, ("P1_start", "P3_end"), random.Random(2))
    starts = [w for w in windows if w.boundary == "P1_start"]
    # Offsets in [0, 0.25) put the start at 0.5 - 2 * offset > 0: kept. Larger ones would start
    # before the audio, so the window starts at 0 and the boundary sits at 0.5 / 2 = 0.25.
    clipped = [w for w in starts if w.start == 0.0]
    assert 100 < len(clipped) < 200
    assert all(w.offset == 0.25 for w in clipped)
    ends = [w for w in windows if w.boundary == "P3_end"]
    # A boundary at the very end of the recording: every window is the last 2 s, offset 1.
    assert {(w.start, w.offset) for w in ends} == {(58.0, 1.0)}
    for w in windows:
        check_window(w, session)


def test_window_near_the_end_is_clipped_back_inside_the_recording() -> None:
    session = SessionRecord(0, Path("s.wav"), 10.0, {"P2_end": 9.5, "P1_start": 0.0})
    windows = sample_windows([session], 2.0, 100, ("P2_end", "P1_start"), random.Random(3))
    clipped = [w for w in windows if w.boundary == "P2_end" and w.start == 8.0]
    assert clipped and all(w.offset == 0.75 for w in clipped)
    assert {(w.start, w.offset) for w in windows if w.boundary == "P1_start"} == {(0.0, 0.0)}


def test_a_session_exactly_one_window_long_gives_that_window() -> None:
    session = SessionRecord(0, Path("s.wav"), 2.0, {"P2_start": 0.5})
    windows = sample_windows([session], 2.0, 20, ("P2_start",), random.Random(4))
    assert {(w.start, w.offset) for w in windows} == {(0.0, 0.25)}


def test_window_words_are_those_whose_midpoint_is_inside() -> None:
    words = [
        Word("before", 0.0, 0.8),  # midpoint 0.4: before a window starting at 1.0
        Word("straddles-in", 0.8, 1.4),  # midpoint 1.1: in
        Word("inside", 1.5, 2.0),
        Word("straddles-out", 2.8, 3.4),  # midpoint 3.1: out of [1, 3)
        Word("at-end", 2.9, 3.1),  # midpoint 3.0: the half-open end excludes it
    ]
    assert window_words(tuple(words), 1.0, 2.0) == ("straddles-in", "inside")

    rng = random.Random(5)
    for _ in range(100):
        session = random_session(rng, 2.0)
        for window in sample_windows([session], 2.0, 3, ALL, rng):
            end = window.start + window.length
            expected = [w.text for w in session.words if window.start <= w.midpoint < end]
            assert list(window.words) == expected


def test_session_words_are_kept_in_time_order_whatever_the_input_order() -> None:
    words = [Word("b", 2.0, 2.5), Word("a", 0.0, 0.5), Word("c", 4.0, 4.5)]
    session = SessionRecord(0, Path("s.wav"), 6.0, {"P2_start": 3.0}, tuple(words))
    assert [w.text for w in session.words] == ["a", "b", "c"]


def test_same_seed_same_windows_other_seed_other_windows() -> None:
    sessions = [random_session(random.Random(k), 30.0) for k in range(5)]

    def draw(seed: int) -> list[Window]:
        return sample_windows(sessions, 30.0, 3, ("P2_start", "P3_start"), random.Random(seed))

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
    assert [w.session for w in draw(7)] == [k for k in range(5) for _ in range(6)]


def test_sample_windows_refuses_sessions_it_cannot_fit() -> None:
    rng = random.Random(0)
    short = SessionRecord(0, Path("s.wav"), 1.0, {"P2_start": 0.5})
    with pytest.raises(ValueError, match="shorter than the 2.0 s window"):
        sample_windows([short], 2.0, 1, ("P2_start",), rng)
    no_p3 = SessionRecord(0, Path("s.wav"), 10.0, {"P2_start": 0.5})
    with pytest.raises(ValueError, match="boundary P3_start is None"):
        sample_windows([no_p3], 2.0, 1, ("P3_start",), rng)
    with pytest.raises(ValueError, match="unknown boundary"):
        sample_windows([no_p3], 2.0, 1, ("P4_start",), rng)


def test_window_prompt_names_each_boundary_in_plain_words() -> None:
    prompts = {b: window_prompt(b) for b in BOUNDARIES}
    assert len(set(prompts.values())) == 6
    for name, prompt in prompts.items():
        assert f"({name[:2]})" in prompt
        assert ("begin?" if name.endswith("start") else "end?") in prompt
    assert window_prompt("P2_start", window_s=30.0).startswith(
        "Where in this 30-second window does the imaginal exposure narrative (P2) begin?"
    )
    with pytest.raises(ValueError, match="unknown boundary"):
        window_prompt("P2_middle")


@pytest.mark.parametrize(
    ("duration", "window_s", "hop_s", "expected"),
    [
        (100.0, 30.0, 15.0, [0.0, 15.0, 30.0, 45.0, 60.0, 70.0]),
        (90.0, 30.0, 15.0, [0.0, 15.0, 30.0, 45.0, 60.0]),  # the grid already ends at 90
        (30.0, 30.0, 10.0, [0.0]),
        (12.0, 30.0, 10.0, [0.0]),  # shorter than one window
        (65.0, 30.0, 30.0, [0.0, 30.0, 35.0]),
    ],
)
def test_coarse_windows_cover_the_session_and_end_at_its_end(
    duration: float, window_s: float, hop_s: float, expected: list[float]
) -> None:
    assert coarse_windows(duration, window_s, hop_s) == pytest.approx(expected)


def test_coarse_windows_leave_no_gap_on_long_sessions() -> None:
    rng = random.Random(6)
    for _ in range(200):
        window_s = rng.uniform(1.0, 120.0)
        hop_s = rng.uniform(0.1, 1.0) * window_s
        duration = rng.uniform(window_s, 50 * window_s)
        starts = coarse_windows(duration, window_s, hop_s)
        assert starts[0] == 0.0
        assert starts[-1] + window_s == pytest.approx(duration)
        assert all(0.0 < b - a <= hop_s + 1e-9 for a, b in zip(starts, starts[1:], strict=False))
    with pytest.raises(ValueError, match="hop_s"):
        coarse_windows(100.0, 30.0, 31.0)


# --- read_sessions: tiny sessions on disk -----------------------------------------------------

WINDOW_S = 2.0
GOOD_ROW: dict[str, Any] = {
    "audio": "audio/s0.wav",
    "duration": 6.0,
    "boundaries": {
        "P1_start": 0.2,
        "P1_end": 1.5,
        "P2_start": 2.0,
        "P2_end": 4.0,
        "P3_start": 4.4,
        "P3_end": 5.8,
    },
    "transcript": "transcripts/s0.json",
}
GOOD_WORDS = [
    {"word": "hello", "start": 0.2, "end": 0.6, "speaker": "clinician", "phase": "P1"},
    {"word": "I", "start": 2.0, "end": 2.2, "speaker": "client", "phase": "P2"},
    {"word": "remember", "start": 2.3, "end": 2.9, "speaker": "client", "phase": "P2"},
    {"word": "thanks", "start": 5.2, "end": 5.8, "speaker": "clinician", "phase": "P3"},
]


def write_silence(path: Path, seconds: float, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(round(seconds * sr), dtype=np.float32), sr)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A folder with a 6 s session (audio/s0.wav, transcripts/s0.json) and a 1 s clip."""
    write_silence(tmp_path / "audio" / "s0.wav", 6.0)
    write_silence(tmp_path / "audio" / "short.wav", 1.0)
    (tmp_path / "transcripts").mkdir()
    (tmp_path / "transcripts" / "s0.json").write_text(json.dumps(GOOD_WORDS))
    return tmp_path


def write_rows(corpus: Path, rows: list[dict[str, Any] | str]) -> Path:
    manifest = corpus / "sessions.jsonl"
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def bad_row_problems(corpus: Path, row: dict[str, Any], **kw: Any) -> list[Problem]:
    """Problems of a manifest with a good row on line 1 and `row` on line 2 (all on line 2)."""
    manifest = write_rows(corpus, [GOOD_ROW, row])
    kw = {"window_s": WINDOW_S, "boundaries": ALL, **kw}
    sessions, problems = read_sessions(manifest, **kw)
    assert [s.line for s in sessions] == [1]
    assert problems and all(p.line == 2 and p.file == str(manifest) for p in problems)
    return problems


def edited(**changes: Any) -> dict[str, Any]:
    row = copy.deepcopy(GOOD_ROW)
    for key, value in changes.items():
        if key.startswith("b_"):
            row["boundaries"][key[2:]] = value
        else:
            row[key] = value
    return row


def test_read_sessions_loads_a_good_session(corpus: Path) -> None:
    manifest = write_rows(corpus, [GOOD_ROW])
    sessions, problems = read_sessions(manifest, window_s=WINDOW_S, boundaries=ALL)
    assert problems == []
    (session,) = sessions
    assert session.line == 1
    assert session.audio == corpus / "audio" / "s0.wav"
    assert session.duration == pytest.approx(6.0)
    assert session.boundaries == GOOD_ROW["boundaries"]
    assert [w.text for w in session.words] == ["hello", "I", "remember", "thanks"]
    assert session.words[0] == Word("hello", 0.2, 0.6, "clinician", "P1")

    windows = sample_windows(sessions, WINDOW_S, 5, ("P2_start",), random.Random(0))
    for window in windows:
        check_window(window, session)


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        (edited(b_P1_start=-0.5), "boundaries.P1_start", "-0.5 s is outside the recording"),
        (edited(b_P3_end=7.0), "boundaries.P3_end", "7 s is outside the recording (0 to 6.000 s)"),
        (edited(b_P2_start="2.0"), "boundaries.P2_start", 'must be a number of seconds, got "2.0"'),
        (
            edited(b_P2_start=1.0),
            "boundaries",
            "phases out of order: P2_start (1 s) comes before P1_end (1.5 s)",
        ),
        (edited(boundaries=[1, 2]), "boundaries", "must be an object of boundary times, got list"),
        (edited(transcript="transcripts/nope.json"), "transcript", "file not found"),
        (edited(transcript=None), "transcript", "must be a path to the session's JSON word list"),
        (edited(audio="audio/missing.wav"), "audio", "file not found (audio/missing.wav)"),
        (
            edited(audio="audio/short.wav", duration=1.0, boundaries=dict.fromkeys(ALL, 0.5)),
            "audio",
            "recording is 1.000 s, shorter than the 2 s window (audio/short.wav)",
        ),
        (edited(duration=6.5), "duration", "6.5 s, but the audio file is 6.000 s long"),
        (edited(duration=-1), "duration", "must be a positive number of seconds, got -1"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_bad_session_gets_one_clear_problem(
    corpus: Path, row: dict[str, Any], field: str, reason: str
) -> None:
    (problem,) = bad_row_problems(corpus, row)
    assert problem.field == field
    assert reason in problem.reason, problem


def test_a_missing_boundary_is_a_problem_only_when_windows_around_it_are_asked_for(
    corpus: Path,
) -> None:
    row = edited()
    del row["boundaries"]["P3_start"]
    (problem,) = bad_row_problems(corpus, row)
    assert problem.field == "boundaries.P3_start"
    assert "missing" in problem.reason

    manifest = write_rows(corpus, [row])
    sessions, problems = read_sessions(manifest, window_s=WINDOW_S, boundaries=("P2_start",))
    assert problems == [] and "P3_start" not in sessions[0].boundaries


def test_a_duration_off_by_rounding_only_is_accepted(corpus: Path) -> None:
    manifest = write_rows(corpus, [edited(duration=6.05), edited(b_P3_end=6.004)])
    sessions, problems = read_sessions(manifest, window_s=WINDOW_S, boundaries=ALL)
    assert problems == []
    # A boundary a few ms past the end (rounded timestamps) is moved to the end of the audio.
    assert sessions[1].boundaries["P3_end"] == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[{", "bad JSON"),
        ('{"word": "hi"}', "expected a JSON list of words, got dict"),
        ('[{"word": "hi", "start": 1.0}]', "word 1: 'end' must be a non-negative number"),
        (
            '[{"word": "a", "start": 0, "end": 1}, {"word": "b", "start": 2, "end": 1.5}, 3]',
            "word 2: ends (1.5) before it starts (2) (and 1 more bad words)",
        ),
    ],
)
def test_a_malformed_transcript_is_reported_with_the_bad_word(
    corpus: Path, content: str, reason: str
) -> None:
    (corpus / "transcripts" / "bad.json").write_text(content)
    (problem,) = bad_row_problems(corpus, edited(transcript="transcripts/bad.json"))
    assert problem.field == "transcript"
    assert reason in problem.reason and "transcripts/bad.json" in problem.reason


def test_every_problem_of_every_row_is_reported_at_once(corpus: Path) -> None:
    row = edited(audio="audio/missing.wav", transcript="transcripts/nope.json", b_P2_end=1.0)
    del row["boundaries"]["P1_end"]
    manifest = write_rows(corpus, [row, "not json", GOOD_ROW, "[1]", edited(duration=9.0)])
    sessions, problems = read_sessions(manifest, window_s=WINDOW_S, boundaries=ALL)
    assert [s.line for s in sessions] == [3]
    assert [(p.line, p.field) for p in problems] == [
        (1, "audio"),
        (1, "boundaries.P1_end"),
        (1, "boundaries"),  # P2_end 1.0 before P2_start 2.0
        (1, "transcript"),
        (2, LINE_FIELD),
        (4, LINE_FIELD),
        (5, "duration"),
    ]
    assert str(problems[0]) == f"{manifest}:1: field 'audio': file not found (audio/missing.wav)"


def test_a_missing_or_empty_manifest_is_one_file_problem(corpus: Path) -> None:
    _, problems = read_sessions(corpus / "nope.jsonl", window_s=WINDOW_S, boundaries=ALL)
    assert [(p.field, p.reason) for p in problems] == [(FILE_FIELD, "manifest not found")]
    (corpus / "empty.jsonl").write_text("\n")
    _, problems = read_sessions(corpus / "empty.jsonl", window_s=WINDOW_S, boundaries=ALL)
    assert [(p.field, p.reason) for p in problems] == [(FILE_FIELD, "no rows (empty manifest)")]


def test_session_paths_with_a_nul_byte_are_rows_to_fix_not_crashes(corpus: Path) -> None:
    row = edited(audio="audio/s\x000.wav", transcript="transcripts/s\x000.json")
    problems = {p.field: p.reason for p in bad_row_problems(corpus, row)}
    assert "NUL byte" in problems["audio"] and "null byte" in problems["transcript"]
