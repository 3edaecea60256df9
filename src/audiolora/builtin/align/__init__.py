"""Align the assembled audio LM to speech on a CPU: `audiolora models align`.

Why: `builtin:qwen2-audio-smollm2-tiny` has a fresh projector, so speech means nothing to its
language model, and every audio-LM recipe run on it learns nothing from audio. The stock
recipe (`align-qwen2-audio-smollm2`, the Trainer, the tower on 30 s of padding every step)
needs about four CPU hours. This pipeline does the same training -- projector + LoRA on the
LM, "Transcribe the audio." on synthesized speech -- in minutes:

1. data: `clips` synthesized utterances whose sentences and voices stay out of the builtin
   speech set's held-out split (`builtin:speech` eval is what the result is scored on);
2. the frozen tower's outputs, once per clip on its real frames (`features`);
3. a least-squares projector start (`projector_init`);
4. projector + LoRA steps on the cached outputs (`loop`), checkpointed and resumable.

The output is an ordinary run folder (`config.yaml`, `adapter/`), so `audiolora eval RUN`
scores it through the standard path and `model.merge_adapter: RUN` starts a recipe from it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from audiolora.atomic import atomic_save_torch, atomic_write_json, replace_dir
from audiolora.builtin.align.features import cached_examples
from audiolora.builtin.align.loop import CachedAudioLM, LoopSettings, train_alignment, write_log
from audiolora.builtin.align.projector_init import fit_projector
from audiolora.cache import cache_dir
from audiolora.evaluation.text_ability import text_retention
from audiolora.precision import compute_precision, resolve_precision

ASSEMBLED_BASE = "qwen2-audio-smollm2-tiny"
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class AlignRecipe:
    """Everything that decides the aligned weights; the same recipe gives the same weights."""

    base: str = f"builtin:{ASSEMBLED_BASE}"
    train: str | None = None
    """Training manifest; None: `clips` utterances synthesized by `alignment_data_dir`."""
    held_out: str | None = None
    """Held-out manifest; None: the builtin speech set's eval split."""
    clips: int = 2000
    data_seed: int = 0
    lora_r: int = 8
    lora_alpha: float = 16.0
    targets: tuple[str, ...] = TARGETS
    ridge_strength: float = 1e-3
    realign: int = 1
    loop: LoopSettings = field(default_factory=LoopSettings)


def alignment_data_dir(clips: int, seed: int, progress: bool = True) -> Path:
    """`clips` synthesized training utterances, none of them sharing a sentence or a voice with
    `builtin:speech`'s held-out split; built once into the cache."""
    from audiolora.builtin.synth.speech import synth_speech_dataset
    from audiolora.data.sources import builtin_speech_dir

    out = cache_dir() / "data" / f"speech-align-{clips}-seed{seed}"
    if not (out / "dataset.json").exists():
        synth_speech_dataset(
            out,
            n_train=clips,
            n_eval=0,
            seed=seed,
            held_out_from=builtin_speech_dir(),
            progress=progress,
        )
    return out


def _run_config(recipe: AlignRecipe, output: Path, train: Path, held_out: Path) -> Any:
    """The run folder's `config.yaml`: the stt recipe that `audiolora eval` rebuilds."""
    from audiolora.config import load_config

    overrides = {
        "output_dir": str(output),
        "model.name": recipe.base,
        "adapter.r": recipe.lora_r,
        "adapter.alpha": recipe.lora_alpha,
        "adapter.dropout": 0.0,
        "adapter.target_modules": list(recipe.targets),
        "adapter.train_projector": True,
        "data.train": str(train),
        "data.eval": str(held_out),
        "training.seed": recipe.loop.seed,
        "training.batch_size": recipe.loop.batch_size,
        "training.max_steps": recipe.loop.steps,
        "training.precision": recipe.loop.precision,
        "training.max_new_tokens": recipe.loop.max_new_tokens,
    }
    from audiolora.cli import builtin_recipes

    return load_config(
        builtin_recipes()["align-qwen2-audio-smollm2"],
        [f"{k}={json.dumps(v)}" for k, v in overrides.items()],
    )


