"""Session manifests for temporal localization: whole recordings with phase boundaries and a
word-timestamped transcript, every row checked up front.

A row in the layout `synth.sessions` writes:
`{"audio": "audio/train/s.wav", "duration": 312.4, "boundaries": {"P1_start": 0.8, ...,
"P3_end": 311.0}, "transcript": "transcripts/train/s.json"}`, paths relative to the manifest's
folder, the transcript a JSON list of `{"word", "start", "end", "speaker", "phase"}`.
`read_sessions` checks every row and reports every problem at once, in the file/line/field/reason
form of `manifest.Problem`, as the rest of the framework does.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from audiolora.data.audio import (
    SLICE_END_TOLERANCE_S,
    AudioError,
    audio_duration,
    resolve_audio_path,
    shown_path,
)
from audiolora.data.manifest import (
    FILE_FIELD,
    Problem,
    apply_bad_input_policy,
    is_number,
    json_objects,
    summarize_problems,
    type_name,
)

BOUNDARIES = ("P1_start", "P1_end", "P2_start", "P2_end", "P3_start", "P3_end")
"""Every boundary a session can annotate, in the order they must occur in time."""

PHASE_ORDER = ("P1", "P2", "P3")
"""The usual order of the phases; a row's `phase_order` may give another."""

DURATION_TOLERANCE_S = 0.1
"""How far the manifest's `duration` may be from the audio file's length: rounding is fine, a
different file (or a transcode that dropped seconds) is not."""


@dataclass(frozen=True)
class Word:
    """One transcript word with its time span in the recording, seconds."""

    text: str
    start: float
    end: float
    speaker: str | None = None
    phase: str | None = None

    @property
    def midpoint(self) -> float:
        """Where a word counts as being: a word cut by a window edge belongs to one side only."""
        return (self.start + self.end) / 2


@dataclass(frozen=True)
class SessionRecord:
    """A checked session: its audio, true length, boundary times and transcript."""

    line: int
    """1-based line of the session in its manifest, for messages about it later."""
    audio: Path
    """Absolute path, resolved relative to the manifest's folder."""
    duration: float
    """Length of the audio file in seconds (from its header), which windows must stay inside."""
    boundaries: dict[str, float]
    """Boundary name (`P2_start`, ...) -> time in seconds from the start of the recording."""
    words: tuple[Word, ...] = ()
    """Transcript words, kept sorted by midpoint so a window's words are found by bisection."""
    absent: frozenset[str] = frozenset()
    """Boundaries the manifest marks `null`: their phase is not in this recording."""
    phase_order: tuple[str, ...] = PHASE_ORDER
    """The order of the phases in this recording (`phase_order` in the manifest)."""

    def __post_init__(self) -> None:
        # Sorted here rather than trusted, so records built by hand obey the same invariant.
        object.__setattr__(self, "words", tuple(sorted(self.words, key=word_midpoint)))


def word_midpoint(word: Word) -> float:
    return word.midpoint


def check_boundary_names(boundaries: Sequence[str]) -> None:
    unknown = [b for b in boundaries if b not in BOUNDARIES]
    if unknown:
        raise ValueError(f"unknown boundary {unknown}; choose from {list(BOUNDARIES)}")


