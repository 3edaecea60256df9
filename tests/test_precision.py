"""`training.precision`: what `auto` picks, and that every evaluation computes in the run's format
(so `audiolora eval` reproduces the scores a bf16 run wrote into metrics.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from audiolora import precision
from audiolora.config import ConfigError, load_config
from audiolora.inference import evaluate_run
from audiolora.precision import compute_precision, native_bf16, resolve_precision
from audiolora.training.run import run_training
from tests.training.test_run import tiny_overrides


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_takes_bf16_only_where_the_hardware_has_it(
    monkeypatch: pytest.MonkeyPatch, native: bool, expected: str
) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda cuda=None: native)
    assert resolve_precision("auto") == expected
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"


def test_a_cpu_without_avx512_bf16_or_amx_is_not_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not native_bf16(cuda=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert native_bf16(cuda=False)


def test_unknown_precision_is_refused_with_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        resolve_precision("fp8")
    with pytest.raises(ConfigError, match="training.precision"):
        load_config(None, ["training.precision=fp8"])


def test_compute_precision_puts_forwards_in_the_format() -> None:
    layer = nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with compute_precision("bf16"):
        assert layer(x).dtype == torch.bfloat16
    with compute_precision("fp32"):
        assert layer(x).dtype == torch.float32


def test_eval_of_a_bf16_run_reproduces_its_metrics(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_random_whisper_dir, speech_dataset, out, **{"training.precision": "bf16"}
    )
    run_training(load_config(None, overrides))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["efficiency"]["precision"] == "bf16"

    again = evaluate_run(out, speech_dataset / "eval.jsonl")
    assert again["perplexity"] == pytest.approx(saved["final"]["perplexity"], rel=1e-6)
    assert again["wer"] == pytest.approx(saved["final"]["wer"])
    base = evaluate_run(out, speech_dataset / "eval.jsonl", use_adapter=False)
    assert base["perplexity"] == pytest.approx(saved["base"]["perplexity"], rel=1e-6)
