"""The frozen tower's outputs reused across epochs: same loss and gradients, fewer tower passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from audiolora.config import AdapterConfig, ModelConfig
from audiolora.models.adapters import attach_adapters
from audiolora.models.lalm import LalmCollator, encode_example
from audiolora.models.loading import load_model

SR = 16000


def tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def loss_and_grads(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def test_cached_tower_gives_the_same_loss_and_gradients(tiny_qwen2_audio_dir: Path) -> None:
    model, processor, family, _ = load_model(ModelConfig(name=str(tiny_qwen2_audio_dir)))
    model = attach_adapters(model, AdapterConfig(train_projector=True), family, 10)
    model.eval()  # no dropout; gradients still flow
    examples = [
        encode_example(family, processor, [tone(2.3, 440.0)], "Transcribe.", "hello"),
        encode_example(family, processor, [tone(1.1, 220.0)], "Transcribe.", "hi there"),
    ]
    batch = LalmCollator(family, processor)(examples)
    plain_loss, plain_grads = loss_and_grads(model, batch)
    assert any("multi_modal_projector" in n for n in plain_grads)

    cache = family.cache_tower(model, budget_mb=64)
    first_loss, first_grads = loss_and_grads(model, batch)
    again_loss, _ = loss_and_grads(model, batch)
    assert (cache.misses, cache.hits) == (2, 2), "computed once, then reused"
    for loss in (first_loss, again_loss):
        torch.testing.assert_close(loss, plain_loss, rtol=1e-5, atol=1e-5)
    assert first_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(first_grads[name], grad, rtol=1e-4, atol=1e-5)

    with torch.no_grad():  # evaluation and generation take the model's own path
        model(**batch)
    assert (cache.misses, cache.hits) == (2, 2)

    tower = model.get_submodule("base_model.model.model.audio_tower")
    tower.config.dropout = 0.1
    tower.train()  # dropout draws new outputs every pass: nothing to reuse
    loss_and_grads(model, batch)
    assert (cache.misses, cache.hits) == (2, 2)
    tower.config.dropout = 0.0
    tower.eval()
    tower.layers[0].fc1.weight.requires_grad_(True)  # a training tower is never cached
    loss_and_grads(model, batch)
    assert (cache.misses, cache.hits) == (2, 2)
    assert cache.summary()["tower_cache_mb"] > 0
