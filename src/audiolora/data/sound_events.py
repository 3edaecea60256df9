"""Sound-event manifests for contrastive audio-text training: one or two events and their order.

Rows: `{"audio", "labels": ["glass breaking"] | ["a", "b"], "relation": "single" | "before" |
"while", "caption", "license"}`. `before` means the first label sounds first (A then B);
`while` means the two overlap. `label` (one event) is accepted for `labels`.

Why the structure and not the caption alone: the temporal captions the training contrasts
("A, then B" against "B, then A" and "A while B") are generated from it, in several phrasings, so
a caption can never disagree with the audio, and the same composition functions build the
synthetic pairs (`builtin.synth.sound_events`) and the tests' planted answers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from audiolora.data.audio import AudioError, load_audio
from audiolora.data.manifest import ManifestReport, ManifestRow, Problem, read_manifest

Relation = Literal["single", "before", "while"]
RELATIONS: tuple[str, ...] = ("single", "before", "while")

SINGLE_PHRASES = ("{a}", "the sound of {a}", "a recording of {a}")
AND_PHRASES = ("{a} and {b}", "both {a} and {b}", "the sounds of {a} and {b}")
BEFORE_PHRASES = ("{a}, then {b}", "{a} followed by {b}", "{b} after {a}", "first {a}, then {b}")
WHILE_PHRASES = ("{a} while {b}", "{a} and {b} at the same time", "{a} together with {b}")

CLIP_PEAK = 0.999
"""Samples at or above this magnitude count as clipped."""


@dataclass(frozen=True)
class SoundEvent:
    """One checked row."""

    audio: Path
    labels: tuple[str, ...]
    relation: str
    caption: str
    license: str
    line: int

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        """What the clip means; two rows with one key are the same positive."""
        if self.relation == "while":
            return ("while", tuple(sorted(self.labels)))
        return (self.relation, self.labels)


def caption(labels: tuple[str, ...], relation: str, phrasing: int = 0, order: bool = True) -> str:
    """A caption for an event set. `order=False` words a pair without its relation ("A and B")."""
    if relation == "single":
        return SINGLE_PHRASES[phrasing % len(SINGLE_PHRASES)].format(a=labels[0])
    a, b = labels
    if not order:
        return AND_PHRASES[phrasing % len(AND_PHRASES)].format(a=a, b=b)
    phrases = BEFORE_PHRASES if relation == "before" else WHILE_PHRASES
    return phrases[phrasing % len(phrases)].format(a=a, b=b)


def temporal_negatives(
    labels: tuple[str, ...], relation: str, phrasing: int = 0
) -> list[tuple[str, str, tuple[str, str, tuple[str, ...]]]]:
    """The temporally wrong captions of a pair, as (caption, kind, meaning key): the swapped
    order ("B, then A": kind `order`) and overlap vs sequence (kind `overlap`)."""
    if relation == "single":
        return []
    a, b = labels
    if relation == "before":
        return [
            (caption((b, a), "before", phrasing), "order", ("before", (b, a))),
            (caption((a, b), "while", phrasing), "overlap", ("while", tuple(sorted((a, b))))),
        ]
    return [
        (caption((a, b), "before", phrasing), "overlap", ("before", (a, b))),
        (caption((b, a), "before", phrasing), "overlap", ("before", (b, a))),
    ]


# ---- composition ------------------------------------------------------------------------------


def fit_length(clip: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """`clip` placed at `start` in `n` samples of silence (cut if it does not fit)."""
    out = np.zeros(n, dtype=np.float32)
    piece = clip[: max(n - start, 0)]
    out[start : start + len(piece)] = piece
    return out


def compose_sequence(first: np.ndarray, second: np.ndarray, gap: int) -> np.ndarray:
    """`first`, `gap` samples of silence, then `second`."""
    silence = np.zeros(gap, dtype=np.float32)
    return np.concatenate([first, silence, second]).astype(np.float32)


def reverse_pair(first: np.ndarray, second: np.ndarray, gap: int) -> np.ndarray:
    """The same pair in the other order: what "B, then A" sounds like."""
    return compose_sequence(second, first, gap)


def overlay(base: np.ndarray, other: np.ndarray, offset: int, level_db: float) -> np.ndarray:
    """`other` added to `base` from sample `offset`, at `level_db` relative to its own level;
    the result is as long as the longer of the two. Not normalised: `clipped` says whether the
    sum exceeds full scale, and the builder rescales what it writes."""
    n = max(len(base), offset + len(other))
    out = fit_length(base, n)
    out[offset : offset + len(other)] += other * np.float32(10 ** (level_db / 20))
    return out


def clipped(audio: np.ndarray) -> bool:
    return bool(np.abs(audio).max(initial=0.0) >= CLIP_PEAK)


# ---- manifests --------------------------------------------------------------------------------


def row_problems(raw: dict[str, Any], classes: set[str] | None) -> list[tuple[str, str]]:
    """Every problem of a row's sound-event fields, as (field, reason)."""
    problems: list[tuple[str, str]] = []
    labels = raw.get("labels", [raw["label"]] if "label" in raw else None)
    field = "labels" if "labels" in raw or "label" not in raw else "label"
    relation = raw.get("relation", "single")
    if relation not in RELATIONS:
        problems.append(("relation", f"must be one of {list(RELATIONS)}, got {relation!r}"))
    if not isinstance(labels, list) or not all(isinstance(x, str) and x.strip() for x in labels):
        problems.append((field, 'must be a list of class names, e.g. ["glass breaking"]'))
    else:
        want = 1 if relation == "single" else 2
        if relation in RELATIONS and len(labels) != want:
            problems.append((field, f"relation {relation!r} needs {want} label(s), got {labels}"))
        if relation != "single" and len(set(labels)) != len(labels):
            problems.append((field, f"a pair of one class twice ({labels}) has no order to learn"))
        unknown = sorted({x for x in labels if classes is not None and x not in classes})
        if unknown:
            problems.append((field, f"unknown class(es) {unknown}; add them to data.classes"))
    text = raw.get("caption")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        problems.append(("caption", "must be a non-empty string when given"))
    lic = raw.get("license", "")
    if not isinstance(lic, str):
        problems.append(("license", "must be a string (the clip's licence)"))
    return problems


