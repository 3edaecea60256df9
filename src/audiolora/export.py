"""`audiolora export RUN OUT`: a run's adapter merged into its base, as a plain transformers
model folder (safetensors, config, processor) that `from_pretrained` and serving stacks load
without audiolora or PEFT.

Why a merge and not the adapter: servers (vLLM, TGI, a plain `pipeline`) take a model folder;
a merged model also runs at the base model's speed. An NF4 or int8 run is merged into the
full-precision base (merging into 4-bit weights would round the update away), and the export
says so. What a merge cannot carry is refused with the reason: a task head outside the base
architecture (temporal regression, contrastive projections) and the speech-activity gate, which
scales the update per frame at run time.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from peft import PeftModel

from audiolora.atomic import atomic_write_json
from audiolora.inference import run_config
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
        model_cfg = model_cfg.model_copy(update={"quantization": "none", "dtype": "float32"})
    base, processor, family, base_path = load_model(model_cfg)
    task = get_task(config.task)
    adapted = task.load(base, run_dir / "adapter", family)
    if isinstance(adapted, PeftModel):
        merged = adapted.merge_and_unload()
    elif adapted is base or type(adapted) is type(base):  # adapter.method=full: a whole model
        merged = adapted
    else:
        raise ExportError(
            f"{run_dir}: a {config.task} run has a head outside the base architecture "
            f"({type(adapted).__name__}); export merges adapters into plain transformers "
            "models only. Use the run folder itself (`audiolora predict`) for this task."
        )
    if out.exists():
        raise ExportError(f"{out} exists; give a new folder")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(str(partial), safe_serialization=True)
    processor.save_pretrained(str(partial))
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
    }
    atomic_write_json(partial / "export.json", record)
    partial.rename(out)
    return record
