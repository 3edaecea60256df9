"""Sound-event manifests: pair composition, captions and their temporal negatives, and every bad
row reported at once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from audiolora.data.sound_events import (
    caption,
    clipped,
    compose_sequence,
    overlay,
    read_sound_event_manifest,
    reverse_pair,
    temporal_negatives,
)


def test_reversed_pair_is_the_concatenation_in_the_other_order() -> None:
    a, b = np.full(4, 0.1, np.float32), np.full(3, 0.2, np.float32)
    seq = compose_sequence(a, b, gap=2)
    assert np.allclose(seq, [0.1] * 4 + [0.0] * 2 + [0.2] * 3)
    rev = reverse_pair(a, b, gap=2)
    assert np.array_equal(rev, np.concatenate([b, np.zeros(2, np.float32), a]))
    assert len(rev) == len(seq)


def test_overlay_length_and_level() -> None:
    base, other = np.full(10, 0.5, np.float32), np.full(6, 0.5, np.float32)
    mixed = overlay(base, other, offset=7, level_db=-6.0)
    assert len(mixed) == 13  # the longer of base and the shifted other
    assert np.allclose(mixed[:7], 0.5)
    assert np.allclose(mixed[7:10], 0.5 + 0.5 * 10 ** (-6 / 20))
    assert np.allclose(mixed[10:], 0.5 * 10 ** (-6 / 20))
    assert clipped(overlay(base, other, 0, 6.0)) and not clipped(mixed)


def test_captions_and_temporal_negatives() -> None:
    assert caption(("dog", "door"), "before", 1) == "dog followed by door"
    assert caption(("dog", "door"), "before", 2) == "door after dog"
    assert caption(("dog", "door"), "while", 0, order=False) == "dog and door"
    negatives = temporal_negatives(("dog", "door"), "before", 2)
    assert negatives[0] == ("dog after door", "order", ("before", ("door", "dog")))
    assert negatives[1][1] == "overlap" and negatives[1][2] == ("while", ("dog", "door"))
    assert temporal_negatives(("dog",), "single") == []
    kinds = {k for _, k, _ in temporal_negatives(("b", "a"), "while")}
    assert kinds == {"overlap"}


def test_every_bad_row_is_reported_at_once(tmp_path: Path) -> None:
    sr = 16000
    t = np.arange(sr) / sr
    sf.write(tmp_path / "ok.wav", 0.3 * np.sin(2 * np.pi * 440 * t), sr)
    sf.write(tmp_path / "silent.wav", np.zeros(sr), sr)
    sf.write(tmp_path / "loud.wav", np.clip(3 * np.sin(2 * np.pi * 440 * t), -1, 1), sr)
    rows = [
        {"audio": "ok.wav", "labels": ["dog"], "relation": "single", "license": "CC0"},
        {"audio": "silent.wav", "labels": ["dog"]},
        {"audio": "loud.wav", "labels": ["dog"]},
        {"audio": "ok.wav", "labels": ["dog", "cat"], "relation": "before"},
        {"audio": "ok.wav", "labels": ["dog"], "relation": "sideways"},
        {"audio": "missing.wav", "label": "dog"},
        {"audio": "ok.wav", "labels": ["dog", "dog"], "relation": "while"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    events, report = read_sound_event_manifest(
        manifest, sampling_rate=sr, classes={"dog"}, min_clips_per_class=2
    )
    assert [e.line for e in events] == [1]
    by_line = {p.line: (p.field, p.reason) for p in report.problems}
    assert "silent" in by_line[2][1]
    assert "full scale" in by_line[3][1]
    assert by_line[4][0] == "labels" and "unknown class" in by_line[4][1]
    assert by_line[5][0] == "relation"
    assert by_line[6][0] == "audio"
    assert "one class twice" in by_line[7][1]
    assert "needs at least 2" in by_line[0][1]  # the class as a whole
