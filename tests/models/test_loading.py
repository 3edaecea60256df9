"""Loading a base model: what stays in memory after a quantized load."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from audiolora.models.loading import load_model, own_unquantized_tensors
from audiolora.settings import ModelConfig


def checkpoint_mappings(folder: Path) -> list[str]:
    """Lines of /proc/self/maps that map a file of `folder` into this process."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    return [line for line in maps if str(folder) in line]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
@pytest.mark.parametrize(
    ("quantization", "embeddings"), [("nf4", False), ("int8", False), ("nf4", True)]
)
def test_a_quantized_load_keeps_no_view_of_the_checkpoint_file(
    tiny_qwen2_audio_dir: Path, tmp_path: Path, quantization: str, embeddings: bool
) -> None:
    # A copy of its own, so no other test's model maps the same file.
    folder = shutil.copytree(tiny_qwen2_audio_dir, tmp_path / "model")
    cfg = ModelConfig(name=str(folder), quantization=quantization, quantize_embeddings=embeddings)
    model, *_ = load_model(cfg)
    # The unquantized tensors (tower, projector, norms, lm_head) were loaded in the file's dtype:
    # as views they would keep the whole file mapped, and every page read stays resident.
    assert model.lm_head.weight.dtype == torch.float32
    assert checkpoint_mappings(folder) == []
    with torch.no_grad():  # still the file's numbers
        reloaded, *_ = load_model(ModelConfig(name=str(folder)))
        assert torch.equal(model.lm_head.weight, reloaded.lm_head.weight)


def test_own_unquantized_tensors_copies_a_tied_weight_once_and_keeps_it_tied() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight
    model.register_buffer("steps", torch.zeros(3, dtype=torch.long))
    before = model[0].weight.data_ptr()
    assert own_unquantized_tensors(model) == 1  # the shared weight; the integer buffer is kept
    assert model[1].weight is model[0].weight
    assert model[0].weight.data_ptr() != before
