"""A frozen audio tower's outputs, computed once per audio segment and reused in every epoch.

Why: LoRA recipes on an audio LM train the language model (and perhaps the projector) and keep
the audio tower frozen, so the tower computes the same numbers for a clip in every epoch; after
the language model it is the largest part of a training step.

How: a forward pre-hook on the audio LM's inner model (`Qwen2AudioModel`). On training forwards
(gradients on) it builds `inputs_embeds` itself -- token embeddings, with the projector applied
to the tower's outputs written at the audio placeholders, the merge the model does -- and hands
the model no audio features. The tower's outputs come from the cache, keyed by a hash of each
segment's real frames, or are computed on those frames alone (exact: the tower masks padding)
and stored while the memory budget lasts. Augmented features (SpecAugment) simply miss; a tower
with trainable parameters, or with dropout in training, is never cached. Evaluation and
generation take the model's own path.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn


@torch.no_grad()
def tower_outputs(tower: nn.Module, features: torch.Tensor, frames: int) -> torch.Tensor:
    """What `Qwen2AudioEncoder` gives for the `frames` real mel frames of one padded segment.

    `features` is (mel, width) as the feature extractor pads it; returns (placeholders, d)."""
    width = min(features.shape[-1], frames + 2)  # the convolutions read two frames past the end
    x = features[None, :, :width].to(tower.conv1.weight.dtype)
    x = nn.functional.gelu(tower.conv1(x))
    x = nn.functional.gelu(tower.conv2(x))
    positions = (frames - 1) // 2 + 1
    x = x.permute(0, 2, 1)[:, :positions] + tower.embed_positions.weight[:positions]
    for layer in tower.layers:
        out = layer(x, None)
        x = out[0] if isinstance(out, tuple) else out
    x = tower.avg_pooler(x.permute(0, 2, 1)).permute(0, 2, 1)
    return tower.layer_norm(x)[0]


class TowerCache:
    """Tower outputs by segment; counts hits and misses for the run's metrics."""

    def __init__(self, budget_mb: float) -> None:
        self.budget_bytes = int(budget_mb * 2**20)
        self.entries: dict[bytes, torch.Tensor] = {}
        self.stored_bytes = 0
        self.hits = 0
        self.misses = 0

    def outputs(self, tower: nn.Module, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Every segment's outputs (its real placeholders only), in batch order, concatenated."""
        pieces = []
        for segment, real in zip(features, mask, strict=True):
            frames = int(real.sum())
            data = segment[:, :frames].detach().float().contiguous().cpu().numpy().tobytes()
            key = hashlib.blake2b(data, digest_size=16).digest()
            found = self.entries.get(key)
            if found is None:
                self.misses += 1
                found = tower_outputs(tower, segment, frames)
                size = found.numel() * found.element_size()
                if self.stored_bytes + size <= self.budget_bytes:
                    self.entries[key] = found
                    self.stored_bytes += size
            else:
                self.hits += 1
            pieces.append(found)
        return torch.cat(pieces)

    def summary(self) -> dict[str, Any]:
        return {
            "tower_cache_hits": self.hits,
            "tower_cache_misses": self.misses,
            "tower_cache_mb": self.stored_bytes / 2**20,
        }


def random_in_training(tower: nn.Module) -> bool:
    """A tower in training mode with dropout gives new outputs every pass: nothing to reuse."""
    config = getattr(tower, "config", None)
    rates = (getattr(config, name, 0.0) or 0.0 for name in DROPOUTS)
    return tower.training and any(rate > 0 for rate in rates)


DROPOUTS = ("dropout", "attention_dropout", "activation_dropout")


def install_tower_cache(inner: nn.Module, cache: TowerCache) -> None:
    """Route training forwards of `inner` (a `Qwen2AudioModel`: `audio_tower`,
    `multi_modal_projector`, `config.audio_token_id`) through `cache`."""

    def embed(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple | None:
        ids, features = kwargs.get("input_ids"), kwargs.get("input_features")
        mask = kwargs.get("feature_attention_mask")
        if ids is None or features is None or mask is None or args:
            return None
        if not torch.is_grad_enabled() or kwargs.get("inputs_embeds") is not None:
            return None
        tower = module.audio_tower
        if any(p.requires_grad for p in tower.parameters()) or random_in_training(tower):
            return None
        audio = cache.outputs(tower, features.to(tower.conv1.weight.device), mask)
        embeds = module.get_input_embeddings()(ids)
        audio = module.multi_modal_projector(audio).to(embeds.dtype)
        slots = (ids == module.config.audio_token_id).unsqueeze(-1)
        if int(slots.sum()) != audio.shape[0]:
            raise RuntimeError(
                f"{int(slots.sum())} audio placeholders for {audio.shape[0]} tower outputs"
            )
        kwargs.update(
            inputs_embeds=embeds.masked_scatter(slots, audio),
            input_ids=None,
            input_features=None,
            feature_attention_mask=None,
        )
        return args, kwargs

    inner.register_forward_pre_hook(embed, with_kwargs=True)
