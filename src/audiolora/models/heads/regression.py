"""An audio LM with a regression head: one number in [0, 1] per prompt (seed 000's offset).

Why a wrapper rather than a transformers head class: the number is read from the hidden state of
the prompt's last real token, which sees the whole prompt through causal attention, and no
vocabulary projection is needed (over ~1,000 tokens and a 50k vocabulary that projection would
cost more than the head's whole job). So the forward calls the LALM's inner model (audio tower +
projector + language model) and skips `lm_head`.

"Last real token" is found from the attention mask, so left- and right-padded batches give the
same numbers. The head has one output per boundary type (the prompt names the type, and the
batch's `boundary_index` picks that output), all starting at zero weight, so a fresh head answers
sigmoid(bias) for every window. `init_prior` sets each bias to its type's median training offset:
an output bias that must travel from 0 to logit(0.03) at Adam's few-thousandths a step would
need ~1,000 steps to learn what one pass over the training windows tells, and without it a
short run never even reaches the input-free prior. Training then learns what the input adds.

The trainable state is the PEFT adapter (absent for the head-only baseline) plus the head,
saved and restored through the `HeadModel` interface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from audiolora.models.families import AudioLanguageFamily
from audiolora.models.heads.base import HeadModel

HEAD_WEIGHTS = "regression_head.safetensors"
HEAD_CONFIG = "regression_head.json"

LOSSES = {
    "l1": nn.functional.l1_loss,
    "smooth_l1": nn.functional.smooth_l1_loss,
    "mse": nn.functional.mse_loss,
}


def last_token_states(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, hidden) states of each row's last position where the mask is 1.

    Works for left padding (last column), right padding (before the pads) and no padding.
    """
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    last = (attention_mask.long() * positions).argmax(dim=1)
    if bool((attention_mask.sum(dim=1) == 0).any()):
        raise ValueError("a row of the batch has no real token (attention mask all zero)")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


PRIOR_CLIP = 0.02
"""Offsets are clipped to [0.02, 0.98] before the logit, so a prior of exactly 0 or 1 (a boundary
on a recording's first sample) still leaves the sigmoid a gradient."""


class OffsetRegressor(HeadModel):
    """`backbone` (an LALM, bare or wrapped by PEFT) + a linear head + sigmoid, one output per
    name in `boundaries` (a single unnamed output by default)."""

    weights_file = HEAD_WEIGHTS
    config_file = HEAD_CONFIG

    def __init__(
        self,
        backbone: nn.Module,
        family: AudioLanguageFamily,
        hidden_size: int,
        loss: str = "l1",
        boundaries: Sequence[str] = ("offset",),
    ) -> None:
        super().__init__(backbone, family)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {sorted(LOSSES)}")
        if not boundaries or len(set(boundaries)) != len(boundaries):
            raise ValueError(f"the head needs distinct output names, got {list(boundaries)}")
        self.loss_name = loss
        self.boundaries = list(boundaries)
        self.head = nn.Linear(hidden_size, len(self.boundaries))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def head_config(self) -> dict[str, Any]:
        return {
            "hidden_size": self.head.in_features,
            "loss": self.loss_name,
            "boundaries": self.boundaries,
        }

    def init_prior(self, prior: dict[str, float]) -> None:
        """Start each output at `prior[name]` (an offset in [0, 1]); names it lacks stay at 0.5."""
        with torch.no_grad():
            for i, name in enumerate(self.boundaries):
                if name in prior:
                    p = min(max(float(prior[name]), PRIOR_CLIP), 1 - PRIOR_CLIP)
                    self.head.bias[i] = math.log(p / (1 - p))

    def offsets_from_states(
        self, pooled: torch.Tensor, boundary_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(batch,) offsets in [0, 1] from each prompt's last-token state (batch, hidden)."""
        logits = self.head(pooled.to(self.head.weight.dtype))
        if len(self.boundaries) == 1:  # one output serves every row
            boundary_index = None
        if boundary_index is None:
            if len(self.boundaries) > 1:
                raise ValueError(
                    f"a head with outputs {self.boundaries} needs boundary_index for each row"
                )
            boundary_index = torch.zeros(logits.shape[0], dtype=torch.long)
        picked = logits.gather(1, boundary_index.to(logits.device).long().view(-1, 1))
        return torch.sigmoid(picked).squeeze(-1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        input_features: torch.Tensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        boundary_index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """`boundary_index` (batch,) picks each row's output (required with several outputs).
        A batch without `input_features` (text-only prompts) runs the LM alone."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if input_features is not None:
            inputs["input_features"] = input_features
            inputs["feature_attention_mask"] = feature_attention_mask
        # A frozen backbone needs no graph: the head-only baseline then costs forwards only.
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.backbone_trains()):
            hidden = self.family.hidden_states(self.backbone, inputs).last_hidden_state
        predictions = self.offsets_from_states(
            last_token_states(hidden, attention_mask), boundary_index
        )
        out = {"predictions": predictions}
        if targets is not None:
            loss_fn = LOSSES[self.loss_name]
            out["loss"] = loss_fn(predictions.float(), targets.to(predictions.device).float())
        return out


def hidden_size_of(model: nn.Module) -> int:
    """The language model's hidden width, from the (possibly composite) config."""
    config: Any = model.config
    text = getattr(config, "text_config", None) or config
    return int(text.hidden_size)
