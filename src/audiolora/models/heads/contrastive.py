"""The contrastive objective of TeminAL (seed 002) around a dual encoder, and its persistence.

The modified InfoNCE. For a batch of B clips and M >= B captions (caption i is clip i's; the
rest are extra temporally wrong captions), s_ij = tau * cos(a_i, t_j), tau the model's logit
scale. A kind k_ij says what caption j is to clip i: 0 an ordinary negative, 1 the wrong order
(clip "A then B", caption "B, then A"), 2 overlap against sequence ("A while B" against "A, then
B"), -1 another caption that means what caption i means (left out: not a negative at all).
With w_ij = 1 + alpha_order [k_ij = 1] + alpha_overlap [k_ij = 2],

    L_a2t = -1/B sum_i log( exp(s_ii) / sum_{j: k_ij != -1} w_ij exp(s_ij) )

and L_t2a the same over clips for each of the B positive captions (kinds transposed). The loss
is (L_a2t + L_t2a) / 2 (`symmetric`), or L_a2t alone. With both alphas 0 it is CLIP/CLAP's
symmetric InfoNCE; a positive alpha makes a temporally wrong match count as 1 + alpha
negatives, so its similarity is pushed down harder than an unrelated caption's, and only those
pairs feel the extra weight.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn

from audiolora.models.families import ContrastiveFamily
from audiolora.models.heads.base import HeadModel

SAME, ORDINARY, WRONG_ORDER, WRONG_OVERLAP = -1, 0, 1, 2


def weighted_info_nce(
    logits: torch.Tensor, kinds: torch.Tensor, order_weight: float, overlap_weight: float
) -> torch.Tensor:
    """Mean over rows of -log softmax at the diagonal, each negative's exp weighted by its kind
    (see the module docstring); `logits` (B, M) with the positives on the diagonal."""
    weights = (
        1.0 + order_weight * (kinds == WRONG_ORDER) + overlap_weight * (kinds == WRONG_OVERLAP)
    )
    shifted = logits + torch.log(weights.to(logits.dtype))
    eye = torch.zeros_like(kinds, dtype=torch.bool)
    eye[torch.arange(len(kinds)), torch.arange(len(kinds))] = True
    shifted = shifted.masked_fill((kinds == SAME) & ~eye, float("-inf"))
    target = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(shifted, target)


def temporal_info_nce(
    audio: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor,
    kinds: torch.Tensor,
    order_weight: float,
    overlap_weight: float,
    symmetric: bool = True,
) -> torch.Tensor:
    """The TeminAL loss from unit-length embeddings: `audio` (B, d), `text` (M, d), `kinds`
    (B, M) as in the module docstring."""
    logits = scale * audio @ text.T
    loss = weighted_info_nce(logits, kinds, order_weight, overlap_weight)
    if not symmetric:
        return loss
    b = len(audio)
    t2a = weighted_info_nce(logits[:, :b].T, kinds[:, :b].T, order_weight, overlap_weight)
    return (loss + t2a) / 2


class ContrastiveModel(HeadModel):
    """A dual encoder (bare with some modules unfrozen, or PEFT-wrapped) plus the loss settings.

    Saving: a PEFT backbone writes its adapter (LoRA and the `modules_to_save` projections); a
    bare one writes the tensors that trained (`last_layers`) into one file, by name."""

    weights_file = "contrastive_trained.safetensors"
    config_file = "contrastive.json"

    def __init__(
        self,
        backbone: nn.Module,
        family: ContrastiveFamily,
        order_weight: float = 1.0,
        overlap_weight: float = 1.0,
        symmetric: bool = True,
        trained: list[str] | None = None,
    ) -> None:
        super().__init__(backbone, family)  # type: ignore[arg-type]
        self.head = nn.Module()
        self.order_weight = order_weight
        self.overlap_weight = overlap_weight
        self.symmetric = symmetric
        self.trained = trained or []

    def head_config(self) -> dict[str, Any]:
        return {
            "order_weight": self.order_weight,
            "overlap_weight": self.overlap_weight,
            "symmetric": self.symmetric,
            "trained": self.trained,
        }

    def forward(
        self, audio: dict[str, torch.Tensor], text: dict[str, torch.Tensor], kinds: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        family: ContrastiveFamily = self.family  # type: ignore[assignment]
        a = family.embed_audio(self.backbone, audio)
        t = family.embed_text(self.backbone, text)
        scale = family.logit_scale(self.backbone)
        loss = temporal_info_nce(a, t, scale, kinds.to(a.device), self.order_weight,
                                 self.overlap_weight, self.symmetric)  # fmt: skip
        return {"loss": loss}

    def save_pretrained(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(self.backbone, PeftModel):
            self.backbone.save_pretrained(str(out_dir))
        else:
            params = dict(self.backbone.named_parameters())
            names = [
                n for n in params if any(n == t or n.startswith(f"{t}.") for t in self.trained)
            ]
            save_file({n: params[n].detach().cpu().contiguous() for n in names},
                      str(out_dir / self.weights_file))  # fmt: skip
        (out_dir / self.config_file).write_text(json.dumps(self.head_config(), indent=2))

    @classmethod
    def from_pretrained(
        cls, base: nn.Module, adapter_dir: str | Path, family: Any
    ) -> ContrastiveModel:
        adapter_dir = Path(adapter_dir)
        config = cls.saved_config(adapter_dir)
        if (adapter_dir / "adapter_config.json").exists():
            return cls(PeftModel.from_pretrained(base, str(adapter_dir)), family, **config)
        saved = load_file(str(adapter_dir / cls.weights_file))
        params = dict(base.named_parameters())
        unknown = sorted(set(saved) - set(params))
        if unknown:
            raise ValueError(f"{adapter_dir}: tensors {unknown[:5]} are not in this base model")
        with torch.no_grad():
            for name, tensor in saved.items():
                params[name].copy_(tensor)
        return cls(base, family, **config)
