"""Speech-activity-conditioned LoRA: a gate of 1 is plain LoRA, 0 the base model; Silero VAD
finds the speech in a real TTS clip and none in silence or padding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import WhisperForConditionalGeneration

from audiolora.data.audio import load_audio
from audiolora.models.speech_gate import install_speech_gate, set_speech_gate, speech_activity


def encoder_out(model, features: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.get_encoder()(features).last_hidden_state


def test_gate_one_is_plain_lora_and_zero_is_the_base(tiny_random_whisper_dir: Path) -> None:
    torch.manual_seed(0)
    base = WhisperForConditionalGeneration.from_pretrained(tiny_random_whisper_dir).eval()
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "fc1"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    frames = base.config.max_source_positions * 2
    features = torch.randn(2, base.config.num_mel_bins, frames)
    lora = encoder_out(model, features)
    with model.disable_adapter():
        plain_base = encoder_out(model, features)
    assert not torch.allclose(lora, plain_base, atol=1e-4)

    install_speech_gate(model, "model.encoder")
    positions = frames // 2
    set_speech_gate(model, torch.ones(2, positions))
    assert torch.allclose(encoder_out(model, features), lora, atol=1e-5)
    set_speech_gate(model, torch.zeros(2, positions))
    assert torch.allclose(encoder_out(model, features), plain_base, atol=1e-5)
    half = torch.zeros(2, positions)
    half[:, : positions // 2] = 1.0
    set_speech_gate(model, half)
    gated = encoder_out(model, features)
    assert not torch.allclose(gated, lora, atol=1e-4)
    assert not torch.allclose(gated, plain_base, atol=1e-4)
    # The scaling is a float again after every forward.
    layer = model.base_model.model.model.encoder.layers[0].self_attn.q_proj
    assert isinstance(layer.scaling["default"], float)


def test_vad_finds_speech_in_a_tts_clip_and_none_in_silence(speech_dataset: Path) -> None:
    row = json.loads((speech_dataset / "eval.jsonl").read_text().splitlines()[0])
    audio = load_audio(speech_dataset / row["audio"], 16000)
    seconds = len(audio) / 16000
    gate = speech_activity(audio, 16000, frames=1500, frame_s=0.02)
    inside = int(seconds / 0.02)
    assert gate[:inside].max() > 0.8
    assert np.all(gate[inside + 2 :] == 0)  # the 30 s padding is not speech
    silence = speech_activity(np.zeros(16000, np.float32), 16000, frames=50, frame_s=0.02)
    assert silence.max() < 0.2


def test_the_gate_is_the_same_inside_a_bf16_autocast_region(speech_dataset: Path) -> None:
    """Evaluation reads clips inside the run's autocast (training.precision auto / bf16)."""
    row = json.loads((speech_dataset / "eval.jsonl").read_text().splitlines()[0])
    audio = load_audio(speech_dataset / row["audio"], 16000)
    plain = speech_activity(audio, 16000, frames=200, frame_s=0.02)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        autocast = speech_activity(audio, 16000, frames=200, frame_s=0.02)
    np.testing.assert_array_equal(autocast, plain)
