"""The verified manifest: every rater decision, rewritten atomically the moment it is made, so a
reload or a crash loses nothing and training can read the file at any time.

A verified row is the source row (paths made relative to the output's folder) whose
`boundaries` hold the decided values (null: phase absent) over the annotated ones, with the full
`review` history and `review_complete` once all of BOUNDARIES are decided. Rows of sessions not
loaded this time (another --sample) are kept as they were.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from audiolora.atomic import atomic_write_text
from audiolora.data.manifest import Problem, is_number, json_objects
from audiolora.data.sessions import BOUNDARIES, relocated_row
from audiolora.review.sources import Kind, ReviewError, Session

ACTIONS = ("accept", "move", "absent")


class DecisionError(ValueError):
    """A decision the store refuses (the page shows the message)."""


class Store:
    """Decisions per session, kept in and written to one JSONL file."""

    def __init__(self, path: Path, kind: Kind, sessions: list[Session], rater: str):
        self.path = Path(path)
        self.kind = kind
        self.rater = rater
        self.sessions = {s.audio: s for s in sessions}
        self.rows: dict[Path, dict[str, Any]] = {}
        """Recording -> verified row, in file order; rebuilt for loaded sessions on write."""
        self.history: dict[Path, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        if not self.path.parent.is_dir():
            raise ReviewError(f"{self.path}: folder {self.path.parent} does not exist; create it")
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        name = str(self.path)
        fix = "fix that line or move the file aside"
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise ReviewError(f"{name}: unreadable ({e}); {fix}") from e
        for line, obj in json_objects(data, name):
            if isinstance(obj, Problem):
                if line == 0:  # an empty file: nothing decided yet
                    continue
                raise ReviewError(f"{obj}; {fix}")
            audio, review = obj.get("audio"), obj.get("review")
            if (
                not isinstance(audio, str)
                or not isinstance(review, list)
                or not all(isinstance(e, dict) and e.get("boundary") in BOUNDARIES for e in review)
            ):
                raise ReviewError(f"{name}:{line}: not a verified row (audio, review); {fix}")
            key = (self.path.parent / audio).resolve()
            self.rows[key] = obj
            self.history[key] = list(review)

    def decisions(self, session: Session) -> dict[str, float | None]:
        """Boundary -> its latest decided value."""
        return {e["boundary"]: e["value"] for e in self.history.get(session.audio, [])}

    def decide(self, session: Session, boundary: str, action: str, value: Any = None) -> dict:
        """Record one decision and rewrite the file; returns the history entry."""
        if boundary not in BOUNDARIES:
            raise DecisionError(f"unknown boundary {boundary!r}; one of {list(BOUNDARIES)}")
        if action not in ACTIONS:
            raise DecisionError(f"unknown action {action!r}; one of {list(ACTIONS)}")
        with self.lock:
            decided = self.decisions(session)
            known, before = session.candidate(self.kind, boundary)
            if boundary in decided:
                known, before = True, decided[boundary]
            if action == "accept":
                if not known:
                    raise DecisionError(f"{boundary} has no value to accept: move it or mark it")
                value = before
            elif action == "absent":
                value = None
            elif not (is_number(value) and 0 <= value <= session.duration):
                raise DecisionError(
                    f"{boundary}: a time between 0 and {session.duration:.2f} s, got {value!r}"
                )
            else:
                value = round(float(value), 3)
            entry = {
                "boundary": boundary,
                "action": action,
                "value": value,
                "before": before,
                "rater": self.rater,
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            self.history.setdefault(session.audio, []).append(entry)
            self.rows[session.audio] = self.verified_row(session)
            self._write()
        return entry

    def verified_row(self, session: Session) -> dict[str, Any]:
        row = relocated_row(session.row, session.root, self.path.parent)
        decided = self.decisions(session)
        row["boundaries"] = {**(session.row.get("boundaries") or {}), **decided}
        row["review"] = self.history[session.audio]
        row["review_complete"] = all(b in decided for b in BOUNDARIES)
        return row

    def _write(self) -> None:
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in self.rows.values())
        atomic_write_text(self.path, text)
