"""The transformers Trainer, extended only where audio fine-tuning needs it.

- length-grouped batches from clip durations known from the manifest (no decoding to measure),
  reshuffled per epoch from the seed so a resumed run sees the same order;
- a non-finite loss stops the run at once (the last complete checkpoint stays on disk);
- evaluation is the task's own (WER/CER/BLEU/perplexity, MAE in seconds, ...), not loss only;
- a model with a task head (`HeadModel`) checkpoints only its trainable tensors, not a copy of
  the frozen base, and restores them on resume (the Trainer saves PEFT/transformers models
  itself); its head may get its own learning rate;
- AdaLoRA's rank budget is updated after every optimizer step.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from audiolora.models.answer_loss import labelled_positions_loss
from audiolora.models.heads.base import HeadModel
from audiolora.models.lora_entropy import entropy_penalty, update_stats
from audiolora.tasks.base import Task
from audiolora.training.distributed import once


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the message names the step and the checkpoint kept."""


class EpochSeededLengthSampler(LengthGroupedSampler):
    """LengthGroupedSampler whose shuffle depends only on (seed, epoch)."""

    def __init__(self, batch_size: int, lengths: list[float], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


class AudioTrainer(Trainer):
    def __init__(
        self,
        *args: Any,
        processor: Any = None,
        task: Task,
        group_by_length: bool = True,
        eval_options: dict[str, Any] | None = None,
        head_learning_rate: float | None = None,
        entropy_weight: float = 0.0,
        answer_only_logits: bool = False,
        loss_is_batch_mean: bool = True,
        **kwargs: Any,
    ) -> None:
        # The processor is kept here rather than passed as `processing_class`: the Trainer would
        # otherwise rewrite the model's special-token ids to the tokenizer's.
        super().__init__(*args, **kwargs)
        self.processor = processor
        self.task = task
        self.group_by_length = group_by_length
        self.head_learning_rate = head_learning_rate
        self.eval_options = eval_options or {}
        self.entropy_weight = entropy_weight
        self.answer_only_logits = answer_only_logits
        self.loss_is_batch_mean = loss_is_batch_mean
        self._entropies: list[float] = []
        self._clock: tuple[float, float] | None = None  # (train() began, seconds spent evaluating)
        # Causal LMs predict label i+1 at position i (their first label is never a target); the
        # Trainer counts the step's tokens by this attribute, and `share_of_global_tokens` too.
        config = getattr(self.model, "config", None)  # PEFT forwards the base model's
        self._loss_shifts_labels = not getattr(config, "is_encoder_decoder", False)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """The task's loss, plus `adapter.entropy_weight` x the LoRA updates' spectral entropy.
        Audio-LM training steps project only the labelled positions onto the vocabulary
        (`answer_only_logits`; the same loss, see `models.answer_loss`)."""
        result, batch_mean = None, True  # the answer-only loss is a mean over its batch
        if self.answer_only_logits and model.training and not return_outputs:
            # Called outside the model's (accelerate-wrapped) forward: its autocast is re-entered.
            with self.accelerator.autocast():
                result = labelled_positions_loss(model, inputs)  # None where it does not apply
            if result is not None and self.counts_global_tokens(num_items_in_batch):
                result = result * self.accelerator.num_processes  # as the Trainer's path does
        if result is None:
            result = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
            batch_mean = self.loss_is_batch_mean
        if batch_mean and self.counts_global_tokens(num_items_in_batch):
            result = self.share_of_global_tokens(result, inputs, num_items_in_batch)
        if not self.entropy_weight:
            return result
        penalty = entropy_penalty(model)
        if penalty is None:
            return result
        loss, outputs = result if return_outputs else (result, None)
        if self.counts_global_tokens(num_items_in_batch):  # the Trainer then adds micro-batches
            penalty = penalty / self.current_gradient_accumulation_steps
        loss = loss + self.entropy_weight * penalty.to(loss.device, loss.dtype)
        self._entropies.append(float(penalty.detach()))
        return (loss, outputs) if return_outputs else loss

    def counts_global_tokens(self, num_items_in_batch: Any) -> bool:
        """The Trainer counted the labelled tokens of the whole optimizer step (all micro-batches,
        all processes) and scales the loss for a sum over that count."""
        return num_items_in_batch is not None and self.model_accepts_loss_kwargs

    def share_of_global_tokens(
        self, result: Any, inputs: dict[str, Any], num_items_in_batch: Any
    ) -> Any:
        """Turn this micro-batch's token-mean loss into its share of the step's token mean
        (sum over its tokens / all the step's tokens), which the Trainer then expects.

        Why: our models average over their own batch's tokens and ignore the global count the
        Trainer hands them, which would make a step's gradient the sum of micro-batch means:
        N times too large under gradient accumulation or N processes, and unequal token counts
        weighted wrongly. With this, N processes of batch b train what one process of batch N*b
        trains."""
        labels = inputs["labels"]
        if self._loss_shifts_labels:
            labels = labels[..., 1:]
        share = labels.ne(-100).sum() / num_items_in_batch
        if isinstance(result, tuple):
            return (result[0] * share.to(result[0].device), *result[1:])
        return result * share.to(result.device)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self._entropies and "loss" in logs:
            logs["lora_entropy"] = sum(self._entropies) / len(self._entropies)
            self._entropies.clear()
        super().log(logs, *args, **kwargs)

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = getattr(dataset, "lengths", None)
        if self.group_by_length and lengths is not None and len(set(lengths)) > 1:
            # The global batch: every process then draws its share of the same order.
            group = (
                self.args.train_batch_size
                * self.args.gradient_accumulation_steps
                * self.args.world_size
            )
            return EpochSeededLengthSampler(group, lengths, self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                f"loss became {loss.item()} at step {self.state.global_step + 1}; "
                "training stopped. "
                "The last complete checkpoint is kept: lower training.learning_rate or use "
                "training.precision=fp32, then rerun with --resume."
            )
        return loss

    def train(self, *args: Any, **kwargs: Any) -> Any:
        self._clock = (time.perf_counter(), 0.0)
        return super().train(*args, **kwargs)

    def training_seconds(self) -> float | None:
        """Wall time of this `train()` call so far without its evaluations (a resumed run
        counts from its restart): what a metric-against-training-time curve needs."""
        if self._clock is None:
            return None
        began, evaluating = self._clock
        return time.perf_counter() - began - evaluating

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        trained_s, eval_began = self.training_seconds(), time.perf_counter()

        def evaluate_here() -> dict[str, Any]:
            # In the training steps' autocast, as the base and final evaluations run in theirs:
            # one adapter, one number at every point of the history.
            with self.accelerator.autocast():
                return self.task.evaluate(
                    self.model,
                    self.processor,
                    dataset,
                    desc=f"eval @ step {self.state.global_step}",
                    **self.eval_options,
                )

        # Several processes: rank 0 evaluates the unwrapped model once, every rank logs it.
        result = once(evaluate_here)
        metrics = {
            f"{metric_key_prefix}_{k}": float(v)
            for k, v in result.items()
            if k in self.task.headline
        }
        if self._clock is not None and trained_s is not None:
            began, evaluating = self._clock
            self._clock = (began, evaluating + time.perf_counter() - eval_began)
            self.log({**metrics, "train_s": round(trained_s, 1)})
        else:
            self.log(metrics)
        self.control = self.callback_handler.on_evaluate(
            self.args, self.state, self.control, metrics
        )
        return metrics

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer; a task head may get its own learning rate (a fresh head
        usually wants a larger one than the adapters)."""
        optimizer = super().create_optimizer(model)
        if self.head_learning_rate is None or not isinstance(self.model, HeadModel):
            return optimizer
        head = {id(p) for p in self.model.head_parameters()}
        groups = []
        for group in optimizer.param_groups:
            rest = [p for p in group["params"] if id(p) not in head]
            own = [p for p in group["params"] if id(p) in head]
            if rest:
                groups.append({**group, "params": rest})
            if own:
                groups.append({**group, "params": own, "lr": self.head_learning_rate})
        optimizer.param_groups.clear()  # no state exists yet: regrouping loses nothing
        for group in groups:
            optimizer.add_param_group(group)
        return optimizer

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if isinstance(self.model, HeadModel):
            if not self.args.should_save:  # several processes: rank 0 writes the checkpoint
                return
            out = output_dir or self.args.output_dir
            self.model.save_trainable(out)
            torch.save(self.args, f"{out}/training_args.bin")
            return
        super()._save(output_dir, state_dict)

    def _load_from_checkpoint(
        self, resume_from_checkpoint: str, model: nn.Module | None = None
    ) -> None:
        target = model if model is not None else self.model
        if isinstance(target, HeadModel):
            target.load_trainable(resume_from_checkpoint)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        """Early stopping keeps the best evaluated checkpoint; a head model reads it the way
        resume does (the Trainer's own loader knows only whole models and PEFT adapters)."""
        if isinstance(self.model, HeadModel):
            self.model.load_trainable(self.state.best_model_checkpoint)
            return
        super()._load_best_model()


class AdaLoraAllocator(TrainerCallback):
    """Calls AdaLoRA's `update_and_allocate` after each optimizer step, while gradients exist."""

    def __init__(self, peft_model: nn.Module) -> None:
        self.peft_model = peft_model

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.peft_model.base_model.update_and_allocate(state.global_step)


class SkipFinalStepEvaluation(TrainerCallback):
    """The run evaluates the finished adapter itself (with examples), so the Trainer's own
    evaluation at the very last step would only repeat it."""

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step >= state.max_steps:
            control.should_evaluate = False


class AdapterTracker(TrainerCallback):
    """Entropy, effective rank and norm of every LoRA update at each logging step (a few
    numbers per module), for RUN/adapter_tracking.json and its plot. `offset` shifts the steps
    of later stages after the earlier ones."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.offset = 0
        self.history: list[dict[str, Any]] = []

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        stats = update_stats(self.model)
        step = self.offset + state.global_step
        if not stats or (self.history and self.history[-1]["step"] == step):
            return  # one entry per step (eval and summary logs repeat the step)
        self.history.append({"step": step, "modules": stats})