def read_sessions(
    manifest: Path, *, window_s: float, boundaries: tuple[str, ...]
) -> tuple[list[SessionRecord], list[Problem]]:
    """Read and check every session of a JSONL manifest; never raises for bad content.

    Returns the good sessions and every problem of the bad ones (a row with several problems
    gets them all): audio missing or unreadable (checked from its header), shorter than the
    window, or of another length than the manifest's `duration` (> 0.1 s off); a requested
    boundary missing; a boundary outside the recording; phases out of order; the transcript
    missing, unreadable or malformed. A boundary up to 0.01 s past the end (rounding in the
    manifest) is kept, moved to the end.
    """
    if not (is_number(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    check_boundary_names(boundaries)
    manifest = Path(manifest)
    name = str(manifest)
    try:
        data = manifest.read_bytes()
    except FileNotFoundError:
        return [], [Problem(name, 0, FILE_FIELD, "manifest not found")]
    except OSError as e:
        return [], [Problem(name, 0, FILE_FIELD, f"manifest unreadable: {e}")]

    root = manifest.resolve().parent
    sessions: list[SessionRecord] = []
    problems: list[Problem] = []
    for lineno, obj in json_objects(data, name):
        if isinstance(obj, Problem):
            problems.append(obj)
            continue
        session, row_problems = _check_session(obj, root, lineno, window_s, boundaries)
        problems += [Problem(name, lineno, f, reason) for f, reason in row_problems]
        if session is not None:
            sessions.append(session)
    return sessions, problems


@dataclass
class SessionReport:
    """One checked session manifest, in the shape `manifest.apply_bad_input_policy` takes."""

    path: Path
    rows: list[SessionRecord]
    problems: list[Problem]

    def summary(self) -> str:
        return summarize_problems(self.path, len(self.rows), self.problems)

    def rejected_records(self) -> Iterator[dict[str, Any]]:
        for p in self.problems:
            yield {"file": p.file, "line": p.line, "field": p.field, "reason": p.reason}


def check_sessions(
    paths: dict[str, Path],
    *,
    window_s: float,
    boundaries: tuple[str, ...],
    on_bad_input: Literal["stop", "skip"],
    rejected_path: Path | None,
) -> dict[str, SessionReport]:
    """`read_sessions` for every split, then the run's bad-input policy (stop or skip)."""
    reports = {}
    for split, path in paths.items():
        sessions, problems = read_sessions(path, window_s=window_s, boundaries=boundaries)
        reports[split] = SessionReport(Path(path), sessions, problems)
    return apply_bad_input_policy(reports, on_bad_input, rejected_path)


def check_no_shared_recordings(reports: dict[str, SessionReport]) -> None:
    """Refuse a recording that is in both the training and the held-out sessions.

    Windows of one recording in both splits score memory, not the cross-session generalization
    the seed measures. The same file under two names counts too: files of equal size are
    compared by content. Raises ValueError naming every shared recording with its lines.
    """
    if "train" not in reports or "eval" not in reports:
        return
    train, held_out = reports["train"], reports["eval"]
    train_by_size, held_by_size = _by_size(train.rows), _by_size(held_out.rows)
    pairs: list[tuple[SessionRecord, SessionRecord]] = []
    for size in train_by_size.keys() & held_by_size.keys():  # only equal sizes can be equal
        by_digest = {_content_digest(s.audio): s for s in train_by_size[size]}
        for session in held_by_size[size]:
            seen = by_digest.get(_content_digest(session.audio))
            if seen is not None:
                pairs.append((seen, session))
    shared = []
    for seen, session in sorted(pairs, key=lambda pair: pair[1].line):
        same = "" if seen.audio == session.audio else f" (the same audio as {seen.audio})"
        shared.append(
            f"  {session.audio}{same}: {train.path} line {seen.line} and "
            f"{held_out.path} line {session.line}"
        )
    if shared:
        raise ValueError(
            f"{len(shared)} recording(s) are in both the training and the held-out sessions:\n"
            + "\n".join(shared)
            + "\nwindows of one recording in both splits measure memory, not generalization to "
            "new sessions: keep each recording in one split"
        )


def _by_size(sessions: Sequence[SessionRecord]) -> dict[int, list[SessionRecord]]:
    sizes: dict[int, list[SessionRecord]] = {}
    for session in sessions:
        sizes.setdefault(session.audio.stat().st_size, []).append(session)
    return sizes


def _content_digest(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_session(
    obj: dict[str, Any], root: Path, lineno: int, window_s: float, wanted: tuple[str, ...]
) -> tuple[SessionRecord | None, list[tuple[str, str]]]:
    """One row's session (None if bad) and all its (field, reason) problems."""
    problems: list[tuple[str, str]] = []

    audio = obj.get("audio")
    audio_path, file_s, audio_problem = session_recording(obj, root)
    if audio_problem:
        problems.append(("audio", audio_problem))

    manifest_s: float | None = None
    if "duration" in obj:
        value = obj["duration"]
        if not (is_number(value) and value > 0):
            reason = f"must be a positive number of seconds, got {json.dumps(value)}"
            problems.append(("duration", reason))
        else:
            manifest_s = float(value)
            if file_s is not None and abs(manifest_s - file_s) > DURATION_TOLERANCE_S:
                problems.append(
                    (
                        "duration",
                        f"{manifest_s:g} s, but the audio file is {file_s:.3f} s long ({audio}); "
                        "fix the duration or point 'audio' at the right file",
                    )
                )

    # The file's length when it can be read (it is what windows are cut from), else the row's.
    length_s = file_s if file_s is not None else manifest_s
    if length_s is not None and length_s < window_s:
        problems.append(
            (
                "audio",
                f"recording is {length_s:.3f} s, shorter than the {window_s:g} s window "
                f"({audio}); drop the session or use a shorter window",
            )
        )

    order, order_problem = _phase_order(obj)
    if order_problem:
        problems.append(("phase_order", order_problem))
    times, absent, boundary_problems = _check_boundaries(obj, wanted, length_s, order)
    problems += boundary_problems
    words, transcript_problem = _read_transcript(obj, root)
    if transcript_problem:
        problems.append(("transcript", transcript_problem))

    if problems or audio_path is None or file_s is None:
        return None, problems
    return SessionRecord(lineno, audio_path, file_s, times, words, absent, order), problems


def relocated_row(row: dict[str, Any], source_dir: Path, output_dir: Path) -> dict[str, Any]:
    """A copy of a manifest row whose `audio` and `transcript` (relative to `source_dir`) are
    made relative to `output_dir`, so the row reads the same files from a manifest there."""
    out = dict(row)
    for key in ("audio", "transcript"):
        if isinstance(out.get(key), str):
            moved = os.path.relpath(
                Path(source_dir).resolve() / out[key], Path(output_dir).resolve()
            )
            out[key] = Path(moved).as_posix()
    return out


def session_recording(
    obj: dict[str, Any], root: Path
) -> tuple[Path | None, float | None, str | None]:
    """A row's `audio`: its resolved path and length in seconds (from the file's header), or
    the reason it cannot be used."""
    audio = obj.get("audio")
    if not isinstance(audio, str) or not audio.strip():
        got = "missing" if "audio" not in obj else f"got {json.dumps(audio)}"
        return None, None, f"must be a path to the session's recording, {got}"
    try:
        path = resolve_audio_path(root, audio)
        return path, audio_duration(path), None
    except AudioError as e:
        return None, None, f"{e.reason} ({shown_path(audio)})"


def _phase_order(obj: dict[str, Any]) -> tuple[tuple[str, ...], str | None]:
    """The row's phase order (the usual one when it gives none), or why it cannot be used."""
    order = obj.get("phase_order")
    if order is None:
        return PHASE_ORDER, None
    if not (isinstance(order, list) and sorted(map(str, order)) == sorted(PHASE_ORDER)):
        return PHASE_ORDER, (
            f"must list each of {list(PHASE_ORDER)} once, in the order they occur, got "
            f"{json.dumps(order)}"
        )
    return tuple(order), None


def boundary_order(phase_order: Sequence[str]) -> list[str]:
    """Boundary names in time order for a phase order: P2_start, P2_end, P1_start, ..."""
    return [f"{phase}_{edge}" for phase in phase_order for edge in ("start", "end")]


def _check_boundaries(
    obj: dict[str, Any], wanted: tuple[str, ...], length_s: float | None, order: tuple[str, ...]
) -> tuple[dict[str, float], frozenset[str], list[tuple[str, str]]]:
    """The row's valid boundary times (clamped into the recording), the boundaries marked
    absent (`null`: that phase is not in the recording) and the row's boundary problems."""
    raw = obj.get("boundaries")
    if raw is None and not wanted:
        return {}, frozenset(), []  # unlabelled session (inference): nothing to check
    if not isinstance(raw, dict):
        got = "missing" if "boundaries" not in obj else f"got {type_name(raw)}"
        return {}, frozenset(), [("boundaries", f"must be an object of boundary times, {got}")]
    problems: list[tuple[str, str]] = []
    times: dict[str, float] = {}
    absent = frozenset(name for name in BOUNDARIES if name in raw and raw[name] is None)
    for phase in PHASE_ORDER:
        start, end = f"{phase}_start", f"{phase}_end"
        if (start in absent) != (end in absent) and start in raw and end in raw:
            problems.append(
                (
                    f"boundaries.{phase}",
                    f"{start} is {json.dumps(raw[start])} and {end} is {json.dumps(raw[end])}: "
                    "null marks a whole phase absent, so set both to null or give both times",
                )
            )
    for name in BOUNDARIES:
        if name not in raw:
            if name in wanted:
                problems.append(
                    (
                        f"boundaries.{name}",
                        "missing, and windows around it are asked for (null if the phase is "
                        "not in the recording)",
                    )
                )
            continue
        value = raw[name]
        if value is None:
            continue
        if not is_number(value):
            reason = f"must be a number of seconds, got {json.dumps(value)}"
            problems.append((f"boundaries.{name}", reason))
            continue
        t = float(value)
        if t < 0 or (length_s is not None and t > length_s + SLICE_END_TOLERANCE_S):
            end = "?" if length_s is None else f"{length_s:.3f}"
            reason = f"{t:g} s is outside the recording (0 to {end} s)"
            problems.append((f"boundaries.{name}", reason))
            continue
        times[name] = t if length_s is None else min(t, length_s)

    in_order = boundary_order(order)
    present = [b for b in in_order if b in times]
    for before, after in pairwise(present):
        if times[after] < times[before]:
            given = "" if order == PHASE_ORDER else " (the row's phase_order)"
            problems.append(
                (
                    "boundaries",
                    f"phases out of order: {after} ({times[after]:g} s) comes before {before} "
                    f"({times[before]:g} s); need {' <= '.join(in_order)}{given}, or give the "
                    'row a phase_order such as ["P2", "P1", "P3"]',
                )
            )
    return times, absent, problems


def _read_transcript(obj: dict[str, Any], root: Path) -> tuple[tuple[Word, ...], str | None]:
    """The transcript's words, or the reason it cannot be used."""
    rel = obj.get("transcript")
    if not isinstance(rel, str) or not rel.strip():
        got = "missing" if "transcript" not in obj else f"got {json.dumps(rel)}"
        return (), f"must be a path to the session's JSON word list, {got}"
    path = root / rel
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return (), f"file not found ({rel})"
    except json.JSONDecodeError as e:
        return (), f"bad JSON: {e.msg} at line {e.lineno} column {e.colno} ({rel})"
    except RecursionError:
        return (), f"bad JSON: nested too deeply ({rel})"
    except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: a NUL in the path
        return (), f"unreadable: {e} ({shown_path(rel)})"
    if not isinstance(entries, list):
        return (), f"expected a JSON list of words, got {type_name(entries)} ({rel})"

    words: list[Word] = []
    bad: list[str] = []
    for k, entry in enumerate(entries, start=1):
        reason = _word_problem(entry)
        if reason:
            bad.append(f"word {k}: {reason}")
        else:
            words.append(
                Word(
                    entry["word"],
                    float(entry["start"]),
                    float(entry["end"]),
                    entry.get("speaker"),
                    entry.get("phase"),
                )
            )
    if bad:
        more = f" (and {len(bad) - 1} more bad words)" if len(bad) > 1 else ""
        return (), f"{bad[0]}{more} ({rel})"
    return tuple(words), None


def _word_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"expected an object, got {type_name(entry)}"
    if not isinstance(entry.get("word"), str):
        return f"'word' must be a string, got {json.dumps(entry.get('word'))}"
    for key in ("start", "end"):
        if not is_number(entry.get(key)) or entry[key] < 0:
            got = json.dumps(entry.get(key))
            return f"'{key}' must be a non-negative number of seconds, got {got}"
    if entry["end"] < entry["start"]:
        return f"ends ({entry['end']}) before it starts ({entry['start']})"
    for key in ("speaker", "phase"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            return f"'{key}' must be a string, got {json.dumps(entry[key])}"
    return None
