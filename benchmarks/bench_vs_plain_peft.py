"""audiolora vs. a plain transformers + PEFT script: same model, data, settings and step count.

Why: audiolora adds a manifest pipeline, lazy feature extraction, length-grouped batching and
measurement on top of the `Trainer`; this benchmark shows what that costs (or saves) against the
script most people would write by following the Hugging Face "fine-tune Whisper" guide.

Each mode runs in its own subprocess, so peak RSS is per run, never shared:

    python benchmarks/bench_vs_plain_peft.py [--recipe R] [--max-steps 30] [--set key=value ...]

The parent resolves the data and the model once (so neither run pays for synthesis or import),
re-invokes this file with `--mode audiolora` and then `--mode plain`, and prints one table.
Both runs read their settings from the same validated audiolora config (recipe + `--set`), so an
override such as `training.batch_size=4` or `adapter.r=16` applies to both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before transformers is imported: huggingface_hub reads HF_HUB_OFFLINE once, at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import TrainerCallback  # noqa: E402

DEFAULT_REPORT_DIR = Path(__file__).resolve().parent / "results"
REPORT_NAME = "bench_vs_plain_peft"
MODES = ("audiolora", "plain")
FLOP_EVERY = 10


# --------------------------------------------------------------------------------------------
# Timing shared by both modes (same semantics as audiolora's EfficiencyMeter)
# --------------------------------------------------------------------------------------------


class StepClock(TrainerCallback):
    """Times optimizer steps with the same hooks audiolora's EfficiencyMeter uses.

    In transformers 5 the batches of an optimizer step are fetched *before* `on_step_begin`, so
    begin->end is compute only (forward, backward, clip, optimizer). The gap between two
    consecutive `on_step_end` calls also covers data loading and collation: the steady-state
    figure. The first step is left out of both, as audiolora does (warm-up, allocator growth).
    """

    def __init__(self) -> None:
        self.compute: list[float] = []
        self.ends: list[float] = []
        self.evals: list[float] = []
        self.flops: dict[int, int] = {}
        self._counter: Any = None
        self._begin = 0.0
        self.train_begin = 0.0
        self.train_end = 0.0
        self.training_peak_mb = float("nan")

    @staticmethod
    def _sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from audiolora.evaluation.efficiency import reset_peak_memory

        reset_peak_memory()  # as the EfficiencyMeter: the peak covers training only
        self.train_begin = time.perf_counter()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Every FLOP_EVERY-th step is counted (as audiolora's EfficiencyMeter counts) and left
        # out of the timing in both runs, since counting slows it.
        if len(self.compute) % FLOP_EVERY == 0:
            from torch.utils.flop_counter import FlopCounterMode

            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        self._begin = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._sync()
        now = time.perf_counter()
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops[len(self.compute)] = self._counter.get_total_flops()
            self._counter = None
        self.compute.append(now - self._begin)
        self.ends.append(now)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # AudioTrainer.evaluate fires this once its evaluation is done; it always follows a step
        # end, so the gap is the evaluation's duration.
        self.evals.append(time.perf_counter() - self.ends[-1] if self.ends else float("nan"))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from audiolora.evaluation.efficiency import peak_memory_mb

        self.train_end = time.perf_counter()
        self.training_peak_mb = peak_memory_mb()

    def summary(self, samples_per_step: int, precision: str) -> dict[str, Any]:
        from audiolora.evaluation.efficiency import matmul_peak

        timed = [t for i, t in enumerate(self.compute) if i and i not in self.flops]
        latency = sum(timed) / len(timed) if timed else float("nan")
        gaps = [
            b - a
            for i, (a, b) in enumerate(zip(self.ends, self.ends[1:], strict=False), 1)
            if i not in self.flops
        ]
        steady = sum(gaps) / len(gaps) if gaps else float("nan")
        per_step = sum(self.flops.values()) / len(self.flops) if self.flops else float("nan")
        peak = matmul_peak(precision)
        return {
            "model_gflop_per_step": per_step / 1e9,
            "model_gflops_per_s": per_step / latency / 1e9,
            "mfu": per_step / latency / peak["flops_per_s"],
            "matmul_peak_gflops_per_s": peak["flops_per_s"] / 1e9,
            "compute_precision": precision,
            "optimizer_steps": len(self.compute),
            "samples_per_step": samples_per_step,
            "step_latency_s": latency,
            "samples_per_second": samples_per_step / latency,
            "steady_step_s": steady,
            "samples_per_second_steady": samples_per_step / steady,
            "step_compute_s": [round(x, 4) for x in self.compute],
            "in_train_evals": len(self.evals),
            "in_train_eval_s": sum(self.evals),
            "training_peak_mb": self.training_peak_mb,
        }


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------
# Mode (a): audiolora
# --------------------------------------------------------------------------------------------


def audiolora_overrides(args: argparse.Namespace, work_dir: Path, ours: bool = False) -> list[str]:
    """The `--set` list a run is configured from (`ours`: with `--ours-set` too).

    Benchmark defaults come first so the user's `--set` can change them; `--ours-set` (what
    only audiolora offers: trimmed encoder input, bf16) comes next; the step count and the
    output folder come last because the benchmark owns them.
    """
    defaults = [
        # No evaluation inside trainer.train(): the plain run has none either, and an eval at
        # step N would land in audiolora's train_runtime.
        f"training.eval_steps={args.max_steps + 1}",
    ]
    if not args.keep_specaugment:
        defaults.append("data.spec_augment.enabled=false")
    forced = [f"training.max_steps={args.max_steps}", f"output_dir={work_dir / 'audiolora-run'}"]
    extra = list(args.ours_set or []) if ours else []
    return defaults + list(args.set or []) + extra + forced


def audiolora_run(recipe: Path, overrides: list[str]) -> dict[str, Any]:
    """Train through `run_training` exactly as `audiolora train` does; add a passive clock."""
    from audiolora.config import load_config
    from audiolora.training import run as run_module

    config = load_config(recipe, overrides)
    clock = StepClock()
    base_meter = run_module.EfficiencyMeter

    class ClockedMeter(base_meter):  # type: ignore[misc, valid-type]
        """audiolora's own meter plus the benchmark's clock (steady-state figure only)."""

        def on_train_begin(self, *a: Any, **k: Any) -> None:
            super().on_train_begin(*a, **k)
            clock.on_train_begin(*a, **k)

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            super().on_step_begin(*a, **k)
            clock.on_step_begin(*a, **k)

        def on_step_end(self, *a: Any, **k: Any) -> None:
            super().on_step_end(*a, **k)
            clock.on_step_end(*a, **k)

        def on_evaluate(self, *a: Any, **k: Any) -> None:
            super().on_evaluate(*a, **k)
            clock.on_evaluate(*a, **k)

        def on_train_end(self, *a: Any, **k: Any) -> None:
            super().on_train_end(*a, **k)
            clock.on_train_end(*a, **k)

    run_module.EfficiencyMeter = ClockedMeter
    try:
        metrics = run_module.run_training(config)
    finally:
        run_module.EfficiencyMeter = base_meter

    t = config.training
    samples_per_step = t.batch_size * t.gradient_accumulation_steps
    eff = metrics["efficiency"]
    n_eval = metrics["data"].get("eval", {}).get("rows")
    if n_eval is not None and config.data.max_eval_samples:
        n_eval = min(n_eval, config.data.max_eval_samples)
    from audiolora.precision import resolve_precision

    ours = clock.summary(samples_per_step, resolve_precision(config.training.precision))
    train_runtime = next(
        (h["train_runtime"] for h in reversed(metrics["history"]) if "train_runtime" in h),
        float("nan"),
    )
    return {
        "mode": "audiolora",
        "model_path": metrics["model_path"],
        "optimizer_steps": eff["optimizer_steps"],
        "samples_per_step": samples_per_step,
        "trainable_params": eff["trainable_params"],
        "samples_per_second": eff["samples_per_second"],
        "step_latency_s": eff["step_latency_s"],
        "samples_per_second_steady": ours["samples_per_second_steady"],
        "steady_step_s": ours["steady_step_s"],
        "step_compute_s": ours["step_compute_s"],
        "in_train_evals": ours["in_train_evals"],
        "in_train_eval_s": ours["in_train_eval_s"],
        "model_gflop_per_step": ours["model_gflop_per_step"],
        "model_gflops_per_s": ours["model_gflops_per_s"],
        "mfu": ours["mfu"],
        "compute_precision": ours["compute_precision"],
        "train_runtime_s": train_runtime,
        "samples_per_second_train_runtime": eff["optimizer_steps"]
        * samples_per_step
        / train_runtime,
        "peak_memory_mb": eff["peak_memory_mb"],
        "peak_rss_mb": peak_rss_mb(),
        "final_wer": (metrics["final"] or {}).get("wer"),
        "base_wer": (metrics["base"] or {}).get("wer"),
        "n_train": metrics["data"].get("train", {}).get("rows"),
        "n_eval": n_eval,
        "device": eff["device"],
        "spec_augment": config.data.spec_augment.enabled,
        "in_process_wall_s": eff["wall_seconds"],
    }


# --------------------------------------------------------------------------------------------
# Mode (b): plain transformers + PEFT, the way the Hugging Face Whisper guide does it
# --------------------------------------------------------------------------------------------


@dataclass
class DataCollatorSpeechSeq2SeqWithPadding:
    """The collator from the Hugging Face "Fine-Tune Whisper" guide (plus a dtype cast)."""

    processor: Any
    decoder_start_token_id: int
    feature_dtype: Any = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        # Split inputs and labels: they need different lengths and padding methods.
        input_features = [{"input_features": f["input_features"]} for f in features]
        batch = self.processor.feature_extractor.pad(input_features, return_tensors="pt")
        if self.feature_dtype is not None:
            batch["input_features"] = batch["input_features"].to(self.feature_dtype)

        label_features = [{"input_ids": f["labels"]} for f in features]
        labels_batch = self.processor.tokenizer.pad(label_features, return_tensors="pt")
        # Padding becomes -100 so the loss ignores it.
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        # The model prepends the decoder start token itself when shifting labels right.
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch


def read_manifest(manifest: str) -> Any:
    """Rows of an audiolora JSONL manifest, audio paths made absolute (a datasets generator)."""
    root = Path(manifest).parent
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            audio = Path(row["audio"])
            yield {
                "audio": str(audio if audio.is_absolute() else root / audio),
                "text": row["text"],
                "offset": float(row.get("offset") or 0.0),
                "duration": None if row.get("duration") is None else float(row["duration"]),
            }


def check_plain_supported(config: Any) -> None:
    """The plain baseline mirrors LoRA on a full-precision Whisper; refuse the rest."""
    problems = []
    if config.adapter.method != "lora":
        problems.append(f"adapter.method={config.adapter.method} (only lora)")
    if config.model.quantization != "none":
        problems.append(f"model.quantization={config.model.quantization} (only none)")
    if problems:
        sys.exit("the plain baseline does not mirror: " + "; ".join(problems))


def plain_target_modules(adapter: Any) -> str | list[str]:
    """PEFT `target_modules`: the name list, or one regex when the recipe restricts where.

    `model.decoder.layers.3.self_attn.q_proj` style names; a regex is how a plain PEFT user keeps
    the encoder free of adapters or picks layers (`layers_to_transform` cannot tell the encoder's
    layer 3 from the decoder's).
    """
    from audiolora.models.families import WHISPER

    if adapter.layers is None and adapter.train_audio_encoder:
        return list(adapter.target_modules or WHISPER.default_targets)
    stacks = r"model\.(encoder|decoder)" if adapter.train_audio_encoder else r"model\.decoder"
    layers = r"\d+" if adapter.layers is None else "|".join(str(i) for i in adapter.layers)
    names = "|".join(adapter.target_modules or WHISPER.default_targets)
    return rf"{stacks}\.layers\.({layers})\.(.*\.)?({names})"


def plain_optimizer(config: Any) -> str:
    """Same optimizer as audiolora ('auto' is adamw_torch off NF4), not the Trainer default."""
    choice = config.training.optimizer
    return "adamw_torch" if choice == "auto" else choice


def plain_transcribe(
    model: Any,
    processor: Any,
    dataset: Any,
    collator: DataCollatorSpeechSeq2SeqWithPadding,
    *,
    batch_size: int,
    num_beams: int,
    max_new_tokens: int,
) -> list[str]:
    """Decode the held-out split with `model.generate` (greedy unless num_beams > 1)."""
    import torch

    model.eval()
    param = next(p for p in model.parameters() if p.is_floating_point())
    texts: list[str] = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            features = collator(items)["input_features"].to(param.device, param.dtype)
            generated = model.generate(
                input_features=features, num_beams=num_beams, max_new_tokens=max_new_tokens
            )
            texts.extend(processor.batch_decode(generated, skip_special_tokens=True))
    return [t.strip() for t in texts]


def plain_peft_run(recipe: Path, overrides: list[str], work_dir: Path) -> dict[str, Any]:
    """WhisperProcessor + datasets `.map` + guide collator + PEFT LoRA + Seq2SeqTrainer.

    Only the settings are read from audiolora's config (so both runs share them); data loading,
    preprocessing, model wrapping and training use transformers, datasets and peft directly.
    Evaluation uses audiolora's metric code so that only the training path differs.
    """
    start = time.perf_counter()
    import torch
    from datasets import Dataset, Features, Value
    from peft import LoraConfig, get_peft_model
    from transformers import (
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        set_seed,
    )

    from audiolora.config import load_config
    from audiolora.data.audio import load_audio
    from audiolora.data.sources import resolve_manifests
    from audiolora.evaluation.metrics import transcription_metrics
    from audiolora.models.loading import resolve_model_path

    config = load_config(recipe, overrides)
    check_plain_supported(config)
    m, a, d, t = config.model, config.adapter, config.data, config.training
    cuda = torch.cuda.is_available()
    manifests = resolve_manifests(d.train, d.eval)
    model_path = resolve_model_path(m.name)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        m.dtype
    ]

    set_seed(t.seed)
    processor = WhisperProcessor.from_pretrained(model_path)
    pad_token_added = processor.tokenizer.pad_token is None
    if pad_token_added:
        # The guide's collator pads labels with tokenizer.pad. Hub Whisper tokenizers use
        # <|endoftext|> as pad token; audiolora's CT2-imported tiny.en defines none. The padded
        # positions become -100 either way, so the choice has no effect on the loss.
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    model = WhisperForConditionalGeneration.from_pretrained(
        model_path, dtype=dtype, use_safetensors=True
    )
    if m.language:
        model.generation_config.language = m.language
        model.generation_config.task = "transcribe"
    if cuda:
        model = model.to("cuda")

    # Disk-backed datasets (like load_dataset's), in the run's temp folder so that nothing is
    # reused from an earlier benchmark run through the datasets cache.
    features = Features(
        {
            "audio": Value("string"),
            "text": Value("string"),
            "offset": Value("float64"),
            "duration": Value("float64"),
        }
    )
    cache = str(work_dir / "hf-datasets")
    raw = {
        split: Dataset.from_generator(
            read_manifest, gen_kwargs={"manifest": str(path)}, features=features, cache_dir=cache
        )
        for split, path in manifests.items()
    }
    if "eval" in raw and d.max_eval_samples:
        raw["eval"] = raw["eval"].select(range(min(d.max_eval_samples, len(raw["eval"]))))

    def prepare_dataset(batch: dict[str, Any]) -> dict[str, Any]:
        audio = load_audio(batch["audio"], d.sampling_rate, batch["offset"], batch["duration"])
        batch["input_features"] = processor.feature_extractor(
            audio, sampling_rate=d.sampling_rate
        ).input_features[0]
        batch["labels"] = processor.tokenizer(batch["text"]).input_ids[: d.max_label_tokens]
        return batch

    prepared = {
        split: ds.map(prepare_dataset, remove_columns=ds.column_names, desc=f"prepare {split}")
        for split, ds in raw.items()
    }
    collator = DataCollatorSpeechSeq2SeqWithPadding(
        processor, model.config.decoder_start_token_id, None if dtype == torch.float32 else dtype
    )
    eval_options = {
        "batch_size": t.eval_batch_size,
        "num_beams": t.num_beams,
        "max_new_tokens": t.max_new_tokens,
    }

    base_wer = None
    if "eval" in prepared:
        hyps = plain_transcribe(model, processor, prepared["eval"], collator, **eval_options)
        base_wer = transcription_metrics(hyps, raw["eval"]["text"])["wer"]

    lora = LoraConfig(
        r=a.r,
        lora_alpha=a.alpha,
        lora_dropout=a.dropout,
        target_modules=plain_target_modules(a),
        rank_pattern=dict(a.rank_pattern),
        alpha_pattern=dict(a.alpha_pattern),
        bias="none",
    )
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    args = Seq2SeqTrainingArguments(
        output_dir=str(work_dir / "plain-run"),
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio of the total steps
        lr_scheduler_type=t.lr_scheduler,
        max_steps=t.max_steps,
        max_grad_norm=t.max_grad_norm,
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        optim=plain_optimizer(config),
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        eval_strategy="no",
        save_strategy="steps" if t.save_steps else "epoch",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        use_cpu=not cuda,
    )
    clock = StepClock()
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=prepared["train"],
        data_collator=collator,
        processing_class=processor.feature_extractor,
        callbacks=[clock],
    )
    train_output = trainer.train()
    model.save_pretrained(str(work_dir / "plain-adapter"))

    final_wer = None
    if "eval" in prepared:
        hyps = plain_transcribe(model, processor, prepared["eval"], collator, **eval_options)
        final_wer = transcription_metrics(hyps, raw["eval"]["text"])["wer"]

    samples_per_step = t.batch_size * t.gradient_accumulation_steps
    timing = clock.summary(
        samples_per_step, t.precision if t.precision in ("bf16", "fp16") else "fp32"
    )
    train_runtime = train_output.metrics["train_runtime"]
    return {
        "mode": "plain",
        "model_path": model_path,
        "optimizer_steps": train_output.global_step,
        "samples_per_step": samples_per_step,
        "trainable_params": trainable,
        "samples_per_second": timing["samples_per_second"],
        "step_latency_s": timing["step_latency_s"],
        "samples_per_second_steady": timing["samples_per_second_steady"],
        "steady_step_s": timing["steady_step_s"],
        "step_compute_s": timing["step_compute_s"],
        "in_train_evals": timing["in_train_evals"],
        "in_train_eval_s": timing["in_train_eval_s"],
        "model_gflop_per_step": timing["model_gflop_per_step"],
        "model_gflops_per_s": timing["model_gflops_per_s"],
        "mfu": timing["mfu"],
        "compute_precision": timing["compute_precision"],
        "train_runtime_s": train_runtime,
        "samples_per_second_train_runtime": train_output.global_step
        * samples_per_step
        / train_runtime,
        "peak_memory_mb": timing["training_peak_mb"],
        "peak_rss_mb": peak_rss_mb(),
        "final_wer": final_wer,
        "base_wer": base_wer,
        "n_train": len(prepared["train"]),
        "n_eval": len(prepared["eval"]) if "eval" in prepared else None,
        "device": "cuda" if cuda else "cpu",
        "spec_augment": False,
        "pad_token_added": pad_token_added,
        "in_process_wall_s": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------------------------
# Parent: run both modes, print and write the table
# --------------------------------------------------------------------------------------------

ROWS: list[tuple[str, str, str]] = [
    # (label, key, format)
    ("optimizer steps", "optimizer_steps", "{:.0f}"),
    ("trainable params", "trainable_params", "{:,.0f}"),
    ("samples/s (step compute, 1st step excluded)", "samples_per_second", "{:.2f}"),
    ("step latency, compute (s)", "step_latency_s", "{:.3f}"),
    ("samples/s (steady state incl. data loading)", "samples_per_second_steady", "{:.2f}"),
    (
        "samples/s (whole trainer.train(), train_runtime)",
        "samples_per_second_train_runtime",
        "{:.2f}",
    ),
    ("model GFLOP per step (counted steps)", "model_gflop_per_step", "{:.0f}"),
    ("model GFLOP/s", "model_gflops_per_s", "{:.0f}"),
    ("compute precision", "compute_precision", "{}"),
    ("MFU (of the measured matmul peak in that precision)", "mfu", "{:.1%}"),
    ("trainer.train() runtime (s)", "train_runtime_s", "{:.1f}"),
    ("  of which evaluation inside train() (s)", "in_train_eval_s", "{:.1f}"),
    ("peak memory (MB)", "peak_memory_mb", "{:.0f}"),
    ("peak RSS, whole process (MB)", "peak_rss_mb", "{:.0f}"),
    ("final held-out WER", "final_wer", "{:.4f}"),
    ("base WER", "base_wer", "{:.4f}"),
    ("wall time, whole process (s)", "process_wall_s", "{:.1f}"),
]


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return fmt.format(value)


def build_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per table row: label, both values (raw and formatted) and the ratio."""
    rows = []
    for label, key, fmt in ROWS:
        ours, plain = results["audiolora"].get(key), results["plain"].get(key)
        ratio = ours / plain if isinstance(ours, int | float) and plain else None
        rows.append(
            {
                "metric": label,
                "key": key,
                "audiolora": ours,
                "plain": plain,
                "ratio": ratio,
                "cells": [label, _fmt(ours, fmt), _fmt(plain, fmt), _fmt(ratio, "{:.2f}")],
            }
        )
    return rows


def notes_for(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> list[str]:
    """The footer: every way the two runs are set up differently, and how each figure is taken."""
    ours = results["audiolora"]
    spec = (
        "SpecAugment: ON in the audiolora run (--keep-specaugment); the plain run has none."
        if ours["spec_augment"]
        else "SpecAugment: disabled in the audiolora run (data.spec_augment.enabled=false) for "
        "parity; the plain run has none. --keep-specaugment keeps it."
    )
    if ours.get("in_train_evals"):
        eval_note = (
            "Evaluation inside trainer.train(): none in the plain run. audiolora runs as shipped "
            f"with training.eval_steps={args.max_steps + 1} (no mid-run eval), but transformers 5 "
            "evaluates once more at the last step under a step strategy, so audiolora's "
            f"train_runtime and wall time include {ours['in_train_evals']} held-out evaluation(s) "
            f"({ours['in_train_eval_s']:.1f} s); run_training then evaluates the same adapter "
            "again for its final metrics."
        )
    else:
        eval_note = (
            "Evaluation inside trainer.train(): none in either run (audiolora with "
            f"training.eval_steps={args.max_steps + 1}); each evaluates once before and once "
            "after training."
        )
    notes = [
        f"Model {ours['model_path']} on {ours['device']}; {ours['optimizer_steps']} optimizer "
        f"steps x {ours['samples_per_step']} samples; {ours['n_train']} training clips, "
        f"{ours['n_eval']} held-out clips; recipe {args.recipe}; --set {args.set or []}; "
        f"audiolora only (--ours-set): {args.ours_set or []}.",
        spec,
        "Same settings in both (one audiolora config, less the --ours-set list above): "
        "LoRA r/alpha/dropout and placement "
        "(target names, encoder on/off, layers), lr, warmup, scheduler, batch size, "
        "max_grad_norm, seed, precision, optimizer (adamw_torch in both; the Trainer's own "
        "default would be adamw_torch_fused), checkpoint strategy, max_new_tokens, num_beams. "
        "No gradient checkpointing in either (the guide enables it).",
        eval_note,
        "Batch order differs: audiolora groups clips by length (data.group_by_length); the plain "
        "run uses the Trainer's random sampler, as the guide does. Short runs' WER therefore "
        "differs by batch order as well as by pipeline.",
        "Step compute: on_step_begin -> on_step_end in both (audiolora's EfficiencyMeter; the "
        "same hooks for plain), first step excluded. transformers 5 fetches a step's batches "
        "before on_step_begin, so this excludes data loading. Steady state: time between "
        "consecutive step ends (includes data loading: audiolora decodes audio and computes "
        "log-mel per batch; plain precomputed features in .map, which counts in wall time only).",
        f"Model FLOPs: counted with torch.utils.flop_counter on every {FLOP_EVERY}th step (the "
        "same steps in both runs), which are left out of the step-compute and steady-state "
        "figures; MFU divides model FLOP/s by this machine's best measured 2048^2 matmul rate "
        "in each run's compute precision.",
        "train_runtime: the Trainer's own figure for trainer.train() (both include the first step, "
        "data loading, logging and checkpoint saves).",
        "Peak memory: from train start to train end, the CUDA allocator's peak on GPU and the "
        "resident set's on CPU (audiolora's definition, one function for both). Peak RSS: "
        "ru_maxrss of each whole subprocess (plain includes its .map pass).",
        "WER: model.generate with training.num_beams (1 = greedy) in both; audiolora's "
        "normaliser and jiwer code for both. Each run computes its own base WER (should match).",
        "Wall time: the whole subprocess (imports, loading, base eval, training, saving, final "
        "eval; audiolora also validates every clip and writes its report). Runs are sequential, "
        "audiolora first.",
    ]
    if results["plain"].get("pad_token_added"):
        notes.append(
            "The model's tokenizer defines no pad token, so the plain run sets pad = eos for the "
            "guide's collator (padded label positions are -100 either way)."
        )
    return notes


def render_text(rows: list[dict[str, Any]], notes: list[str]) -> str:
    header = ["", "audiolora", "plain transformers+PEFT", "ratio (audiolora/plain)"]
    table = [header] + [r["cells"] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    lines = []
    for i, line in enumerate(table):
        lines.append(
            "  ".join(
                cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j])
                for j, cell in enumerate(line)
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n\n" + "\n".join(f"* {n}" for n in notes)


def render_markdown(rows: list[dict[str, Any]], notes: list[str]) -> str:
    lines = [
        "| | audiolora | plain transformers+PEFT | ratio (audiolora/plain) |",
        "|---|---:|---:|---:|",
    ]
    lines += ["| " + " | ".join(r["cells"]) + " |" for r in rows]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def child_command(args: argparse.Namespace, mode: str, out: Path, work_dir: Path) -> list[str]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--mode", mode,
        "--out", str(out),
        "--work-dir", str(work_dir),
        "--recipe", str(args.recipe),
        "--max-steps", str(args.max_steps),
    ]  # fmt: skip
    for assignment in args.set or []:
        cmd += ["--set", assignment]
    for assignment in args.ours_set or []:
        cmd += ["--ours-set", assignment]
    if args.keep_specaugment:
        cmd.append("--keep-specaugment")
    return cmd


def run_parent(args: argparse.Namespace) -> int:
    """Prepare data and model once, run both modes in subprocesses, print and save the table."""
    from audiolora.config import ConfigError, load_config
    from audiolora.data.sources import resolve_manifests
    from audiolora.models.loading import resolve_model_path

    # Validate before creating anything (the output_dir override only needs a path).
    planned = Path(args.work_dir or tempfile.gettempdir()) / "audiolora-bench-check"
    try:
        config = load_config(args.recipe, audiolora_overrides(args, planned, ours=True))
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    check_plain_supported(config)
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="audiolora-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"[bench] preparing data and model once (work dir {work_dir})", flush=True)
    resolve_manifests(config.data.train, config.data.eval)
    resolve_model_path(config.model.name)

    results: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        out = work_dir / f"{mode}.json"
        print(f"[bench] running {mode} in its own process", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(child_command(args, mode, out, work_dir))
        if proc.returncode != 0:
            print(f"[bench] {mode} run failed (exit {proc.returncode}); work dir kept: {work_dir}")
            return proc.returncode
        results[mode] = json.loads(out.read_text())
        results[mode]["process_wall_s"] = time.perf_counter() - start

    rows = build_rows(results)
    notes = notes_for(args, results)
    print("\n" + render_text(rows, notes))

    report_dir = Path(args.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": sys.argv,
        "recipe": str(args.recipe),
        "max_steps": args.max_steps,
        "overrides": audiolora_overrides(args, Path("<work_dir>")),
        "audiolora_only_overrides": list(args.ours_set or []),
        "rows": [{k: v for k, v in r.items() if k != "cells"} for r in rows],
        "notes": notes,
        "runs": results,
    }
    name = args.report_name
    (report_dir / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (report_dir / f"{name}.md").write_text(render_markdown(rows, notes))
    print(f"\n[bench] wrote {report_dir / name}.json and .md")
    if not args.keep_work_dir and not args.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the same model on the same data for the same number of optimizer "
        "steps with audiolora and with a plain transformers+PEFT script; compare."
    )
    parser.add_argument("--recipe", default=None, help="recipe file or builtin name")
    parser.add_argument("--max-steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="audiolora override, also applied to the plain run (repeatable)",
    )
    parser.add_argument(
        "--ours-set",
        action="append",
        metavar="KEY=VALUE",
        help="audiolora-only override, what the plain script has no equivalent of (repeatable)",
    )
    parser.add_argument("--report-name", default=REPORT_NAME, help="file name of the results")
    parser.add_argument(
        "--keep-specaugment",
        action="store_true",
        help="leave SpecAugment on in the audiolora run (off by default for parity)",
    )
    parser.add_argument("--report-dir", default=str(DEFAULT_REPORT_DIR))
    parser.add_argument("--work-dir", default=None, help="temp folder for runs (default: new)")
    parser.add_argument("--keep-work-dir", action="store_true", help="keep run folders")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.max_steps < 2:
        parser.error("--max-steps must be at least 2 (the first step is excluded from timing)")
    from audiolora.cli import resolve_recipe

    try:
        args.recipe = resolve_recipe(args.recipe)
    except Exception as e:  # noqa: BLE001 - typer.BadParameter; report it argparse's way
        parser.error(str(e))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode is None:
        return run_parent(args)
    if not args.out or not args.work_dir:
        sys.exit("--mode needs --out and --work-dir")
    work_dir = Path(args.work_dir)
    overrides = audiolora_overrides(args, work_dir)
    if args.mode == "audiolora":
        result = audiolora_run(args.recipe, audiolora_overrides(args, work_dir, ours=True))
    else:
        result = plain_peft_run(args.recipe, overrides, work_dir)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
