"""Tiny sessions for the review tests: a few seconds of WAV (a tone, then silence), a transcript,
and the three inputs `audiolora review` takes (manifest, label file, run folder)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

RATE = 16000
DURATION_S = 12.0
TIMES = {"P1_start": 1.0, "P1_end": 3.0, "P2_start": 4.0, "P2_end": 6.0, "P3_start": 7.0}
WORDS = [
    ("hello", 0.5, 0.9, "therapist"),
    ("welcome", 1.2, 1.8, "therapist"),
    ("today", 3.6, 4.1, "client"),
    ("I", 4.4, 4.5, "client"),
    ("remember", 4.6, 5.2, "client"),
    ("goodbye", 10.0, 10.6, "therapist"),
]


def write_manifest(
    folder: Path, n: int = 3, row: Callable[[int], dict[str, Any]] | None = None
) -> Path:
    """`folder/sessions.jsonl` with `n` sessions: P3_end absent (null) in every one, session i's
    boundaries shifted by i/10 s; `row(i)` adds or replaces fields."""
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    (folder / "transcripts").mkdir(exist_ok=True)
    t = np.arange(int(RATE * DURATION_S)) / RATE
    tone = np.where(t < 6.0, 0.3 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
    lines = []
    for i in range(n):
        sf.write(folder / f"audio/s{i}.wav", tone, RATE)
        words = [
            {"word": w, "start": a, "end": b, "speaker": s, "phase": None} for w, a, b, s in WORDS
        ]
        (folder / f"transcripts/s{i}.json").write_text(json.dumps(words))
        record = {
            "audio": f"audio/s{i}.wav",
            "duration": DURATION_S,
            "boundaries": {**{k: v + i / 10 for k, v in TIMES.items()}, "P3_end": None},
            "transcript": f"transcripts/s{i}.json",
            "speakers": 2,
        }
        record.update(row(i) if row else {})
        lines.append(json.dumps(record))
    path = folder / "sessions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_predictions(run: Path, manifest: Path, shift: Callable[[int], float]) -> Path:
    """RUN/sessions-<stem>.json as `audiolora predict RUN --sessions M` writes it, every
    predicted boundary `shift(i)` seconds off the annotation."""
    run.mkdir(parents=True, exist_ok=True)
    sessions = []
    for i, line in enumerate(manifest.read_text().splitlines()):
        row = json.loads(line)
        annotated = {k: v for k, v in row["boundaries"].items() if v is not None}
        sessions.append(
            {
                "audio": str((manifest.parent / row["audio"]).resolve()),
                "line": i + 1,
                "boundaries": {k: round(v + shift(i), 2) for k, v in annotated.items()},
                "annotated": annotated,
                "abs_error_s": {k: abs(shift(i)) for k in annotated},
            }
        )
    out = run / f"sessions-{manifest.stem}.json"
    out.write_text(json.dumps({"manifest": str(manifest.resolve()), "sessions": sessions}))
    return out
