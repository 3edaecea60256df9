"""Manifest reading and up-front validation: bad input is found before training, all at once.

A run that dies at step 9,000 on one corrupt file wastes hours, and fixing errors one per run is
slow. So every row of every manifest is checked before the first step (audio decoded in full
when `decode_audio`, the only way to find NaN samples and corrupt data), and every problem is
reported with manifest file, line, field and reason. With `--on-bad-input stop` the run refuses
to start and lists them all; with `skip` the bad rows go to a rejected file and the run goes on
with the good ones.

Manifest format (JSONL, one example per line, paths relative to the manifest's folder):
`{"audio": "clips/a.wav", "text": "hello", "offset": 1.5, "duration": 3.0}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
from tqdm.auto import tqdm

from audiolora.atomic import atomic_target
from audiolora.data.audio import (
    AudioError,
    audio_duration,
    audio_info,
    is_number,
    load_audio,
    resolve_audio_path,
    shown_path,
    slice_frames,
)

logger = logging.getLogger(__name__)

FILE_FIELD = "<file>"
"""`Problem.field` for problems of the manifest as a whole (missing, no rows); line is 0."""
LINE_FIELD = "<line>"
"""`Problem.field` for a line that is not a JSON object at all (bad bytes, bad JSON)."""
TOO_DEEP = "bad JSON: nested too deeply to read (thousands of brackets)"

SKIP_HINT = "fix these rows or rerun with --on-bad-input skip"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one manifest line, worded for the person who has to fix it."""

    file: str
    line: int
    """1-based line number in the manifest; 0 for a problem with the file as a whole."""
    field: str
    """The JSON field to fix, or `<line>` / `<file>`."""
    reason: str

    def __str__(self) -> str:
        if self.line == 0:
            return f"{self.file}: {self.reason}"
        return f"{self.file}:{self.line}: field '{self.field}': {self.reason}"


@dataclass
class ManifestRow:
    """A validated example; `raw` keeps the task fields (labels, attributes, ...) untouched."""

    line: int
    audio: Path
    """Absolute path, resolved relative to the manifest's folder."""
    text: str | None
    offset: float
    """Start of the slice in the audio file, seconds."""
    duration: float | None
    """Length of the slice as written in the manifest; None means to the end of the file."""
    audio_seconds: float
    """Effective length of the clip after slicing, seconds."""
    raw: dict[str, Any]


def summarize_problems(path: Path, ok_rows: int, problems: list[Problem]) -> str:
    """'train.jsonl: 240 rows ok, 3 rejected' and one line per problem, none left out."""
    rejected = len({p.line for p in problems if p.line > 0})
    lines = [f"{path}: {ok_rows} rows ok, {rejected} rejected"]
    lines += [f"  {p}" for p in problems]
    return "\n".join(lines)