def align_assembled(
    output: Path, recipe: AlignRecipe | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run (or resume) the alignment into the run folder `output`; returns its summary."""
    from audiolora.config import save_config
    from audiolora.data.manifest import check_manifests
    from audiolora.data.sources import builtin_speech_dir
    from audiolora.models.adapters import attach_adapters
    from audiolora.models.lalm import STT_INSTRUCTION, padding_token_id, stop_token_ids
    from audiolora.models.loading import load_model
    from audiolora.settings import AdapterConfig

    recipe = recipe or AlignRecipe()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    if recipe.train is None:
        train_manifest = (
            alignment_data_dir(recipe.clips, recipe.data_seed, progress) / "train.jsonl"
        )
    else:
        train_manifest = Path(recipe.train)
    held_out = Path(recipe.held_out) if recipe.held_out else builtin_speech_dir() / "eval.jsonl"
    timings["data_s"] = time.perf_counter() - started
    config = _run_config(recipe, output, train_manifest, held_out)
    reports = check_manifests(
        {"train": train_manifest, "eval": held_out},
        on_bad_input="stop",
        rejected_path=output / "rejected.jsonl",
        sampling_rate=16000,
        max_duration_s=30.0,
    )
    torch.manual_seed(recipe.loop.seed)
    model, processor, family, _ = load_model(config.model)
    model.requires_grad_(False)

    mark = time.perf_counter()
    train = cached_examples(
        family,
        model,
        processor,
        reports["train"].rows,
        output / "features" / "train",
        STT_INSTRUCTION,
        progress=progress,
    )
    evals = cached_examples(
        family,
        model,
        processor,
        reports["eval"].rows,
        output / "features" / "eval",
        STT_INSTRUCTION,
        desc="audio tower (held out)",
        progress=progress,
    )
    timings["features_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    init_file = output / "projector-init.pt"
    if init_file.is_file():
        init = torch.load(init_file, weights_only=False)
    else:
        weight, bias, fit = fit_projector(
            train, model.get_input_embeddings().weight, recipe.ridge_strength, recipe.realign
        )
        init = {"weight": weight, "bias": bias, "fit": fit}
        atomic_save_torch(init, init_file)
    projector = model.get_submodule(family.projector_prefix).linear
    with torch.no_grad():
        projector.weight.copy_(init["weight"])
        projector.bias.copy_(init["bias"])
    timings["projector_init_s"] = time.perf_counter() - mark

    if resolve_precision(recipe.loop.precision) == "bf16":
        # The frozen LM computes in bf16 under autocast anyway; stored in bf16 it is not cast
        # again at every step. LoRA and the projector stay fp32 (PEFT keeps adapters fp32).
        model.get_submodule(family.text_prefix).to(torch.bfloat16)
        model.get_output_embeddings().to(torch.bfloat16)
    adapter = AdapterConfig(
        r=recipe.lora_r,
        alpha=recipe.lora_alpha,
        dropout=0.0,
        target_modules=list(recipe.targets),
        train_projector=True,
    )
    model = attach_adapters(model, adapter, family, recipe.loop.steps)
    lm = CachedAudioLM(model, family, family.audio_token_id(processor), padding_token_id(processor))
    stop_ids = stop_token_ids(model, processor)
    mark = time.perf_counter()
    state = train_alignment(
        lm, family, train, evals, recipe.loop, output, stop_ids, processor.tokenizer, progress
    )
    timings["loop_s"] = time.perf_counter() - mark
    write_log(output, state)

    model.eval()
    with compute_precision(recipe.loop.precision):
        text_after = text_retention(model, processor.tokenizer)
        with model.disable_adapter():
            text_before = text_retention(model, processor.tokenizer)
    tmp = output / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    replace_dir(tmp, output / "adapter")
    save_config(config, output / "config.yaml")
    timings["total_s"] = time.perf_counter() - started

    evaluations = [e for e in state.log if "wer" in e]
    summary = {
        "recipe": asdict(recipe),
        "data": str(train_manifest),
        "held_out": str(held_out),
        "train_clips": len(train),
        "held_out_clips": len(evals),
        "projector_fit": init["fit"],
        "before": {k: evaluations[0][k] for k in ("wer", "cer", "bleu")},
        "after": {k: evaluations[-1][k] for k in ("wer", "cer", "bleu")},
        "training_wall_s": round(state.wall_s, 1),
        "timings_this_session_s": {k: round(v, 1) for k, v in timings.items()},
        "text": {"before": text_before, "after": text_after},
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_json(output / "align.json", summary)
    label = f"{recipe.loop.steps} steps, {summary['torch_threads']} CPU threads"
    plot_curve({label: state.log}, output / "align.png")
    return summary


def plot_curve(logs: dict[str, list[dict[str, Any]]], out: Path) -> None:
    """Held-out WER against training wall time, one line per labelled alignment log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, log in logs.items():
        points = [e for e in log if "wer" in e]
        minutes = [e["wall_s"] / 60 for e in points]
        ax.plot(minutes, [100 * e["wer"] for e in points], "o-", label=label)
    ax.axhline(10, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("training wall time (min)")
    ax.set_ylabel("held-out WER (%)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
