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


def test_every_evaluation_of_a_bf16_run_computes_in_bf16(
    tiny_random_whisper_dir: Path,
    speech_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The evaluations during training (step 2 of 4 here) run in the same autocast as the
    final one, so the history and the final score measure one model the same way."""
    from audiolora.tasks.stt import SpeechToText

    in_autocast: list[bool] = []
    evaluate = SpeechToText.evaluate

    def recording(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        in_autocast.append(torch.is_autocast_enabled("cpu"))
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(SpeechToText, "evaluate", recording)
    overrides = tiny_overrides(
        tiny_random_whisper_dir, speech_dataset, tmp_path / "run", **{"training.precision": "bf16"}
    )
    run_training(load_config(None, overrides))
    # steps 2 and 4 during training, then the final one (the base takes its own path)
    assert len(in_autocast) == 3 and all(in_autocast)


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_weights_stored_in_the_compute_dtype_give_the_same_numbers(
    tiny_qwen2_audio_dir: Path, dora: bool
) -> None:
    """Casting a frozen fp32 base (and its adapter) to bf16 once gives exactly what autocast
    computes when it casts them on every call, tower, language model and LoRA alike. DoRA
    reads its base weights outside autocast (their norm): those stay as they are."""
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from audiolora.config import AdapterConfig
    from audiolora.models.adapters import attach_adapters
    from audiolora.models.families import QWEN2_AUDIO
    from audiolora.models.lalm import LalmCollator, encode_example
    from tests.models.test_lalm import INSTRUCTION, tone

    torch.manual_seed(0)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio_dir)
    QWEN2_AUDIO.configure(model, None)
    adapter = AdapterConfig(r=4, dropout=0.0, use_dora=dora)
    model = attach_adapters(model, adapter, QWEN2_AUDIO, 10)
    for name, p in model.named_parameters():  # a trained adapter, not the zero-init one
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    head = nn.Linear(model.config.text_config.hidden_size, 1)  # trainable: left as it is
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)
    batch = LalmCollator(QWEN2_AUDIO, processor, processor.tokenizer.pad_token_id)(
        [encode_example(QWEN2_AUDIO, processor, [tone(3.0)], INSTRUCTION, None)]
    )

    def states() -> torch.Tensor:
        with torch.no_grad(), compute_precision("bf16"):
            return QWEN2_AUDIO.hidden_states(model, batch).last_hidden_state

    before = states()
    assert precision.store_in_compute_dtype(model, "fp32") == 0
    changed = precision.store_in_compute_dtype(model, "bf16")
    assert precision.store_in_compute_dtype(head, "bf16") == 0
    assert head.weight.dtype == torch.float32
    lm_layer = model.base_model.model.model.language_model.layers[0]
    adapted = lm_layer.self_attn.q_proj.base_layer.weight.dtype
    assert adapted == (torch.float32 if dora else torch.bfloat16)
    assert model.base_model.model.model.audio_tower.conv1.weight.dtype == torch.bfloat16
    assert changed > 10
    assert torch.equal(states(), before)


def test_a_weight_tied_to_the_token_embeddings_keeps_its_precision(
    tiny_random_whisper_dir: Path,
) -> None:
    """Whisper's proj_out shares its weight with the decoder's token embeddings, which are read
    outside autocast's matmuls: casting it would change the embeddings."""
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(tiny_random_whisper_dir)
    model.requires_grad_(False)
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    assert precision.store_in_compute_dtype(model, "bf16") > 0
    assert model.proj_out.weight.dtype == torch.float32
    assert model.model.encoder.conv1.weight.dtype == torch.bfloat16
    assert model.model.decoder.layers[0].fc1.weight.dtype == torch.bfloat16