@dataclass
class ManifestReport:
    """Result of checking one manifest: the usable rows and every problem found."""

    path: Path
    rows: list[ManifestRow]
    problems: list[Problem]
    total_lines: int
    rejected_rows: dict[int, Any] = field(default_factory=dict)
    """Line -> the original JSON object, or the line's text when it did not parse."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """'train.jsonl: 240 rows ok, 3 rejected' and one line per problem, none left out."""
        return summarize_problems(self.path, len(self.rows), self.problems)

    def rejected_records(self) -> Iterator[dict[str, Any]]:
        """One JSON-ready record per problem, with the offending row for context."""
        for p in self.problems:
            yield {
                "file": p.file,
                "line": p.line,
                "field": p.field,
                "reason": p.reason,
                "row": self.rejected_rows.get(p.line),
            }

    def write_rejected(self, out: Path) -> None:
        """Write the problems as JSONL, so they can be fixed and fed back as a manifest."""
        _write_jsonl(Path(out), self.rejected_records())


class BadInputError(Exception):
    """Raised before training when input is bad; the message lists every problem found."""

    def __init__(self, reports: list[Any], hint: str = SKIP_HINT):
        self.reports = reports
        summaries = [r.summary() for r in reports if r.problems or not r.rows]
        super().__init__("\n".join([*summaries, hint]))


def _write_jsonl(out: Path, records: Iterator[dict[str, Any]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(out) as tmp, tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_row(
    obj: dict[str, Any],
    manifest_dir: Path,
    required_fields: tuple[str, ...],
    sampling_rate: int,
    max_duration_s: float | None,
    decode_audio: bool,
) -> tuple[ManifestRow | None, list[tuple[str, str]]]:
    """Check one parsed row; returns the row (None if bad) and all (field, reason) problems.

    Every field is checked even after one fails, so a row needs one round of fixing, not many.
    """
    problems: list[tuple[str, str]] = []
    # A row without audio is useless to every task, so `audio` is required whatever the caller says.
    for name in dict.fromkeys(("audio", *required_fields)):
        if name not in obj:
            problems.append((name, "missing required field"))
        elif obj[name] is None and name not in ("audio", "text"):
            problems.append((name, "is null"))

    text = obj.get("text")
    if "text" in required_fields and "text" in obj:
        if not isinstance(text, str):
            problems.append(("text", f"must be a string, got {type_name(text)}"))
        elif not text.strip():
            problems.append(("text", "empty or whitespace-only"))
    if not isinstance(text, str):
        text = None

    offset = obj.get("offset", 0.0)
    duration = obj.get("duration")
    slice_ok = True
    if not is_number(offset) or offset < 0:
        problems.append(
            ("offset", f"must be a non-negative number of seconds, got {json.dumps(offset)}")
        )
        slice_ok = False
    if duration is not None and (not is_number(duration) or duration <= 0):
        problems.append(
            ("duration", f"must be a positive number of seconds, got {json.dumps(duration)}")
        )
        slice_ok = False

    audio = obj.get("audio")
    audio_path: Path | None = None
    audio_seconds = 0.0
    if "audio" in obj:
        if not isinstance(audio, str):
            problems.append(("audio", f"must be a path string, got {type_name(audio)}"))
        elif not audio.strip():
            problems.append(("audio", "empty path"))
        else:
            try:
                audio_path = resolve_audio_path(manifest_dir, audio)
                audio_seconds = _check_audio(
                    audio_path,
                    sampling_rate,
                    offset,
                    duration,
                    max_duration_s,
                    decode_audio=decode_audio,
                    slice_ok=slice_ok,
                )
            except AudioError as e:
                where = (
                    f"({shown_path(audio)})" if e.field == "audio" else f"in {shown_path(audio)}"
                )
                problems.append((e.field, f"{e.reason} {where}"))
            except Exception as e:
                # A decoder bug on one odd file must not stop the check of all the others.
                reason = f"could not be loaded ({type(e).__name__}: {e}) ({shown_path(audio)})"
                problems.append(("audio", reason))

    if problems or audio_path is None:
        return None, problems
    row = ManifestRow(
        line=0,
        audio=audio_path,
        text=text,
        offset=float(offset),
        duration=None if duration is None else float(duration),
        audio_seconds=audio_seconds,
        raw=obj,
    )
    return row, problems


def _check_audio(
    path: Path,
    sampling_rate: int,
    offset: Any,
    duration: Any,
    max_duration_s: float | None,
    *,
    decode_audio: bool,
    slice_ok: bool,
) -> float:
    """Effective clip length in seconds, or AudioError saying what is wrong with the file."""
    if not slice_ok:
        # The slice fields are already reported; still say whether the file itself is usable.
        audio_duration(path)
        return 0.0
    if decode_audio:
        samples: np.ndarray = load_audio(
            path, sampling_rate, offset, duration, max_duration_s=max_duration_s
        )
        return len(samples) / sampling_rate
    frames, rate = audio_info(path)
    _, count = slice_frames(frames, rate, offset, duration, max_duration_s, path=path)
    return count / rate


def line_object(raw_line: bytes) -> tuple[dict[str, Any] | None, str]:
    """A manifest line's JSON object, or None and why the line is not one (bad bytes, bad or
    too deeply nested JSON, another JSON value): one reading for every manifest reader."""
    try:
        obj = json.loads(raw_line.decode("utf-8"))
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8 (byte 0x{raw_line[e.start]:02x} at byte {e.start + 1})"
    except json.JSONDecodeError as e:
        return None, f"bad JSON: {e.msg} at column {e.colno}"
    except RecursionError:
        return None, TOO_DEEP
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type_name(obj)}"
    return obj, ""


def json_objects(data: bytes, name: str) -> Iterator[tuple[int, dict[str, Any] | Problem]]:
    """(line number, object) for each non-blank JSONL line, or (line number, Problem) for a
    line that is not UTF-8, not JSON or not an object; a leading byte-order mark is dropped.

    For manifest readers that need no more than the objects (sessions, SLU rows). A file with
    no row at all yields one file-level problem.
    """
    seen_rows = 0
    for lineno, raw_line in enumerate(split_lines(data), start=1):
        if lineno == 1 and raw_line.startswith(b"\xef\xbb\xbf"):
            raw_line = raw_line[3:]  # UTF-8 byte-order mark written by some Windows editors
        if not raw_line.strip():
            continue
        seen_rows += 1
        obj, reason = line_object(raw_line)
        yield lineno, obj if obj is not None else Problem(name, lineno, LINE_FIELD, reason)
    if seen_rows == 0:
        yield 0, Problem(name, 0, FILE_FIELD, "no rows (empty manifest)")


def split_lines(data: bytes) -> list[bytes]:
    """Lines as an editor numbers them (\\n or \\r\\n); a final newline adds no line."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def read_manifest(
    path: Path,
    *,
    required_fields: tuple[str, ...] = ("audio", "text"),
    sampling_rate: int = 16000,
    max_duration_s: float | None = 30.0,
    decode_audio: bool = True,
    progress: bool = False,
) -> ManifestReport:
    """Read and check every row of a JSONL manifest; never raises for bad content.

    `decode_audio=False` checks audio files from their headers only (fast, but cannot see NaN
    samples or corrupt data past the header).
    """
    path = Path(path)
    name = str(path)
    report = ManifestReport(path=path, rows=[], problems=[], total_lines=0)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        report.problems.append(Problem(name, 0, FILE_FIELD, "manifest not found"))
        return report
    except OSError as e:
        report.problems.append(Problem(name, 0, FILE_FIELD, f"manifest unreadable: {e}"))
        return report

    manifest_dir = path.resolve().parent
    lines = split_lines(data)
    report.total_lines = len(lines)
    seen_rows = 0
    bar = tqdm(
        enumerate(lines, start=1),
        total=len(lines),
        desc=f"checking {path.name}",
        unit="row",
        disable=not progress,
    )
    for lineno, raw_line in bar:
        if lineno == 1 and raw_line.startswith(b"\xef\xbb\xbf"):
            raw_line = raw_line[3:]  # UTF-8 byte-order mark written by some Windows editors
        if not raw_line.strip():
            continue
        seen_rows += 1

        def reject(field_name: str, reason: str, raw: Any, lineno: int = lineno) -> None:
            report.problems.append(Problem(name, lineno, field_name, reason))
            report.rejected_rows[lineno] = raw

        obj, reason = line_object(raw_line)
        if obj is None:  # the rejected file keeps the line's text, bad bytes escaped
            reject(LINE_FIELD, reason, raw_line.decode("utf-8", errors="backslashreplace"))
            continue

        row, problems = _check_row(
            obj, manifest_dir, required_fields, sampling_rate, max_duration_s, decode_audio
        )
        for field_name, reason in problems:
            reject(field_name, reason, obj)
        if row is not None:
            row.line = lineno
            report.rows.append(row)

    if seen_rows == 0:
        report.problems.append(Problem(name, 0, FILE_FIELD, "no rows (empty manifest)"))
    return report


