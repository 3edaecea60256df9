"""The auxiliary dual-level classification head of seed 004 (ADCH), used during training only.

Why: supervised fine-tuning alone teaches a response per speaker only through the answer
tokens; an explicit classifier on an intermediate layer makes the adapted layers keep the
speaker's attributes separable, which the seed finds helps the hard categories (emotion). The
head reads layer k's hidden states mean-pooled over the audio positions (the audio placeholder
tokens, where the LM sees the speech) and predicts the category (age / gender / emotion) and,
with that category's own head, the attribute value. Each sample is routed to the head of its
*true* category. The loss is `L = L_SFT + λ (CE_category + CE_attribute)`.

At inference the head is dropped: `save_pretrained` writes the PEFT adapter as usual (what
`PeftModel.from_pretrained` loads) and the head beside it, for analysis only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from audiolora.models.families import AudioLanguageFamily
from audiolora.models.heads.base import HeadModel

HEAD_WEIGHTS = "aux_head.safetensors"
HEAD_CONFIG = "aux_head.json"


class DualLevelHead(nn.Module):
    """A category classifier and one attribute classifier per category."""

    def __init__(self, hidden_size: int, categories: dict[str, list[str]]) -> None:
        super().__init__()
        if any(len(values) < 2 for values in categories.values()):
            raise ValueError(f"every category needs two values or more: {categories}")
        self.names = list(categories)
        self.category = nn.Linear(hidden_size, len(categories))
        self.attributes = nn.ModuleList(nn.Linear(hidden_size, len(v)) for v in categories.values())

    def losses(
        self, pooled: torch.Tensor, category: torch.Tensor, attribute: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(CE over categories, CE over each sample's own category's values), batch means."""
        ce = nn.functional.cross_entropy
        category_loss = ce(self.category(pooled), category)
        per_sample = [
            ce(self.attributes[int(c)](row).unsqueeze(0), a.view(1))
            for row, c, a in zip(pooled, category, attribute, strict=True)
        ]
        return category_loss, torch.stack(per_sample).mean()


def audio_pooled(hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 audio_token_id: int) -> torch.Tensor:  # fmt: skip
    """Mean of each row's hidden states over its audio positions (all real positions for a row
    without audio)."""
    mask = input_ids == audio_token_id
    no_audio = ~mask.any(dim=1)
    mask = torch.where(no_audio.unsqueeze(1), attention_mask.bool(), mask)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


class AuxHeadLM(HeadModel):
    """An audio LM (bare or PEFT-wrapped) trained with SFT plus the dual-level auxiliary loss."""

    weights_file = HEAD_WEIGHTS
    config_file = HEAD_CONFIG

    def __init__(
        self,
        backbone: nn.Module,
        family: AudioLanguageFamily,
        hidden_size: int,
        categories: dict[str, list[str]],
        layer: int,
        audio_token_id: int,
        weight: float = 0.5,
    ) -> None:
        super().__init__(backbone, family)
        self.categories = {k: list(v) for k, v in categories.items()}
        self.layer = layer
        self.audio_token_id = audio_token_id
        self.weight = weight
        self.head = DualLevelHead(hidden_size, self.categories)

    def head_config(self) -> dict[str, Any]:
        return {
            "hidden_size": self.head.category.in_features,
            "categories": self.categories,
            "layer": self.layer,
            "audio_token_id": self.audio_token_id,
            "weight": self.weight,
        }

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        aux_category: torch.Tensor | None = None,
        aux_attribute: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if input_features is not None:
            inputs["input_features"] = input_features.to(self.family.audio_dtype(self.backbone))
            inputs["feature_attention_mask"] = feature_attention_mask
        out = self.backbone(**inputs, labels=labels, output_hidden_states=True)
        result: dict[str, torch.Tensor] = {"logits": out.logits}
        if labels is None:
            return result
        # hidden_states[0] is the embedding output, so layer k's output is at k + 1.
        hidden = out.hidden_states[self.layer + 1]
        pooled = audio_pooled(hidden, input_ids, attention_mask, self.audio_token_id)
        loss = out.loss
        if aux_category is not None and aux_attribute is not None:
            head_dtype = self.head.category.weight.dtype
            category_loss, attribute_loss = self.head.losses(
                pooled.to(head_dtype), aux_category.long(), aux_attribute.long()
            )
            result["aux_loss"] = (category_loss + attribute_loss).detach()
            loss = loss + self.weight * (category_loss + attribute_loss)
        result["loss"] = loss
        return result
