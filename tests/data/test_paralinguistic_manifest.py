"""Bad paralinguistic rows: every problem of every row at once, with file, line and field."""

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from audiolora.data.paralinguistic import read_paralinguistic_manifest

CATEGORIES = {"age": ["adult", "child"], "emotion": ["neutral", "sad"]}


def write(tmp_path: Path, rows: list[dict]) -> Path:
    sf.write(str(tmp_path / "a.wav"), np.zeros(16000, dtype=np.float32) + 0.1, 16000)
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"audio": "a.wav", "text": "hi", **r}) + "\n" for r in rows))
    return path


def test_every_problem_is_listed_with_its_line_and_field(tmp_path: Path) -> None:
    good = {"attributes": {"category": "age", "value": "child"},
            "responses": {"adult": "a", "child": "c"}}  # fmt: skip
    rows = [
        good,
        {**good, "attributes": {"category": "accent", "value": "scottish"}},
        {**good, "attributes": {"category": "age", "value": "teen"}},
        {**good, "responses": {"adult": "a"}},
        {**good, "responses": {"adult": "a", "child": "  "}},
        {**good, "attributes": {"category": "age", "value": "adult"}},
        {
            "attributes": {"category": "emotion", "value": "sad"},
            "responses": {"neutral": "n", "sad": "s"},
        },  # fmt: skip
    ]
    examples, report = read_paralinguistic_manifest(write(tmp_path, rows), CATEGORIES)
    found = {(p.line, p.field) for p in report.problems}
    assert (2, "attributes.category") in found
    assert (3, "attributes.value") in found
    assert (4, "responses.child") in found
    assert (5, "responses.child") in found
    # Emotion appears with one value only: nothing to tell apart.
    assert any(p.line == 0 and "one value only" in p.reason for p in report.problems)
    assert [e.line for e in examples] == [1, 6, 7]
    assert examples[0].target == "c"
    assert all(str(tmp_path / "m.jsonl") in str(p) for p in report.problems)
