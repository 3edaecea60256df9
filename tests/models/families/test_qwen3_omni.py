"""Qwen3-Omni's thinker as a family, on a tiny random mixture-of-experts one: its chunked audio
token count, LoRA on the language model's attention, and a speech-to-text run end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
    _get_feat_extract_output_lengths,
)

from audiolora.config import AdapterConfig, ModelConfig, load_config
from audiolora.models.adapters import attach_adapters
from audiolora.models.families import QWEN3_OMNI
from audiolora.models.lalm import LalmCollator, encode_example
from audiolora.models.loading import load_model
from audiolora.training.run import run_training


def test_token_counts_follow_the_towers_chunking() -> None:
    frames = torch.tensor([1, 37, 99, 100, 101, 250, 300, 2999, 3000])
    # The model's own formula (a private function, read here only to check ours against it).
    assert QWEN3_OMNI.audio_token_counts(frames).tolist() == (
        _get_feat_extract_output_lengths(frames, 50).tolist()
    )


def test_a_clip_gets_the_placeholders_the_tower_fills(tiny_qwen3_omni_dir: Path) -> None:
    model, processor, family, _ = load_model(ModelConfig(name=str(tiny_qwen3_omni_dir)))
    assert family is QWEN3_OMNI
    audio = (0.1 * np.sin(np.arange(3 * 16000) / 16000 * 2 * np.pi * 220)).astype(np.float32)
    ex = encode_example(family, processor, [audio], "Transcribe.", "hi")
    assert int((ex["input_ids"] == processor.audio_token_id).sum()) == 39  # 3 full chunks
    loss = model(**LalmCollator(family, processor)([ex])).loss
    assert math.isfinite(loss.item())
    everywhere = attach_adapters(model, AdapterConfig(), family, 10)
    lora = [n for n, m in everywhere.named_modules() if hasattr(m, "lora_A")]
    assert lora and all(".model.language_model.layers." in n and "self_attn" in n for n in lora)


def test_selected_layers_get_lora_and_the_towers_none(tiny_qwen3_omni_dir: Path) -> None:
    model, _, family, _ = load_model(ModelConfig(name=str(tiny_qwen3_omni_dir)))
    cfg = AdapterConfig(layers=[-1], target_modules=["q_proj", "v_proj"], train_projector=True)
    peft_model = attach_adapters(model, cfg, family, 10)
    lora = sorted(n for n, m in peft_model.named_modules() if hasattr(m, "lora_A"))
    assert [n.split("model.language_model.")[1] for n in lora] == [
        "layers.1.self_attn.q_proj",
        "layers.1.self_attn.v_proj",
    ]
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("audio_tower.proj2" in n for n in trainable)


def test_another_audio_chunking_is_refused(tiny_qwen3_omni_dir: Path) -> None:
    model, *_ = load_model(ModelConfig(name=str(tiny_qwen3_omni_dir)))
    model.config.audio_config.n_window = 25
    with pytest.raises(ValueError, match="n_window=25"):
        QWEN3_OMNI.configure(model, None)


def test_stt_runs_end_to_end(
    tiny_qwen3_omni_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    metrics = run_training(
        load_config(
            None,
            [
                f"model.name={tiny_qwen3_omni_dir}",
                f"data.train={speech_dataset / 'train.jsonl'}",
                f"data.eval={speech_dataset / 'eval.jsonl'}",
                f"output_dir={tmp_path / 'stt'}",
                "training.max_steps=2",
                "training.batch_size=2",
                "training.max_new_tokens=4",
                "training.precision=fp32",
                "data.max_eval_samples=2",
            ],
        )
    )
    assert metrics["family"] == "qwen3_omni" and math.isfinite(metrics["final"]["perplexity"])
