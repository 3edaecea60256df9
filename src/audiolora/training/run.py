"""One training run from a validated RunConfig to a run folder anyone can reopen.

RUN/
  config.yaml      resolved recipe            rejected.jsonl  rows skipped as bad input
  adapter/         plain PEFT adapter + processor files
  checkpoints/     Trainer checkpoints, each marked COMPLETE when fully written
  metrics.json     base / final metrics, efficiency figures, eval history
  report.html      curves and tables
"""

from __future__ import annotations

import errno
import importlib.util
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import (
    EarlyStoppingCallback,
    PreTrainedModel,
    TrainerState,
    TrainingArguments,
    set_seed,
)

from audiolora.atomic import atomic_write_json, replace_dir
from audiolora.config import RunConfig, save_config, schedule, stage_configs
from audiolora.evaluation.efficiency import EfficiencyMeter, folder_bytes, size_figures
from audiolora.evaluation.retention import check_retention, retention_datasets, score_retention
from audiolora.models.adapters import count_parameters, scale_adapter
from audiolora.models.families.base import AudioLanguageFamily
from audiolora.models.loading import load_model
from audiolora.models.trainable import load_tensors, save_tensors, trainable_names
from audiolora.precision import compute_precision, resolve_precision
from audiolora.reporting.adapter_tracking import plot_adapter_tracking
from audiolora.reporting.html import write_report
from audiolora.tasks.base import Metric, Task
from audiolora.tasks.registry import get_task
from audiolora.training.checkpoints import CompleteMarkerCallback, latest_complete_checkpoint
from audiolora.training.distributed import (
    is_main,
    join_process_group,
    once,
    strategy_arguments,
    strategy_problem,
    world_size,
)
from audiolora.training.trainer import (
    AdaLoraAllocator,
    AdapterTracker,
    AudioTrainer,
    SkipFinalStepEvaluation,
)

log = logging.getLogger(__name__)


STAGE_DONE = "STAGE_DONE.json"
"""Written (atomically) after a stage's weights: a resumed run skips such stages."""


def select_trainable(model: Any, names: list[str], patterns: list[str] | None) -> list[str]:
    """Let only the run's trainable parameters matching `patterns` train (None: all of them)."""
    chosen = [n for n in names if patterns is None or any(re.search(p, n) for p in patterns)]
    if not chosen:
        raise RunError(
            f"stage trainable patterns {patterns} match none of the trainable parameters"
        )
    wanted = set(chosen)
    params = dict(model.named_parameters())
    for name in names:
        params[name].requires_grad_(name in wanted)
    return chosen


class RunError(RuntimeError):
    """The run cannot start as configured; the message says what to change."""


class RunStopped(RuntimeError):
    """The run began and had to stop; the message says what is kept and how to go on."""


FULL_DISK_WORDS = ("No space left", "os error 28", "Disk quota exceeded")


