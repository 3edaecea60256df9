"""`audiolora train` with `task: slu` on a tiny random Qwen2-Audio and a tiny synthesized SLU set:
text and speech rows train together, SLURP scores land in metrics.json and `audiolora eval`
reproduces them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

import audiolora
from audiolora.cli import app
from audiolora.config import RunConfig, load_config
from audiolora.training.run import run_training


def slu_config(model: Path, data: Path, out: Path, extra: list[str]) -> RunConfig:
    """The SLU recipe on the tiny model and the tiny synthesized set, plus `extra`."""
    return load_config(
        Path(audiolora.__file__).parent / "recipes" / "slu-qwen2-audio-smollm2.yaml",
        [
            f"output_dir={out}",
            f"model.name={model}",
            f"data.train={data / 'train_speech.jsonl'}",
            f"data.eval={data / 'eval.jsonl'}",
            f"slu.text_train={data / 'train_text.jsonl'}",
            *extra,
        ],
    )


def test_slu_run_scores_json_answers_and_eval_reproduces_them(
    tiny_qwen2_audio_dir: Path, slu_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = slu_config(
        tiny_qwen2_audio_dir,
        slu_dataset,
        out,
        [
            "slu.speech_fraction=0.5",
            "adapter.layers=null",
            "training.batch_size=4",
            "training.eval_batch_size=4",
            "training.max_steps=2",
            "training.save_steps=2",
            "training.eval_steps=100",
            "training.logging_steps=1",
            "training.max_new_tokens=12",
        ],
    )
    metrics = run_training(config)
    assert metrics["task"] == "slu"
    # 8 text rows + half of the 8 speech rows
    assert metrics["data"]["train"]["examples"] == 12
    assert metrics["data"]["eval"]["examples"] == 4
    for key in ("slu_f1", "intent_acc", "json_valid_rate", "latency_s_per_utterance"):
        assert key in metrics["final"] and key in metrics["base"]
    assert "scenario_acc" in metrics["final_details"]
    losses = [h["loss"] for h in metrics["history"] if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert (out / "adapter" / "adapter_config.json").exists()
    assert metrics["examples"] and metrics["examples"][0]["reference"].startswith("{")

    result = CliRunner().invoke(
        app, ["eval", str(out), "--json", "--data", str(slu_dataset / "eval.jsonl")]
    )
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    for key in ("slu_f1", "intent_acc", "json_valid_rate"):
        assert again[key] == pytest.approx(metrics["final"][key])

    wav = sorted((slu_dataset / "audio" / "eval").glob("*.wav"))[0]
    result = CliRunner().invoke(app, ["predict", str(out), str(wav)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(str(wav))


def test_curriculum_scheme_trains_text_first_then_text_and_speech(
    tiny_qwen2_audio_dir: Path, slu_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "curriculum"
    config = slu_config(
        tiny_qwen2_audio_dir,
        slu_dataset,
        out,
        [
            "slu.scheme=curriculum",
            "slu.speech_fraction=0.5",
            "adapter.layers=null",
            "data.max_eval_samples=2",
            "training.batch_size=4",
            "training.eval_batch_size=4",
            "training.max_steps=1",
            "training.eval_steps=100",
            "training.max_new_tokens=4",
            "training.num_beams=1",
            "training.learning_rate=0.01",
        ],
    )
    metrics = run_training(config)
    text, speech = metrics["stages"]
    assert (text["name"], text["train_examples"]) == ("text", 8)
    assert (speech["name"], speech["train_examples"]) == ("speech", 12)
    assert speech["learning_rate"] == pytest.approx(0.006)
    assert "slu_f1" in text["eval"]


def test_full_finetuning_saves_a_model_folder_that_eval_reloads(
    tiny_qwen2_audio_dir: Path, slu_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "full"
    config = slu_config(
        tiny_qwen2_audio_dir, slu_dataset, out,
        ["adapter.method=full", "training.batch_size=4", "training.eval_batch_size=4",
         "training.max_steps=1", "training.warmup_ratio=0", "training.max_new_tokens=12"],
    )  # fmt: skip
    metrics = run_training(config)
    assert metrics["efficiency"]["trainable_ratio"] == 1.0
    assert (out / "adapter" / "config.json").exists()
    result = CliRunner().invoke(
        app, ["eval", str(out), "--json", "--data", str(slu_dataset / "eval.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["slu_f1"] == pytest.approx(metrics["final"]["slu_f1"])