class Report(Protocol):
    """What the bad-input policy needs of a checked file: good rows, problems, a summary."""

    rows: list[Any]
    problems: list[Problem]

    def summary(self) -> str: ...

    def rejected_records(self) -> Iterator[dict[str, Any]]: ...


ReportT = TypeVar("ReportT", bound=Report)


def apply_bad_input_policy(
    reports: dict[str, ReportT],
    on_bad_input: Literal["stop", "skip"],
    rejected_path: Path | None,
) -> dict[str, ReportT]:
    """Stop on any problem, or log them, write them to `rejected_path` and keep the good rows.

    "stop": any problem raises BadInputError listing every problem of every file.
    "skip": problems are logged and written to `rejected_path`. A file with no good row left
    still raises: there is nothing to skip to. Shared by every kind of manifest.
    """
    if on_bad_input not in ("stop", "skip"):
        raise ValueError(f"on_bad_input must be 'stop' or 'skip', got {on_bad_input!r}")
    bad = [r for r in reports.values() if r.problems]
    if bad and on_bad_input == "stop":
        raise BadInputError(bad)
    if rejected_path is not None:
        # Written even when empty, so a stale file from an earlier run cannot mislead.
        _write_jsonl(
            Path(rejected_path),
            (rec for r in reports.values() for rec in r.rejected_records()),
        )
    for r in bad:
        logger.warning("skipping bad input:\n%s", r.summary())
    empty = [r for r in reports.values() if not r.rows]
    if empty:
        raise BadInputError(empty, hint="no usable rows left after skipping the bad ones")
    return reports


def check_manifests(
    paths: dict[str, Path],
    *,
    on_bad_input: Literal["stop", "skip"],
    rejected_path: Path | None,
    **kw: Any,
) -> dict[str, ManifestReport]:
    """Check all manifests of a run (e.g. {"train": ..., "eval": ...}) before any training,
    then apply the bad-input policy (`apply_bad_input_policy`). `kw` goes to `read_manifest`.
    """
    if on_bad_input not in ("stop", "skip"):
        raise ValueError(f"on_bad_input must be 'stop' or 'skip', got {on_bad_input!r}")
    reports = {split: read_manifest(p, **kw) for split, p in paths.items()}
    return apply_bad_input_policy(reports, on_bad_input, rejected_path)
