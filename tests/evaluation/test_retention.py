"""`data.retention`: extra held-out sets scored before and after training, in metrics.json,
the report and sweep tables, with the numbers `audiolora eval` gives on the same manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audiolora.config import load_config
from audiolora.evaluation.retention import retention_figures, retention_name
from audiolora.inference import evaluate_run
from audiolora.training.run import run_training


def overrides(model: Path, data: Path, out: Path, retention: list[str]) -> list[str]:
    return [
        f"output_dir={out}",
        f"model.name={model}",
        f"data.train={data / 'train.jsonl'}",
        f"data.eval={data / 'eval.jsonl'}",
        f"data.retention={json.dumps(retention)}",
        "training.max_steps=2",
        "training.batch_size=4",
        "training.eval_steps=100",
        "training.save_steps=2",
        "training.max_new_tokens=8",
        "training.learning_rate=0.01",
    ]


def test_retention_sets_are_scored_base_and_adapted_like_eval(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    # The training split stands in for "another domain": what matters is that it is scored
    # exactly as `audiolora eval` scores a manifest.
    other = str(speech_dataset / "train.jsonl")
    out = tmp_path / "run"
    config = load_config(None, overrides(tiny_random_whisper_dir, speech_dataset, out, [other]))
    metrics = run_training(config)

    name = retention_name(other)
    scores = json.loads((out / "metrics.json").read_text())["retention"][name]
    assert set(scores) == {"base", "final"}
    assert scores["final"]["wer"] == pytest.approx(evaluate_run(out, Path(other))["wer"])
    base = evaluate_run(out, Path(other), use_adapter=False)
    assert scores["base"]["wer"] == pytest.approx(base["wer"])
    assert f"Retention: {name}" in (out / "report.html").read_text()
    figures = retention_figures(metrics, ("wer",))
    assert figures == {
        f"wer on {name}": scores["final"]["wer"],
        f"wer on {name} before training": scores["base"]["wer"],
    }


def test_a_bad_retention_manifest_fails_before_training(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "missing.wav", "text": "x"}\n')
    out = tmp_path / "run"
    config = load_config(None, overrides(tiny_random_whisper_dir, speech_dataset, out, [str(bad)]))
    with pytest.raises(Exception, match="missing.wav"):
        run_training(config)
    assert not (out / "adapter").exists()