def disk_full(error: Exception, folder: Path) -> bool:
    """Whether a save failed for want of space. Python says so by errno; torch's writer
    ("PytorchStreamWriter failed writing file ...: file write failed") and safetensors raise
    their own errors, so their words are read too, and a bare "write failed" counts when
    (almost) no space is left where the run writes."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    if any(words in text for words in FULL_DISK_WORDS):
        return True
    if "write failed" in text:
        try:
            return shutil.disk_usage(folder if folder.exists() else folder.parent).free < 2**26
        except OSError:
            return False
    return False


def disk_full_message(error: Exception, checkpoints: Path) -> str:
    """What a full disk cost: the half-written checkpoint goes (it frees space and a resume
    would skip it anyway), the newest complete one stays."""
    kept = latest_complete_checkpoint(checkpoints, clean_incomplete=True)
    where = getattr(error, "filename", None) or checkpoints
    reason = getattr(error, "strerror", None) or str(error)
    return (
        f"the disk filled up while writing {where} ({reason}). "
        + (f"The newest complete checkpoint, {kept}, is intact" if kept else "No checkpoint yet")
        + "; the half-written one was removed. Free some space and rerun with --resume."
    )


def pick_optimizer(config: RunConfig) -> str:
    choice = config.training.optimizer
    cuda = torch.cuda.is_available()
    if choice == "auto":
        return "paged_adamw_8bit" if cuda and config.model.quantization == "nf4" else "adamw_torch"
    if choice.startswith("paged_") and not cuda:
        raise RunError(
            f"training.optimizer={choice} needs a CUDA GPU (paged optimizers move optimizer state "
            "between GPU and CPU memory); on CPU use training.optimizer=adamw_torch or auto"
        )
    return choice


def total_optimizer_steps(config: RunConfig, n_train: int) -> int:
    t = config.training
    if t.max_steps > 0:
        return t.max_steps
    per_epoch = math.ceil(n_train / (t.batch_size * t.gradient_accumulation_steps * world_size()))
    return max(1, math.ceil(per_epoch * t.epochs))


def training_arguments(
    config: RunConfig, checkpoint_dir: Path, has_eval: bool, best: Metric | None = None
) -> TrainingArguments:
    """The Trainer's arguments from the recipe. `best`: the metric that early stopping watches
    (the task's headline), given when `training.early_stopping_patience` is set."""
    t = config.training
    cuda = torch.cuda.is_available()
    precision = resolve_precision(t.precision)
    eval_strategy = ("steps" if t.eval_steps else "epoch") if has_eval else "no"
    save_strategy = "steps" if t.save_steps else "epoch"
    save_steps = t.save_steps
    keep_best: dict[str, Any] = {}
    if best is not None and has_eval:
        # A checkpoint at every evaluation, so the best one evaluated exists to go back to.
        save_strategy, save_steps = eval_strategy, t.eval_steps
        keep_best = {
            "metric_for_best_model": f"eval_{best.key}",
            "greater_is_better": best.higher_is_better,
            "load_best_model_at_end": True,
            "restore_callback_states_from_checkpoint": True,  # patience counter survives resume
        }
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        max_grad_norm=t.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        optim=pick_optimizer(config),
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        eval_strategy=eval_strategy,
        eval_steps=t.eval_steps,
        save_strategy=save_strategy,
        save_steps=save_steps,
        save_total_limit=t.save_total_limit,
        report_to=t.report_to,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        label_names=["labels"],
        use_cpu=not cuda,
        **strategy_arguments(t.strategy),
        logging_nan_inf_filter=False,
        disable_tqdm=False,
        **keep_best,
    )


def recompute_activations(model: PreTrainedModel) -> None:
    """`training.gradient_checkpointing`: transformers' activation checkpointing on every layer
    that supports it, non-reentrant (a recomputed layer's dropout draws the same mask).

    Call it on the transformers model after the adapters are attached. transformers (and PEFT,
    when it wraps a checkpointed model) mark the input embeddings' outputs as requiring grad,
    which only reentrant checkpointing needs; with the mark, the backward would run, and
    recompute, every frozen layer below the lowest adapter (2.6x the step time of the audio LM
    with LoRA on its top four layers, measured), so it is taken off again.
    """
    if not model.supports_gradient_checkpointing:
        raise RunError(
            f"{type(model).__name__} does not support gradient checkpointing; "
            "set training.gradient_checkpointing=false"
        )
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.disable_input_require_grads()


def kept_checkpoint(state: TrainerState, patience: int) -> dict[str, Any]:
    """With early stopping: which evaluated step the run kept, its score, and whether training
    stopped before its planned end."""
    if not patience or state.best_global_step is None:
        return {}
    return {
        "best_step": state.best_global_step,
        "best_metric": state.best_metric,
        "stopped_early": state.global_step < state.max_steps,
    }


def save_adapter(task: Task, model: Any, processor: Any, run_dir: Path) -> Path:
    """Write RUN/adapter atomically: the task's trained parts plus the processor for `predict`."""
    final = run_dir / "adapter"
    tmp = run_dir / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    task.save(model, tmp)
    processor.save_pretrained(str(tmp))
    replace_dir(tmp, final)
    return final


def headline(task: Task, metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in task.headline if k in metrics}


def detailed(task: Task, metrics: dict[str, Any]) -> dict[str, Any]:
    """Every number of an evaluation (per-type breakdowns too), without the examples."""
    return {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and k not in task.headline
    }


def eval_log_entry(
    task: Task, step: int, metrics: dict[str, Any], train_s: float | None = None
) -> dict[str, Any]:
    """An evaluation as a Trainer log-history row, so the report draws it with the others;
    `train_s`: the training wall time before it (evaluations left out), as the Trainer's rows."""
    timed = {} if train_s is None else {"train_s": round(train_s, 1)}
    return {"step": step, **{f"eval_{k}": v for k, v in headline(task, metrics).items()}, **timed}


