"""Training loss with the vocabulary projection only at labelled positions: the model's loss
and gradients, for less work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from audiolora.config import AdapterConfig, ModelConfig
from audiolora.models.adapters import attach_adapters
from audiolora.models.answer_loss import labelled_positions_loss
from audiolora.models.lalm import LalmCollator, encode_example
from audiolora.models.loading import load_model


def tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def grads_of(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_same_loss_and_gradients_as_the_models_own(tiny_qwen2_audio_dir: Path) -> None:
    model, processor, family, _ = load_model(ModelConfig(name=str(tiny_qwen2_audio_dir)))
    model = attach_adapters(model, AdapterConfig(train_projector=True), family, 10)
    model.eval()  # no dropout; gradients still flow
    examples = [  # different prompt and answer lengths: right padding inside the batch
        encode_example(family, processor, [tone(3.1, 440.0)], "Transcribe.", "hello there you"),
        encode_example(family, processor, [tone(1.2, 220.0)], "Transcribe.", "hi"),
    ]
    batch = LalmCollator(family, processor)(examples)
    own = model(**batch).loss
    own_grads = grads_of(model, own)
    fast = labelled_positions_loss(model, batch)
    fast_grads = grads_of(model, fast)
    torch.testing.assert_close(fast, own.detach(), rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == own_grads.keys()
    assert any("multi_modal_projector" in n for n in fast_grads)
    for name, grad in own_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_models_of_another_shape_are_left_to_their_own_loss(tiny_random_whisper_dir: Path) -> None:
    model, *_ = load_model(ModelConfig(name=str(tiny_random_whisper_dir)))
    batch = {"input_features": torch.zeros(1, 80, 3000), "labels": torch.tensor([[1, 2]])}
    assert labelled_positions_loss(model, batch) is None
