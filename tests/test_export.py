"""`audiolora export`: the merged model folder loads with plain transformers and gives the
adapted model's logits; what a merge cannot carry is refused with the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import WhisperForConditionalGeneration, WhisperProcessor
from typer.testing import CliRunner

from audiolora.cli import app
from audiolora.config import load_config
from audiolora.data.manifest import read_manifest
from audiolora.export import ExportError, export_run
from audiolora.inference import load_run
from audiolora.models.families.whisper import SpeechCollator, SpeechTextDataset
from audiolora.training.run import run_training


def tiny_run(model_dir: Path, speech_dataset: Path, run: Path, *extra: str) -> Path:
    overrides = [
        f"output_dir={run}",
        f"model.name={model_dir}",
        f"data.train={speech_dataset / 'train.jsonl'}",
        f"data.eval={speech_dataset / 'eval.jsonl'}",
        "training.max_steps=2",
        "training.batch_size=4",
        "training.learning_rate=0.01",
        "training.max_new_tokens=5",
        "data.retention=[]",
        "data.encoder_context=full",
        *extra,
    ]
    run_training(load_config(None, overrides))
    return run


def eval_batch(processor: WhisperProcessor, speech_dataset: Path) -> dict:
    rows = read_manifest(speech_dataset / "eval.jsonl").rows[:2]
    return SpeechCollator(50257)([SpeechTextDataset(rows, processor)[i] for i in range(2)])


def test_exported_whisper_gives_the_adapted_logits(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    run = tiny_run(tiny_random_whisper_dir, speech_dataset, tmp_path / "run")
    out = tmp_path / "exported"
    result = CliRunner().invoke(app, ["export", str(run), str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and (out / "processor_config.json").is_file()
    assert not any(out.glob("adapter_*")), "a plain model folder, not an adapter"
    record = json.loads((out / "export.json").read_text())
    assert record["merged_into"] == "the base as trained" and record["task"] == "stt"

    exported = WhisperForConditionalGeneration.from_pretrained(out).eval()
    processor = WhisperProcessor.from_pretrained(out)
    adapted, _, _ = load_run(run)
    batch = eval_batch(processor, speech_dataset)
    with torch.no_grad():
        torch.testing.assert_close(exported(**batch).logits, adapted(**batch).logits,
                                   rtol=1e-4, atol=1e-4)  # fmt: skip

    again = CliRunner().invoke(app, ["export", str(run), str(out)])
    assert again.exit_code != 0 and "exists" in again.output


def test_a_4bit_run_is_merged_into_the_full_precision_base(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    run = tiny_run(
        tiny_random_whisper_dir, speech_dataset, tmp_path / "run", "model.quantization=nf4"
    )
    record = export_run(run, tmp_path / "exported")
    assert record["merged_into"].startswith("full-precision base")
    exported = WhisperForConditionalGeneration.from_pretrained(tmp_path / "exported").eval()
    reference = PeftModel.from_pretrained(  # the same adapter on the unquantized base
        WhisperForConditionalGeneration.from_pretrained(tiny_random_whisper_dir),
        str(run / "adapter"),
    ).eval()
    batch = eval_batch(WhisperProcessor.from_pretrained(tmp_path / "exported"), speech_dataset)
    with torch.no_grad():
        torch.testing.assert_close(exported(**batch).logits, reference(**batch).logits,
                                   rtol=1e-4, atol=1e-4)  # fmt: skip


def test_a_speech_gated_run_is_refused_before_loading(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    config = load_config(None, [f"output_dir={run}", "adapter.speech_gate=true"])
    (run / "config.yaml").write_text(json.dumps(config.model_dump(mode="json")))
    with pytest.raises(ExportError, match="speech_gate"):
        export_run(run, tmp_path / "out")
    shutil.rmtree(run)


def test_a_temporal_run_exports_the_merged_model_and_its_head_beside_it(
    tiny_qwen2_audio_dir: Path, tiny_sessions: Path, tmp_path: Path
) -> None:
    from transformers import Qwen2AudioForConditionalGeneration

    from audiolora.data.sessions import BOUNDARIES, read_sessions
    from audiolora.data.windows import Window
    from audiolora.export import load_exported
    from audiolora.models.families import QWEN2_AUDIO
    from audiolora.models.heads.regression import OffsetRegressor
    from audiolora.tasks.temporal.windows import WindowCollator, WindowDataset
    from tests.training.test_temporal_run import overrides

    run = tmp_path / "run"
    run_training(load_config(None, overrides(tiny_qwen2_audio_dir, tiny_sessions, run)))
    out = tmp_path / "exported"
    record = export_run(run, out)
    assert record["head"] == "audiolora.models.heads.regression.OffsetRegressor"
    assert (out / "regression_head.safetensors").is_file()
    plain = Qwen2AudioForConditionalGeneration.from_pretrained(out)  # serving: the model alone
    assert not any("lora" in name for name, _ in plain.named_parameters())

    exported = load_exported(out)
    assert isinstance(exported, OffsetRegressor) and exported.boundaries == list(BOUNDARIES)
    adapted, processor, _ = load_run(run)
    sessions, _ = read_sessions(tiny_sessions / "eval.jsonl", window_s=20, boundaries=BOUNDARIES)
    windows = [Window(0, name, 5.0, 20.0, 0.5) for name in ("P1_end", "P2_start", "P3_start")]
    items = WindowDataset(QWEN2_AUDIO, sessions, windows, processor, boundaries=BOUNDARIES)
    batch = WindowCollator(QWEN2_AUDIO, processor)([items[i] for i in range(3)])
    batch.pop("targets")
    with torch.no_grad():
        torch.testing.assert_close(
            exported(**batch)["predictions"], adapted(**batch)["predictions"], rtol=1e-4, atol=1e-5
        )


def test_a_run_on_a_quantized_embedding_table_saves_reloads_and_exports(
    tiny_qwen2_audio_dir: Path, tiny_sessions: Path, tmp_path: Path
) -> None:
    """The 4-bit table is the base's: checkpoints and adapters leave it out, a reload rebuilds
    it, and an export merges into the full-precision table."""
    from bitsandbytes.nn import Embedding4bit
    from transformers import Qwen2AudioForConditionalGeneration

    from tests.training.test_temporal_run import overrides

    run = tmp_path / "run"
    quantized = ["model.quantization=nf4", "model.quantize_embeddings=true"]
    run_training(load_config(None, overrides(tiny_qwen2_audio_dir, tiny_sessions, run, *quantized)))
    adapted, _, _ = load_run(run)
    assert isinstance(adapted.backbone.get_input_embeddings(), Embedding4bit)
    export_run(run, tmp_path / "exported")
    plain = Qwen2AudioForConditionalGeneration.from_pretrained(tmp_path / "exported")
    assert type(plain.get_input_embeddings()) is torch.nn.Embedding


def test_an_export_reloads_in_the_dtype_it_was_trained_in(
    tiny_qwen2_audio_dir: Path, tiny_sessions: Path, tmp_path: Path
) -> None:
    from audiolora.export import load_exported
    from tests.training.test_temporal_run import overrides

    run = tmp_path / "run"
    args = [*overrides(tiny_qwen2_audio_dir, tiny_sessions, run), "model.dtype=bfloat16",
            "training.max_steps=1"]  # fmt: skip
    run_training(load_config(None, args))
    record = export_run(run, tmp_path / "exported")
    assert record["dtype"] == "bfloat16"
    exported = load_exported(tmp_path / "exported")
    assert next(exported.backbone.parameters()).dtype == torch.bfloat16
    as_fp32 = load_exported(tmp_path / "exported", dtype="float32")
    assert next(as_fp32.backbone.parameters()).dtype == torch.float32
