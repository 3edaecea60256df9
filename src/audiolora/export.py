"""`audiolora export RUN OUT`: a run's adapter merged into its base, as a plain transformers
model folder (safetensors, config, processor) that `from_pretrained` and serving stacks load
without audiolora or PEFT.

Why a merge and not the adapter: servers (vLLM, TGI, a plain `pipeline`) take a model folder;
a merged model also runs at the base model's speed. An NF4 or int8 run is merged into the
full-precision base (merging into 4-bit weights would round the update away), and the export
says so. A task head outside the base architecture (the temporal regression head, the
paralinguistic auxiliary head) is written beside the merged model in its own files, and
`load_exported(OUT)` rebuilds model + head. Refused with the reason: the speech-activity gate,
which scales the update per frame at run time, and the contrastive dual encoder, which is not
a transformers model to merge into.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from typing import Any

from peft import PeftModel
from transformers import PreTrainedModel

from audiolora.atomic import atomic_write_json
from audiolora.config import ModelConfig
from audiolora.inference import run_config
from audiolora.models.heads.base import HeadModel
from audiolora.models.loading import load_model
from audiolora.tasks.registry import get_task


class ExportError(ValueError):
    """The run cannot be exported as a plain model folder; the message says why."""


def export_run(run_dir: Path, out: Path) -> dict[str, Any]:
    """Merge RUN/adapter into the base and write `out`; returns what `export.json` records."""
    run_dir, out = Path(run_dir), Path(out)
    config = run_config(run_dir, True)
    if config.adapter.speech_gate:
        raise ExportError(
            f"{run_dir}: adapter.speech_gate scales the update frame by frame at run time; a "
            "merged model cannot carry it (export a run trained without the gate)"
        )
    model_cfg = config.model.model_copy()
    quantized = model_cfg.quantization != "none"
    if quantized:  # merge into full-precision weights, never into 4/8-bit ones
        model_cfg = model_cfg.model_copy(
            update={
                "quantization": "none",
                "dtype": "float32",
                "quantize_lm_head": False,
                "quantize_embeddings": False,
            }
        )
    if out.exists():
        raise ExportError(f"{out} exists; give a new folder")
    base, processor, family, base_path = load_model(model_cfg)
    if not isinstance(base, PreTrainedModel):
        raise ExportError(
            f"{run_dir}: the {config.task} run's {type(base).__name__} is not a transformers "
            "model to merge into; use the run folder itself (`audiolora predict`)"
        )
    task = get_task(config.task)
    adapted = task.load(base, run_dir / "adapter", family)
    head = adapted if isinstance(adapted, HeadModel) else None
    merged = merge(head.backbone if head else adapted, base)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(str(partial), safe_serialization=True)
    processor.save_pretrained(str(partial))
    if head is not None:  # beside the model, in the head's own files
        head.save_head(partial)
    record = {
        "run": str(run_dir.resolve()),
        "task": config.task,
        "base": config.model.name,
        "base_path": str(base_path),
        "merged_into": "full-precision base (the run trained on a "
        f"{config.model.quantization} base)"
        if quantized
        else "the base as trained",
        "adapter_scale": config.adapter.final_scale,
        "encoder_context": config.data.encoder_context,
        "model_class": type(merged).__name__,
        "dtype": model_cfg.dtype,
        "family": family.name,
        "head": None if head is None else f"{type(head).__module__}.{type(head).__qualname__}",
    }
    atomic_write_json(partial / "export.json", record)
    partial.rename(out)
    return record


def merge(adapted: Any, base: PreTrainedModel) -> PreTrainedModel:
    """The adapter folded into the base weights (a full fine-tune already is a whole model)."""
    if isinstance(adapted, PeftModel):
        return adapted.merge_and_unload()
    if adapted is base or type(adapted) is type(base):
        return adapted
    raise ExportError(f"cannot merge a {type(adapted).__name__} into {type(base).__name__}")


def load_exported(folder: Path, dtype: str | None = None) -> Any:
    """An exported folder as audiolora uses it: the plain model, or model + task head, in the
    dtype it was exported in (`export.json`), or `dtype` ("float32", "bfloat16", "float16").

    Without audiolora, the model alone loads with `AutoModel...from_pretrained(folder)`; the
    head is `export.json`'s "head" class with its weights and config beside the model."""
    folder = Path(folder)
    record = json.loads((folder / "export.json").read_text())
    dtype = dtype or record.get("dtype", "float32")  # folders exported before it was recorded
    model, _, family, _ = load_model(ModelConfig(name=str(folder), dtype=dtype))
    if not record.get("head"):
        return model
    module, _, name = record["head"].rpartition(".")
    head_class = getattr(importlib.import_module(module), name)
    return head_class.from_pretrained(model, folder, family).eval()