BASE_METRICS = "base_metrics.json"
BASE_RETENTION = "base_retention.json"
"""What a run measures on the base model before training (reused on resume, shared by sweeps)."""


def measured_once(path: Path, resume: bool, measure: Callable[[], Any]) -> Any:
    """`measure()`, written to `path`; a resumed run reuses what the first attempt wrote, so
    a base model measured before training is never measured again on a model that trained."""

    def measure_and_write() -> Any:
        if resume and path.exists():
            return json.loads(path.read_text())
        result = measure()
        atomic_write_json(path, result)
        return result

    return once(measure_and_write)  # several processes: rank 0 measures, every rank gets it


def measure_base(
    task: Task,
    run_dir: Path,
    resume: bool,
    model: Any,
    processor: Any,
    dataset: Any,
    eval_options: dict[str, Any],
    precision: str,
) -> dict[str, Any]:
    """Held-out metrics of the reference (the untouched base model, or the task's trivial
    predictor); a resumed run reuses the first measurement."""

    def measure() -> dict[str, Any]:
        with compute_precision(precision):
            return task.base_metrics(model, processor, dataset, desc="base model", **eval_options)

    return measured_once(run_dir / BASE_METRICS, resume, measure)


def initialise_eva(
    task: Task, config: RunConfig, model: Any, processor: Any, family: Any, train: Any
) -> None:
    """`adapter.init: eva`: PEFT's EVA initialisation from the inputs of the adapted modules on
    `adapter.calibration_batches` training batches (inputs flattened to rows, padding included)."""
    from peft import PeftModel, initialize_lora_eva_weights
    from torch.utils.data import DataLoader

    from audiolora.models.heads.base import HeadModel

    peft = model.backbone if isinstance(model, HeadModel) else model
    if not isinstance(peft, PeftModel):
        raise RunError("adapter.init=eva needs LoRA adapters on the model")
    collate = task.collator(processor, family)
    loader = DataLoader(train, batch_size=config.training.batch_size, collate_fn=collate)
    batches = [b for _, b in zip(range(config.adapter.calibration_batches), loader, strict=False)]
    initialize_lora_eva_weights(
        peft,
        batches,
        forward_fn=lambda m, b: task.calibration_forward(m, b, family),
        prepare_model_inputs_fn=None,
        prepare_layer_inputs_fn=None,
        show_progress_bar=False,
    )


RANK_ALLOCATION = "rank_allocation.json"
ADAPTER_TRACKING = "adapter_tracking.json"
"""Entropy, effective rank and norm of every LoRA update at each logging step."""