def to_event(row: ManifestRow) -> SoundEvent:
    raw = row.raw
    labels = tuple(raw.get("labels") or [raw["label"]])
    relation = raw.get("relation", "single")
    return SoundEvent(
        audio=row.audio,
        labels=labels,
        relation=relation,
        caption=raw.get("caption") or caption(labels, relation),
        license=raw.get("license", ""),
        line=row.line,
    )


def read_sound_event_manifest(
    path: Path,
    *,
    sampling_rate: int,
    classes: set[str] | None = None,
    min_clips_per_class: int = 1,
    max_duration_s: float = 30.0,
) -> tuple[list[SoundEvent], ManifestReport]:
    """Check every row (audio decoded: silence, clipping and unreadable files are found here,
    not half-way through training); returns the good rows and the report of every problem."""
    report = read_manifest(path, required_fields=("audio",), sampling_rate=sampling_rate,
                           max_duration_s=max_duration_s, decode_audio=False)  # fmt: skip
    name = str(path)
    good: list[SoundEvent] = []
    kept = []
    for row in report.rows:
        problems = row_problems(row.raw, classes)
        if not problems:
            problems = audio_problems(row, sampling_rate)
        if problems:
            report.problems += [Problem(name, row.line, f, r) for f, r in problems]
            report.rejected_rows[row.line] = row.raw
            continue
        kept.append(row)
        good.append(to_event(row))
    singles = Counter(e.labels[0] for e in good if e.relation == "single")
    for label, n in sorted(singles.items()):
        if n < min_clips_per_class:
            report.problems.append(
                Problem(
                    name,
                    0,
                    "labels",
                    f"class {label!r} has {n} single clip(s); the held-out split needs at least "
                    f"{min_clips_per_class} (add clips or lower contrastive.min_clips_per_class)",
                )  # fmt: skip
            )
    report.rows = kept
    report.problems.sort(key=lambda p: p.line)
    return good, report


def audio_problems(row: ManifestRow, sampling_rate: int) -> list[tuple[str, str]]:
    """Silent or clipping clips (the samples are decoded)."""
    try:
        audio = load_audio(row.audio, sampling_rate, row.offset, row.duration)
    except AudioError as e:
        return [(e.field, f"{e.reason} ({row.raw.get('audio')})")]
    peak = float(np.abs(audio).max(initial=0.0))
    if peak < 1e-4:
        return [("audio", f"silent (peak {peak:.1e}) ({row.raw.get('audio')})")]
    if float(np.mean(np.abs(audio) >= CLIP_PEAK)) > 0.001:
        return [
            ("audio", f"clips: samples at full scale, lower its level ({row.raw.get('audio')})")
        ]
    return []
