"""The transformers Trainer, extended only where audio fine-tuning needs it.

- length-grouped batches from clip durations known from the manifest (no decoding to measure),
  reshuffled per epoch from the seed so a resumed run sees the same order;
- a non-finite loss stops the run at once (the last complete checkpoint stays on disk);
- evaluation decodes text and reports WER/CER/BLEU/perplexity instead of loss only;
- AdaLoRA's rank budget is updated after every optimizer step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from audiolora.tasks.stt import SpeechTextDataset, evaluate_stt


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
        group_by_length: bool = True,
        eval_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # The processor is kept here rather than passed as `processing_class`: the Trainer would
        # otherwise rewrite the model's special-token ids to the tokenizer's.
        super().__init__(*args, **kwargs)
        self.processor = processor
        self.group_by_length = group_by_length
        self.eval_options = eval_options or {}

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.group_by_length and isinstance(dataset, SpeechTextDataset):
            group = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return EpochSeededLengthSampler(group, dataset.lengths, self.args.seed)
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

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        result = evaluate_stt(
            self.model,
            self.processor,
            dataset,
            desc=f"eval @ step {self.state.global_step}",
            **self.eval_options,
        )
        metrics = {
            f"{metric_key_prefix}_{k}": float(v)
            for k, v in result.items()
            if k in ("wer", "cer", "bleu", "perplexity", "latency_s_per_clip")
        }
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(
            self.args, self.state, self.control, metrics
        )
        return metrics


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
