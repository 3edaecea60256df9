"""The contrastive task's declarations: its stage schedules, and bad sound-event rows reported
all at once before any model loads (stop), or skipped into rejected.jsonl (skip)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audiolora
from audiolora.config import load_config
from audiolora.data.manifest import BadInputError
from audiolora.tasks.contrastive import Contrastive

RECIPE = Path(audiolora.__file__).parent / "recipes" / "contrastive-dual-encoder.yaml"


def test_schedules_are_stages() -> None:
    task = Contrastive()
    ab = task.stages(load_config(RECIPE, ["training.learning_rate=1e-4"]))
    assert [s.name for s in ab] == ["A", "B"]
    assert ab[0].set == {"contrastive.captions": "events"}
    assert ab[1].set == {"contrastive.captions": "temporal", "training.learning_rate": 5e-5}
    only_b = task.stages(load_config(RECIPE, ["contrastive.schedule=b"]))
    assert [(s.name, s.set) for s in only_b] == [("B", {"contrastive.captions": "temporal"})]
    assert task.stages(load_config(RECIPE, ["contrastive.schedule=none"])) == []


def manifests(tmp_path: Path) -> tuple[Path, Path]:
    sr = 16000
    tone = 0.3 * np.sin(2 * np.pi * 330 * np.arange(sr) / sr)
    sf.write(tmp_path / "tone.wav", tone, sr)
    sf.write(tmp_path / "silent.wav", np.zeros(sr), sr)
    train = [
        {"audio": "tone.wav", "labels": ["bell"], "relation": "single", "license": "CC0"},
        {"audio": "tone.wav", "labels": ["horn"], "relation": "single", "license": "CC0"},
        {"audio": "tone.wav", "labels": ["bell", "horn"], "relation": "before", "license": "CC0"},
        {"audio": "silent.wav", "labels": ["bell"], "relation": "single"},
    ]
    held = [
        {"audio": "tone.wav", "labels": ["bell"], "relation": "single"},
        {"audio": "tone.wav", "labels": ["horn"], "relation": "single"},
        {"audio": "tone.wav", "labels": ["bell", "gong"], "relation": "while"},
    ]
    paths = []
    for name, rows in (("train", train), ("eval", held)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(path)
    return paths[0], paths[1]


def test_bad_rows_stop_the_run_with_every_problem(tmp_path: Path) -> None:
    train, held = manifests(tmp_path)
    config = load_config(RECIPE, [f"data.train={train}", f"data.eval={held}"])
    with pytest.raises(BadInputError) as e:
        Contrastive().check_data(config, tmp_path)
    text = str(e.value)
    assert "train.jsonl:4" in text and "silent" in text
    assert "eval.jsonl:3" in text and "unknown class(es) ['gong']" in text


def test_skip_keeps_the_good_rows_and_writes_the_rejected(tmp_path: Path) -> None:
    train, held = manifests(tmp_path)
    config = load_config(
        RECIPE, [f"data.train={train}", f"data.eval={held}", "data.on_bad_input=skip"]
    )
    reports = Contrastive().check_data(config, tmp_path)
    assert [r.line for r in reports["train"].rows] == [1, 2, 3]
    assert [r.line for r in reports["eval"].rows] == [1, 2]
    rejected = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 2
