"""Qwen2.5-Omni's thinker as a family, on a tiny random one: real-length audio features, its own
placeholder expansion (the model itself does not notice one token too few), LoRA in the language
model only, NF4 skips, and the stt, temporal and slu tasks end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from audiolora.config import AdapterConfig, ModelConfig, load_config
from audiolora.models.adapters import attach_adapters
from audiolora.models.families import QWEN2_5_OMNI
from audiolora.models.lalm import LalmCollator, encode_example, generate_text
from audiolora.models.loading import load_model
from audiolora.training.run import run_training

SR = 16000


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.1 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


def test_audio_is_encoded_at_its_real_length(tiny_omni_dir: Path) -> None:
    model, processor, family, _ = load_model(ModelConfig(name=str(tiny_omni_dir)))
    assert family is QWEN2_5_OMNI
    ex = encode_example(family, processor, [tone(3.0)], "Transcribe.", "hi")
    assert ex["input_features"].shape == (1, 128, 300)  # 3 s of frames, not 30 s of padding
    placeholders = int((ex["input_ids"] == processor.audio_token_id).sum())
    _, expected = model.model.audio_tower._get_feat_extract_output_lengths(torch.tensor(300))
    assert placeholders == int(expected) == 75
    batch = LalmCollator(family, processor)(
        [ex, encode_example(family, processor, [tone(1.0)], "Transcribe.", "hello")]
    )
    assert batch["input_features"].shape == (2, 128, 300)  # padded to the longer segment
    loss = model(**batch).loss
    assert math.isfinite(loss.item())
    prompts = LalmCollator(family, processor, padding_side="left")(
        [encode_example(family, processor, [tone(1.0)], "Transcribe.", None)]
    )
    assert len(generate_text(model.eval(), processor, prompts, max_new_tokens=3)) == 1


def test_lora_stays_in_the_language_model_and_nf4_skips_the_towers(tiny_omni_dir: Path) -> None:
    model, _, family, _ = load_model(ModelConfig(name=str(tiny_omni_dir)))
    peft_model = attach_adapters(model, AdapterConfig(layers=[-1]), family, 10)
    lora = [n for n, m in peft_model.named_modules() if hasattr(m, "lora_A")]
    assert lora and all(".model.language_model.layers.1." in n for n in lora)
    assert set(family.quant_skip_modules) == {"model.audio_tower", "model.visual", "lm_head"}


def test_stt_temporal_and_slu_run_end_to_end(
    tiny_omni_dir: Path,
    speech_dataset: Path,
    tiny_sessions: Path,
    slu_dataset: Path,
    tmp_path: Path,
) -> None:
    common = [
        f"model.name={tiny_omni_dir}",
        "training.max_steps=2",
        "training.batch_size=2",
        "training.eval_batch_size=4",
        "training.max_new_tokens=4",
        "training.precision=fp32",
        "data.max_eval_samples=2",
    ]
    stt = run_training(
        load_config(
            None,
            [
                *common,
                f"data.train={speech_dataset / 'train.jsonl'}",
                f"data.eval={speech_dataset / 'eval.jsonl'}",
                f"output_dir={tmp_path / 'stt'}",
            ],
        )
    )
    assert stt["family"] == "qwen2_5_omni" and math.isfinite(stt["final"]["perplexity"])
    temporal = run_training(
        load_config(
            None,
            [
                *common,
                "task=temporal",
                "temporal.window_s=20",
                "adapter.layers=[-1]",
                f"data.train={tiny_sessions / 'train.jsonl'}",
                f"data.eval={tiny_sessions / 'eval.jsonl'}",
                f"output_dir={tmp_path / 'temporal'}",
            ],
        )
    )
    assert math.isfinite(temporal["final"]["mae_s"])
    assert (tmp_path / "temporal" / "adapter" / "regression_head.safetensors").exists()
    slu = run_training(
        load_config(
            None,
            [
                *common,
                "task=slu",
                f"data.train={slu_dataset / 'train_speech.jsonl'}",
                f"slu.text_train={slu_dataset / 'train_text.jsonl'}",
                f"data.eval={slu_dataset / 'eval.jsonl'}",
                f"output_dir={tmp_path / 'slu'}",
            ],
        )
    )
    assert slu["family"] == "qwen2_5_omni" and math.isfinite(slu["final"]["slu_f1"])
    assert slu["data"]["train"]["examples"] == 16  # 8 text rows + all 8 speech rows
