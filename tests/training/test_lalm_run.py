"""`audiolora train` / `eval` / `predict` on an audio LM (tiny random Qwen2-Audio): the same run
folder contract as Whisper, LoRA inside the language model, the projector saved with it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiolora.cli import app
from audiolora.config import load_config
from audiolora.training.run import run_training


def test_lalm_stt_run_trains_projector_and_lora(
    tiny_qwen2_audio_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    overrides = [
        f"output_dir={out}",
        f"model.name={tiny_qwen2_audio_dir}",
        f"data.train={speech_dataset / 'train.jsonl'}",
        f"data.eval={speech_dataset / 'eval.jsonl'}",
        "adapter.train_projector=true",
        "data.spec_augment.enabled=false",  # as the audio-LM recipes: the tower cache applies
        "training.max_steps=3",
        "training.batch_size=4",
        "training.eval_steps=100",
        "training.save_steps=100",
        "training.logging_steps=1",
        "training.max_new_tokens=5",
        "training.learning_rate=0.01",
        "data.retention=[]",
    ]
    metrics = run_training(load_config(None, overrides))
    assert metrics["family"] == "qwen2_audio"
    assert set(metrics["final"]) >= {"wer", "cer", "bleu", "perplexity"}
    losses = [h["loss"] for h in metrics["history"] if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    # One epoch of 12 clips: every tower output computed once, through the cache.
    assert metrics["efficiency"]["tower_cache_misses"] == 12

    tensors = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert any("multi_modal_projector" in k for k in tensors), "projector must be saved"
    lora = [k for k in tensors if "lora_" in k]
    assert lora and all(".language_model." in k for k in lora)

    runner = CliRunner()
    result = runner.invoke(
        app, ["eval", str(out), "--json", "--data", str(speech_dataset / "eval.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["wer"] == metrics["final"]["wer"]

    wav = sorted((speech_dataset / "audio" / "eval").glob("*.wav"))[0]
    result = runner.invoke(app, ["predict", str(out), str(wav)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(str(wav))


@pytest.mark.parametrize("model_fixture", ["tiny_qwen2_audio_dir", "tiny_omni_dir"])
def test_gradient_accumulation_matches_the_whole_batch_on_audio_lms(
    model_fixture: str, speech_dataset: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Qwen2-Audio averages its own tokens (audiolora rescales); the Omni thinker divides by
    the Trainer's token count itself (audiolora must not rescale again)."""
    model_dir = request.getfixturevalue(model_fixture)
    losses = {}
    for name, extra in (
        ("whole", ["training.batch_size=4"]),
        ("accumulated", ["training.batch_size=2", "training.gradient_accumulation_steps=2"]),
    ):
        overrides = [
            f"output_dir={tmp_path / name}",
            f"model.name={model_dir}",
            f"data.train={speech_dataset / 'train.jsonl'}",
            "data.spec_augment.enabled=false",
            "data.group_by_length=false",
            "adapter.dropout=0.0",
            "training.max_steps=2",
            "training.logging_steps=1",
            "training.save_steps=100",
            "training.learning_rate=0.01",
            "data.retention=[]",
            *extra,
        ]
        metrics = run_training(load_config(None, overrides))
        losses[name] = [h["loss"] for h in metrics["history"] if "loss" in h]
    assert losses["accumulated"] == pytest.approx(losses["whole"], rel=1e-4)
