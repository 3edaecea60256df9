"""What a rater reviews: a label file (proposed boundaries), a session manifest (annotated ones)
or a temporal run folder (predicted ones beside the manifest's), read into one session list.

Everything is checked up front and every problem reported at once, in the file/line/field form
of `manifest.Problem`, so a review never stops half-way on a bad row.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from audiolora.data.manifest import Problem, is_number, json_objects, type_name
from audiolora.data.sessions import BOUNDARIES, session_recording

Kind = Literal["proposed", "annotated", "predicted"]


class ReviewError(Exception):
    """Input a review cannot start from; the message names the file (and line) and the fix."""


@dataclass
class Session:
    """One recording to review, with every opinion about its boundaries (None = absent)."""

    line: int
    """1-based line of the session in its manifest."""
    row: dict[str, Any]
    """The manifest row as read, paths relative to `root`."""
    root: Path
    """The manifest's folder."""
    audio: Path
    duration: float
    transcript: Path | None
    annotated: dict[str, float | None]
    proposed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Boundary -> {"time_s", "evidence", "confidence"} from `audiolora label sessions`."""
    predicted: dict[str, float | None] = field(default_factory=dict)

    def candidate(self, kind: Kind, name: str) -> tuple[bool, float | None]:
        """(known, value) the page starts a boundary from: the source's own kind, else the
        annotated value; (False, None) when nobody said anything about it."""
        if kind == "proposed" and name in self.proposed:
            return True, self.proposed[name].get("time_s")
        if kind == "predicted" and name in self.predicted:
            return True, self.predicted[name]
        if name in self.annotated:
            return True, self.annotated[name]
        return False, None

    def disagreement(self) -> float | None:
        """Largest gap between any two opinions on one boundary (seconds); a phase one side
        calls absent and the other places counts as the whole recording. None: nothing to
        compare."""
        worst: float | None = None
        for name in BOUNDARIES:
            opinions = []
            if name in self.proposed:
                opinions.append(self.proposed[name].get("time_s"))
            if name in self.predicted:
                opinions.append(self.predicted[name])
            if name in self.annotated:
                opinions.append(self.annotated[name])
            for i, a in enumerate(opinions):
                for b in opinions[i + 1 :]:
                    if a is None and b is None:
                        gap = 0.0
                    elif a is None or b is None:
                        gap = self.duration
                    else:
                        gap = abs(a - b)
                    worst = gap if worst is None else max(worst, gap)
        return worst


@dataclass
class Source:
    """A loaded review input."""

    kind: Kind
    path: Path
    """What the user gave: the file, or the run folder."""
    manifest: Path
    sessions: list[Session]
    default_output: Path
    note: str = ""
    """Said once at start, e.g. which of several predictions files was taken."""


def load_source(path: Path, predictions: Path | None = None) -> Source:
    """Detect what `path` is and read it; ReviewError listing every problem if it cannot."""
    path = Path(path)
    if path.is_dir():
        return _load_run(path, predictions)
    if predictions is not None:
        raise ReviewError(f"--predictions is for a run folder, but {path} is a file")
    sessions = read_manifest(path)
    kind: Kind = "proposed" if any(s.proposed for s in sessions) else "annotated"
    out = path.with_name(f"{path.stem}.verified.jsonl")
    return Source(kind, path, path, sessions, out)


def read_manifest(path: Path) -> list[Session]:
    """Every row of a session (or label) manifest, or ReviewError listing every bad row."""
    name = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        msg = f"{path}: not found; give a session manifest, label file or run folder"
        raise ReviewError(msg) from None
    except OSError as e:
        raise ReviewError(f"{path}: unreadable ({e})") from e
    root = path.resolve().parent
    sessions: list[Session] = []
    problems: list[Problem] = []
    seen: dict[Path, int] = {}
    for lineno, obj in json_objects(data, name):
        if isinstance(obj, Problem):
            problems.append(obj)
            continue
        session, bad = _session(obj, root, lineno)
        problems += [Problem(name, lineno, f, reason) for f, reason in bad]
        if session is None:
            continue
        if session.audio in seen:
            reason = f"same recording as line {seen[session.audio]}; keep one row per recording"
            problems.append(Problem(name, lineno, "audio", reason))
            continue
        seen[session.audio] = lineno
        sessions.append(session)
    if problems:
        raise ReviewError("\n".join(str(p) for p in problems))
    return sessions


def _session(obj: dict[str, Any], root: Path, line: int) -> tuple[Session | None, list]:
    problems: list[tuple[str, str]] = []
    audio_path, duration, audio_problem = session_recording(obj, root)
    if audio_problem:
        problems.append(("audio", audio_problem))

    transcript = None
    rel = obj.get("transcript")
    if rel is not None:
        if not isinstance(rel, str) or not (root / rel).is_file():
            problems.append(("transcript", f"file not found ({rel!r}); fix or drop the path"))
        else:
            transcript = root / rel

    annotated: dict[str, float | None] = {}
    raw = obj.get("boundaries", {})
    if not isinstance(raw, dict):
        problems.append(("boundaries", f"must be an object of times, got {type_name(raw)}"))
        raw = {}
    for name in BOUNDARIES:
        if name in raw:
            value = raw[name]
            if value is not None and not is_number(value):
                reason = f"seconds or null (absent), got {json.dumps(value)}"
                problems.append((f"boundaries.{name}", reason))
            else:
                annotated[name] = value

    proposed: dict[str, dict[str, Any]] = {}
    raw = obj.get("proposed", {})
    if not isinstance(raw, dict):
        problems.append(("proposed", f"must be an object per boundary, got {type_name(raw)}"))
        raw = {}
    for name in BOUNDARIES:
        entry = raw.get(name)
        if name not in raw:
            continue
        if not isinstance(entry, dict) or not (
            entry.get("time_s") is None or is_number(entry.get("time_s"))
        ):
            reason = f'expected {{"time_s": seconds or null, ...}}, got {json.dumps(entry)}'
            problems.append((f"proposed.{name}", reason))
        else:
            proposed[name] = entry

    if problems or audio_path is None or duration is None:
        return None, problems
    return Session(line, obj, root, audio_path, duration, transcript, annotated, proposed), []


def _load_run(run: Path, predictions: Path | None) -> Source:
    """A temporal run folder: its `sessions-*.json` (newest, or --predictions) and manifest;
    the sessions it predicted are reviewed (rows predict refused are not)."""
    note = ""
    if predictions is None:
        found = sorted(run.glob("sessions-*.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise ReviewError(
                f"{run}: no sessions-*.json; write one with "
                f"`audiolora predict {run} --sessions MANIFEST`, or give a manifest instead"
            )
        predictions = found[-1]
        if len(found) > 1:
            others = ", ".join(p.name for p in found[:-1])
            note = f"reviewing {predictions.name}, the newest (also here: {others}; pick one "
            note += "with --predictions)"
    try:
        result = json.loads(predictions.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ReviewError(f"{predictions}: unreadable ({e}); rerun `audiolora predict`") from e
    manifest = result.get("manifest") if isinstance(result, dict) else None
    if not isinstance(manifest, str):
        raise ReviewError(
            f"{predictions}: field 'manifest' missing (written by an older `audiolora predict`); "
            f"rerun `audiolora predict {run} --sessions MANIFEST`"
        )
    by_line = {s.line: s for s in read_manifest(Path(manifest))}
    sessions = []
    for k, entry in enumerate(result.get("sessions") or [], start=1):
        where = f"{predictions}: session {k}"
        line = entry.get("line") if isinstance(entry, dict) else None
        if line not in by_line:
            raise ReviewError(f"{where}: no line {line!r} in {manifest}; rerun `audiolora predict`")
        session = by_line[entry["line"]]
        if Path(entry.get("audio", "")).resolve() != session.audio:
            raise ReviewError(
                f"{where}: audio {entry.get('audio')} is not line {session.line}'s "
                f"({session.audio}): the manifest changed since; rerun `audiolora predict`"
            )
        times = entry.get("boundaries") or {}
        session.predicted = {  # None: the search reported the phase absent (--min-phase-s)
            n: float(times[n]) if is_number(times[n]) else None
            for n in BOUNDARIES
            if n in times and (times[n] is None or is_number(times[n]))
        }
        sessions.append(session)
    if not sessions:
        raise ReviewError(f"{predictions}: no sessions in it; rerun `audiolora predict`")
    out = run / f"verified-{Path(manifest).stem}.jsonl"
    return Source("predicted", run, Path(manifest), sessions, out, note)


def select(sessions: list[Session], *, sample: float | None, seed: int, sort: str) -> list[Session]:
    """A deterministic share of the sessions (at least one), in manifest order or largest
    disagreement first."""
    if sample is not None:
        if not (0 < sample <= 1):
            raise ReviewError(f"--sample must be a share in (0, 1], e.g. 0.1; got {sample}")
        n = max(1, round(sample * len(sessions)))
        keep = set(random.Random(seed).sample(range(len(sessions)), n))
        sessions = [s for i, s in enumerate(sessions) if i in keep]
    if sort == "disagreement":
        return sorted(sessions, key=lambda s: -(s.disagreement() or -1.0))
    if sort != "order":
        raise ReviewError(f"--sort must be 'disagreement' or 'order', got {sort!r}")
    return sessions
