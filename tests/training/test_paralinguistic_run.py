"""`audiolora train` with `task: paralinguistic` on a tiny random Qwen2-Audio and the paired-voice
set cut to one topic: the auxiliary head trains beside LoRA, PA figures land in metrics.json,
the saved adapter holds no head, and `audiolora eval` scores the run without it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

import audiolora
from audiolora.cli import app
from audiolora.config import RunConfig, load_config
from audiolora.training.run import run_training


def para_config(model: Path, data: Path, out: Path, extra: list[str]) -> RunConfig:
    """The shipped recipe on `model` and the one-topic set, with the head on, plus `extra`."""
    return load_config(
        Path(audiolora.__file__).parent / "recipes" / "paralinguistic-qwen2-audio-smollm2.yaml",
        [
            f"output_dir={out}",
            f"model.name={model}",
            f"data.train={data / 'train.jsonl'}",
            f"data.eval={data / 'eval.jsonl'}",
            "data.retention=[]",
            "paralinguistic.aux_head=true",
            "training.batch_size=4",
            "training.max_steps=2",
            *extra,
        ],
    )


def test_paralinguistic_run_with_aux_head(
    tiny_qwen2_audio_dir: Path, paralinguistic_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = para_config(
        tiny_qwen2_audio_dir,
        paralinguistic_dataset,
        out,
        ["adapter.layers=[0]", "training.eval_batch_size=4", "training.save_steps=2",
         "training.logging_steps=1", "training.max_new_tokens=8"],
    )  # fmt: skip
    metrics = run_training(config)
    assert metrics["task"] == "paralinguistic"
    for key in ("pa_score", "pa_rate", "safety/pa_rate", "text_perplexity"):
        assert key in metrics["final"] and key in metrics["base"], key
    for key in ("age/pa_score", "gender/pa_rate", "emotion/pa_rate", "safety/count"):
        assert key in metrics["final_details"], key
    assert -1 <= metrics["final"]["pa_score"] <= 1
    # The judge is checked on the references themselves and must get most of them right.
    assert metrics["final_details"]["judge_agreement"] > 0.8
    losses = [h["loss"] for h in metrics["history"] if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)

    adapter = out / "adapter"
    assert (adapter / "aux_head.safetensors").exists()
    head_config = json.loads((adapter / "aux_head.json").read_text())
    assert head_config["layer"] == 0 and head_config["weight"] == 0.5
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved), "the adapter must hold LoRA only"

    result = CliRunner().invoke(
        app, ["eval", str(out), "--json", "--data", str(paralinguistic_dataset / "eval.jsonl")]
    )
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["pa_score"] == pytest.approx(metrics["final"]["pa_score"])


def test_short_real_run_on_the_embedded_aligned_model(
    cache_root: Path, paralinguistic_dataset: Path, tmp_path: Path
) -> None:
    """Two steps of the recipe as shipped (the aligned model, LoRA on the lower layers, the
    auxiliary head on the top one), then the layer analysis of the finished run."""
    from audiolora.builtin.aligned import aligned_model_path

    model = aligned_model_path("qwen2-audio-smollm2-aligned", cache_dir=cache_root)
    out = tmp_path / "real"
    config = para_config(
        model,
        paralinguistic_dataset,
        out,
        ["data.max_eval_samples=4", "adapter.layers=[0,1,2,3]", "training.max_new_tokens=16"],
    )
    metrics = run_training(config)
    assert metrics["final_details"]["judge_agreement"] > 0.8
    assert json.loads((out / "adapter" / "aux_head.json").read_text())["layer"] == 3
    # The language model still answers in words (not a broken adapter's noise).
    assert any(len(e["hypothesis"].split()) >= 3 for e in metrics["examples"])

    analysis = tmp_path / "layers"
    result = CliRunner().invoke(app, [
        "analyze", "layers", str(out), "--data", str(paralinguistic_dataset / "train.jsonl"),
        "--output", str(analysis),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((analysis / "layers.json").read_text())["layers"] == 30


def test_full_finetuning_with_the_aux_head_saves_a_model_folder(
    tiny_qwen2_audio_dir: Path, paralinguistic_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "full"
    config = para_config(
        tiny_qwen2_audio_dir, paralinguistic_dataset, out,
        ["adapter.method=full", "training.max_steps=1", "training.eval_batch_size=4",
         "training.max_new_tokens=4", "data.max_eval_samples=4"],
    )  # fmt: skip
    metrics = run_training(config)
    assert metrics["efficiency"]["trainable_ratio"] == 1.0
    adapter = out / "adapter"
    assert (adapter / "config.json").exists() and (adapter / "aux_head.safetensors").exists()
    result = CliRunner().invoke(
        app, ["eval", str(out), "--json", "--data", str(paralinguistic_dataset / "eval.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pa_score"] == pytest.approx(metrics["final"]["pa_score"])