def allocate_by_entropy(
    task: Task,
    config: RunConfig,
    model: Any,
    processor: Any,
    family: Any,
    train: Any,
    run_dir: Path,
    resume: bool,
) -> tuple[RunConfig, dict[str, Any]]:
    """`adapter.rank_allocation: entropy`: measure the adapted modules' input entropy on a few
    training batches (once; a resumed run reuses RUN/rank_allocation.json), allocate ranks, and
    return the config with the resulting PEFT rank/alpha patterns, plus the report."""
    from torch.utils.data import DataLoader

    from audiolora.models.adapters import build_peft_config, resolve_layers
    from audiolora.models.rank_allocation import (
        RankAllocationError,
        allocate_ranks,
        measure_entropies,
        rank_patterns,
        target_modules,
    )
    from audiolora.reporting.rank_heatmap import plot_rank_allocation

    cfg = resolve_layers(model, config.adapter, family)

    def measure() -> dict[str, Any]:
        names = target_modules(model, build_peft_config(cfg, family, 1))
        collate = task.collator(processor, family)
        loader = DataLoader(train, batch_size=config.training.batch_size, collate_fn=collate)
        batches = (b for i, b in zip(range(cfg.calibration_batches), loader, strict=False))
        forward = lambda m, b: task.calibration_forward(m, b, family)  # noqa: E731
        stats = measure_entropies(model, names, batches, forward)
        ranks = allocate_ranks(stats, cfg.r, cfg.rank_min, cfg.rank_max)
        return {
            "estimator": "spectral entropy of the centred inputs (effective rank = exp(H))",
            "r": cfg.r,
            "budget": sum(cfg.r * s.cost for s in stats),
            "allocated": sum(ranks[s.name] * s.cost for s in stats),
            "modules": [
                {"name": s.name, "d_in": s.d_in, "d_out": s.d_out, "entropy": s.entropy,
                 "effective_rank": s.effective_rank, "rank": ranks[s.name]}
                for s in stats
            ],
        }  # fmt: skip

    try:
        report = measured_once(run_dir / RANK_ALLOCATION, resume, measure)
    except RankAllocationError as e:
        raise RunError(str(e)) from e
    if is_main():
        plot_rank_allocation(report, run_dir / "rank_allocation.png")
    ranks = {m["name"]: m["rank"] for m in report["modules"]}
    rank_pattern, alpha_pattern = rank_patterns(ranks, cfg.r, cfg.alpha)
    adapter = cfg.model_copy(update={"rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern})
    return config.model_copy(update={"adapter": adapter}), report


def check_stage_data(
    task: Task, plan: list[tuple[str, RunConfig]], run_dir: Path
) -> list[dict[str, Any]]:
    """Every stage's data checked before any model loads; rejected rows per stage."""
    reports = []
    for name, stage_config in plan:
        where = run_dir if len(plan) == 1 else run_dir / "stages" / name
        where.mkdir(parents=True, exist_ok=True)
        try:
            reports.append(task.check_data(stage_config, where))
        except ValueError as e:
            raise RunError(f"stage {name}: {e}" if len(plan) > 1 else str(e)) from e
    return reports


def run_training(config: RunConfig, resume: bool = False) -> dict[str, Any]:
    """Validate data, measure the base model, train adapters (stage by stage when the recipe
    has a schedule), measure again, write the report."""
    wall_start = time.perf_counter()
    problem = strategy_problem(
        config.training.strategy,
        config.model.quantization,
        torch.cuda.is_available(),
        importlib.util.find_spec("deepspeed") is not None,
    )
    if problem:
        raise RunError(problem)
    join_process_group()  # several processes (torchrun): rank 0 alone checks and writes
    run_dir = Path(config.output_dir)
    checkpoint_dir = run_dir / "checkpoints"

    def start_run_folder() -> None:
        if not resume and checkpoint_dir.exists() and any(checkpoint_dir.iterdir()):
            raise RunError(
                f"{run_dir} already holds checkpoints: pass --resume to continue that run, or "
                "choose another output_dir (--set output_dir=...)"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")

    once(start_run_folder)
    task = get_task(config.task)
    plan = stage_configs(config)
    stages = schedule(config)
    stage_reports = once(lambda: check_stage_data(task, plan, run_dir))
    for (name, stage_config), reports in zip(plan, stage_reports, strict=True):
        if stage_config.training.early_stopping_patience and "eval" not in reports:
            where = f"stage {name}: " if len(plan) > 1 else ""
            raise RunError(
                f"{where}training.early_stopping_patience needs held-out data to watch: set "
                "data.eval, or set training.early_stopping_patience=0"
            )
    try:
        retention_reports = once(lambda: check_retention(task, config, run_dir))
    except ValueError as e:
        raise RunError(str(e)) from e
    set_seed(config.training.seed)
    model, processor, family, model_path = load_model(config.model)
    try:
        task.check_family(family, config.model.name)
        stage_datasets = [
            task.build_datasets(stage_config, reports, processor, family)
            for (_, stage_config), reports in zip(plan, stage_reports, strict=True)
        ]
        retention_sets = retention_datasets(task, config, retention_reports, processor, family)
    except ValueError as e:
        raise RunError(str(e)) from e
    reports, datasets = stage_reports[0], stage_datasets[0]
    t = config.training
    eval_options = {
        "batch_size": t.eval_batch_size,
        "num_beams": t.num_beams,
        "max_new_tokens": t.max_new_tokens,
        "family": family,
    }
    has_eval = "eval" in datasets
    base = (
        measure_base(
            task, run_dir, resume, model, processor, datasets["eval"], eval_options, t.precision
        )
        if has_eval
        else None
    )
    retention_base = measured_once(
        run_dir / BASE_RETENTION,
        resume,
        lambda: score_retention(
            task, model, processor, retention_sets, eval_options, t.precision, adapted=False
        ),
    )

    total_steps = sum(
        total_optimizer_steps(stage_config, len(ds["train"]))
        for (_, stage_config), ds in zip(plan, stage_datasets, strict=True)
    )
    rank_report = None
    if config.adapter.rank_allocation == "entropy":
        config, rank_report = allocate_by_entropy(
            task, config, model, processor, family, datasets["train"], run_dir, resume
        )
    if config.adapter.method == "full" and not task.full_finetuning:
        raise RunError(f"adapter.method=full is not supported by task {task.name} (use lora)")
    # Adapter init draws from the seed here, whatever ran before (a resumed run skips the base
    # measurement it already wrote), so a run restarted from scratch starts the same adapter.
    set_seed(config.training.seed)
    peft_model = task.prepare_model(model, config, family, total_steps, datasets["train"])
    if t.gradient_checkpointing:  # after the adapters: PEFT would mark the inputs again
        recompute_activations(model)
    tower_cache = None
    augmenting = config.data.spec_augment.enabled  # augmented features never hit a cache
    if t.audio_tower_cache_mb and isinstance(family, AudioLanguageFamily) and not augmenting:
        tower_cache = family.cache_tower(peft_model, t.audio_tower_cache_mb)
    if config.adapter.init == "eva":
        initialise_eva(task, config, peft_model, processor, family, datasets["train"])
    trainable, total = count_parameters(peft_model)
    run_trainable = trainable_names(peft_model)

    tracker = AdapterTracker(peft_model)
    meter = EfficiencyMeter(
        samples_per_step=t.batch_size * t.gradient_accumulation_steps * world_size()
    )
    history: list[dict[str, Any]] = []
    stages_summary: list[dict[str, Any]] = []
    resumed_from = None
    step_offset, seconds_offset = 0, 0.0  # steps and training seconds of the stages before
    for index, ((name, stage_config), stage_data) in enumerate(
        zip(plan, stage_datasets, strict=True)
    ):
        staged = len(plan) > 1
        stage_ckpts = checkpoint_dir / f"stage-{index}-{name}" if staged else checkpoint_dir
        stage_out = run_dir / "stages" / f"{index}-{name}"
        if resume and staged and (stage_out / STAGE_DONE).exists():
            load_tensors(peft_model, stage_out, run_trainable)
            done = json.loads((stage_out / STAGE_DONE).read_text())
            history += done["history"]
            stages_summary.append(done["summary"])
            step_offset += done["summary"]["steps"]
            seconds_offset += done["summary"].get("train_s", 0.0)
            continue
        stage = stages[index] if stages else None
        select_trainable(peft_model, run_trainable, stage.trainable if stage else None)
        resume_from = (
            once(lambda folder=stage_ckpts: latest_complete_checkpoint(folder)) if resume else None
        )
        if resume and resume_from is None and not staged:
            log.warning(
                "--resume: no complete checkpoint in %s, starting from scratch", stage_ckpts
            )
        resumed_from = resumed_from or resume_from
        st = stage_config.training
        tracker.offset = step_offset
        callbacks: list[Any] = [CompleteMarkerCallback(), meter, SkipFinalStepEvaluation(), tracker]
        if st.early_stopping_patience:
            callbacks.append(
                EarlyStoppingCallback(st.early_stopping_patience, st.early_stopping_threshold)
            )
        if config.adapter.method == "adalora":
            callbacks.append(AdaLoraAllocator(peft_model))
        trainer = AudioTrainer(
            model=peft_model,
            args=training_arguments(
                stage_config,
                stage_ckpts,
                "eval" in stage_data,
                task.metric(task.headline[0]) if st.early_stopping_patience else None,
            ),
            train_dataset=stage_data["train"],
            eval_dataset=stage_data.get("eval"),
            data_collator=task.collator(processor, family),
            processor=processor,
            task=task,
            callbacks=callbacks,
            group_by_length=stage_config.data.group_by_length,
            eval_options={**eval_options, "batch_size": st.eval_batch_size, "progress": False},
            head_learning_rate=task.head_learning_rate(stage_config),
            entropy_weight=config.adapter.entropy_weight,
            # AdaLoRA adds its orthogonality term in its own forward, which this path skips.
            answer_only_logits=isinstance(family, AudioLanguageFamily)
            and not augmenting
            and config.adapter.method != "adalora",
            loss_is_batch_mean=family.loss_is_batch_mean,
        )
        try:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except (OSError, RuntimeError, SafetensorError) as e:
            if not disk_full(e, stage_ckpts):
                raise
            raise RunStopped(disk_full_message(e, stage_ckpts)) from e
        finally:  # an error inside a counted step must not leave FLOP counting on
            meter.stop_counting()
        stage_history = [
            {
                **h,
                "step": h.get("step", 0) + step_offset,
                **({"stage": name} if staged else {}),
                **({"train_s": h["train_s"] + seconds_offset} if "train_s" in h else {}),
            }
            for h in trainer.state.log_history
        ]
        stage_seconds = trainer.training_seconds() or 0.0
        seconds_offset += stage_seconds
        steps = trainer.state.global_step
        summary: dict[str, Any] = {
            "name": name,
            "steps": steps,
            "train_s": round(stage_seconds, 1),
            **kept_checkpoint(trainer.state, st.early_stopping_patience),
            "train_examples": len(stage_data["train"]),
            "learning_rate": st.learning_rate,
            "trainable_params": sum(p.numel() for p in peft_model.parameters() if p.requires_grad),
        }
        if staged and has_eval and index < len(plan) - 1:

            def evaluate_stage(name: str = name) -> dict[str, Any]:
                with compute_precision(t.precision):
                    return task.evaluate(
                        peft_model,
                        processor,
                        datasets["eval"],
                        desc=f"after stage {name}",
                        **eval_options,
                    )

            result = once(evaluate_stage)
            summary["eval"] = headline(task, result)
            stage_history.append(eval_log_entry(task, step_offset + steps, result, seconds_offset))
        history += stage_history
        stages_summary.append(summary)
        step_offset += steps
        if staged:

            def mark_stage_done(
                out: Path = stage_out, done: dict = summary, logged: list = stage_history
            ) -> None:
                save_tensors(peft_model, run_trainable, out)
                atomic_write_json(out / STAGE_DONE, {"summary": done, "history": logged})

            once(mark_stage_done)
    select_trainable(peft_model, run_trainable, None)
    scale_adapter(peft_model, config.adapter.final_scale)

    def finish() -> dict[str, Any]:
        """The trained model measured and written: adapter, final evaluation, retention,
        metrics.json and the report."""
        adapter_dir = save_adapter(task, peft_model, processor, run_dir)
        final, logged = None, history
        if has_eval:
            with compute_precision(t.precision):
                final = task.evaluate(
                    peft_model, processor, datasets["eval"], desc="adapted model", **eval_options
                )
            logged = [
                eval_log_entry(task, 0, base),
                *history,
                eval_log_entry(task, step_offset, final, seconds_offset),
            ]
        retention_final = score_retention(
            task, peft_model, processor, retention_sets, eval_options, t.precision, adapted=True
        )
        efficiency = meter.summary(resolve_precision(t.precision))
        efficiency.update(
            size_figures(
                trainable, total, folder_bytes(adapter_dir), folder_bytes(Path(model_path))
            )
        )
        efficiency["wall_seconds"] = time.perf_counter() - wall_start
        if tower_cache is not None:
            efficiency.update(tower_cache.summary())
        efficiency["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        efficiency["quantization"] = config.model.quantization
        efficiency["precision"] = resolve_precision(t.precision)
        metrics: dict[str, Any] = {
            "model": config.model.name,
            "model_path": model_path,
            "family": family.name,
            "task": config.task,
            "data": {
                split: {
                    "rows": len(r.rows),
                    "rejected": len(r.problems),
                    "examples": len(datasets[split]),
                }
                for split, r in reports.items()
            },
            "headline": list(task.headline),
            "lower_is_better": sorted(task.lower_is_better),
            "base": headline(task, base) if base else None,
            "base_reference": (base or {}).get("reference", "base model"),
            "final": headline(task, final) if final else None,
            "base_details": detailed(task, base) if base else None,
            "final_details": detailed(task, final) if final else None,
            "retention": {
                name: {"base": retention_base[name], "final": retention_final[name]}
                for name in retention_sets
            }
            or None,
            "efficiency": efficiency,
            "adapter_scale": config.adapter.final_scale,
            "rank_allocation": rank_report,
            "resumed_from": str(resumed_from) if resumed_from else None,
            "stages": stages_summary if len(plan) > 1 else None,
            "early_stopping": {
                k: stages_summary[-1][k]
                for k in ("best_step", "best_metric", "stopped_early")
                if k in stages_summary[-1]
            }
            or None,
            "history": logged,
            "examples": (final or {}).get("examples", [])[:10],
            "base_examples": (base or {}).get("examples", [])[:10],
        }
        if tracker.history:
            atomic_write_json(run_dir / ADAPTER_TRACKING, tracker.history)
            plot_adapter_tracking(tracker.history, run_dir / "adapter_tracking.png")
        atomic_write_json(run_dir / "metrics.json", metrics)
        write_report(run_dir, metrics, config, task)
        return metrics

    return once(finish)  # several processes: rank 0 alone measures and writes
