"""Training schedules: each stage its own data, learning rate and trainable parts, started from
the previous stage's weights; a resumed run skips finished stages and continues mid-stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from audiolora.config import ConfigError, load_config, stage_configs
from audiolora.training.run import run_training

STAGES = (
    "stages=[{name: warm, set: {training.learning_rate: 0.02, training.max_steps: 2, "
    "data.train: DATA/eval.jsonl}, trainable: [lora_A]}, "
    "{name: full, set: {training.learning_rate: 0.005, training.max_steps: 3}}]"
)


def staged(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"output_dir={out}",
        f"model.name={model}",
        f"data.train={data / 'train.jsonl'}",
        f"data.eval={data / 'eval.jsonl'}",
        "training.batch_size=4",
        "training.eval_steps=100",
        "training.save_steps=2",
        "training.logging_steps=1",
        "training.max_new_tokens=8",
        STAGES.replace("DATA", str(data)),
        "data.retention=[]",
        *extra,
    ]


def lora_b(run_dir: Path, stage: str) -> dict[str, torch.Tensor]:
    tensors = load_file(str(run_dir / "stages" / stage / "trainable.safetensors"))
    return {k: v for k, v in tensors.items() if "lora_B" in k}


def test_stage_settings_resolve_and_bad_stage_keys_are_named(tmp_path: Path) -> None:
    config = load_config(None, [STAGES.replace("DATA", str(tmp_path))])
    (warm_name, warm), (full_name, full) = stage_configs(config)
    assert (warm_name, full_name) == ("warm", "full")
    assert warm.training.learning_rate == 0.02 and full.training.learning_rate == 0.005
    assert warm.data.train == f"{tmp_path}/eval.jsonl" and full.data.train == "builtin:speech"
    with pytest.raises(ConfigError, match=r"(?s)stages\[0\] \(a\).*training.epoch"):
        load_config(None, ["stages=[{name: a, set: {training.epoch: 1}}]"])
    with pytest.raises(ConfigError, match="cannot change"):
        load_config(None, ["stages=[{name: a, set: {adapter.r: 4}}]"])


def test_each_stage_uses_its_data_lr_and_trainable_parts(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    metrics = run_training(load_config(None, staged(tiny_random_whisper_dir, speech_dataset, out)))
    warm, full = metrics["stages"]
    n_eval = len((speech_dataset / "eval.jsonl").read_text().splitlines())
    n_train = len((speech_dataset / "train.jsonl").read_text().splitlines())
    assert (warm["steps"], warm["train_examples"]) == (2, n_eval)
    assert (full["steps"], full["train_examples"]) == (3, n_train)
    assert warm["trainable_params"] < full["trainable_params"]
    # lora_B starts at zero and is frozen in the warm stage: still zero after it, trained after.
    assert all(v.abs().sum() == 0 for v in lora_b(out, "0-warm").values())
    assert all(v.abs().sum() > 0 for v in lora_b(out, "1-full").values())
    # Learning rates per stage: each stage's schedule peaks at its own rate.
    rates = {
        s: [
            h["learning_rate"]
            for h in metrics["history"]
            if h.get("stage") == s and "learning_rate" in h
        ]
        for s in ("warm", "full")
    }
    assert max(rates["warm"]) <= 0.02 and max(rates["warm"]) > 0.005
    assert max(rates["full"]) <= 0.005
    steps = [h["step"] for h in metrics["history"] if "loss" in h]
    assert steps == [1, 2, 3, 4, 5], "steps count on across stages"
    assert set(metrics["stages"][0]["eval"]) >= {"wer", "cer"}
    assert (out / "adapter" / "adapter_config.json").exists()


def test_resume_skips_finished_stages_and_continues_mid_stage(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = staged(
        tiny_random_whisper_dir, speech_dataset, out, "training.save_steps=1", "data.eval=null"
    )
    run_training(load_config(None, args))
    finished = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    # As if killed during stage "full" after its second step (checkpoint-1 is already rotated
    # out by save_total_limit=2).
    shutil.rmtree(out / "checkpoints" / "stage-1-full" / "checkpoint-3")
    shutil.rmtree(out / "stages" / "1-full")
    shutil.rmtree(out / "adapter")
    metrics = run_training(load_config(None, args), resume=True)
    assert metrics["resumed_from"].endswith("stage-1-full/checkpoint-2")
    assert [s["name"] for s in metrics["stages"]] == ["warm", "full"]
    again = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    for key, tensor in finished.items():
        torch.testing.assert_close(again[key], tensor, rtol=1e-4, atol=1e-6, msg=key)
    assert (
        json.loads((out / "stages" / "0-warm" / "STAGE_DONE.json").read_text())["summary"]["steps"]
        == 2
    )
