"""SpecAugment (frequency and time masks) on log-mel features, on training forwards only.

It runs as a forward pre-hook on the model instead of inside the collator: the Trainer uses one
collator for training and evaluation, while `module.training` tells the two apart exactly.
Masks draw from torch's global RNG, which the Trainer checkpoints, so a resumed run masks the
same frames as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from audiolora.settings import SpecAugmentConfig


def spec_augment(features: torch.Tensor, cfg: SpecAugmentConfig) -> torch.Tensor:
    """Mask random bands of a (batch, mel, frames) tensor with each utterance's mean value."""
    out = features.clone()
    batch, n_mels, n_frames = out.shape
    fill = out.mean(dim=(1, 2))
    for b in range(batch):
        for _ in range(cfg.freq_masks):
            width = int(torch.randint(0, cfg.freq_mask_width + 1, ()).item())
            start = int(torch.randint(0, max(n_mels - width, 0) + 1, ()).item())
            out[b, start : start + width, :] = fill[b]
        for _ in range(cfg.time_masks):
            width = int(torch.randint(0, cfg.time_mask_width + 1, ()).item())
            start = int(torch.randint(0, max(n_frames - width, 0) + 1, ()).item())
            out[b, :, start : start + width] = fill[b]
    return out


def install_spec_augment(
    model: nn.Module, cfg: SpecAugmentConfig, input_name: str = "input_features"
) -> RemovableHandle | None:
    """Register the masking hook on `model`; returns the handle (None when disabled)."""
    if not cfg.enabled or (cfg.freq_masks == 0 and cfg.time_masks == 0):
        return None

    def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        features = kwargs.get(input_name)
        if module.training and features is not None and features.dim() == 3:
            kwargs[input_name] = spec_augment(features, cfg)
        return args, kwargs

    return model.register_forward_pre_hook(hook, with_kwargs=True)
