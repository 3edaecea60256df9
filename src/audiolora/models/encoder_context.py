"""Whisper's encoder on the batch's real length instead of 30 s of padding.

Why: Whisper's feature extractor pads every clip to 3,000 log-mel frames (30 s) and the encoder
refuses anything else, while our clips last 2-5 s; the encoder then spends 6-15x more work on
padding than on audio, which is most of a training step. Whisper has no padding mask (its
attention sees the padded frames), so trimming is not exact: how much it moves WER is measured
(`benchmarks/whisper_speed.py`) and the option stays off where it does not hold.

How: the encoder checks the input width against `config.max_source_positions` and adds all of
`embed_positions`. A forward pre-hook sets both to the width of the incoming features (the
first `width / 2` positions, the ones a 30 s input would give those frames), on a config copy
private to the encoder, so the model's own config, its weights and its checkpoints never change.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from torch import nn

FRAMES_PER_SECOND = 100
"""Log-mel frames per second of audio (Whisper's hop of 160 samples at 16 kHz)."""


def accept_any_width(encoder: nn.Module) -> None:
    """Let a Whisper encoder take any even number of mel frames up to its 30 s window.

    Idempotent. Inputs of the full width behave exactly as before."""
    if getattr(encoder, "_audiolora_any_width", False):
        return
    encoder.config = copy.copy(encoder.config)
    full = encoder.embed_positions.num_embeddings
    strides = encoder.conv1.stride[0] * encoder.conv2.stride[0]

    def set_width(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        features = args[0] if args else kwargs["input_features"]
        width = features.shape[-1]
        if width % strides or not 0 < width // strides <= full:
            raise ValueError(
                f"Whisper encoder input of {width} mel frames: give a multiple of {strides} "
                f"up to {full * strides}"
            )
        module.config.max_source_positions = width // strides
        module.embed_positions.num_embeddings = width // strides

    encoder.register_forward_pre_hook(set_width, with_kwargs=True)
    encoder._audiolora_any_width = True  # type: ignore[attr-defined]


def context_frames(
    seconds: float, round_s: float, min_s: float = 0.0, full_frames: int = 3000
) -> int:
    """Mel frames fed to the encoder for audio of `seconds`: at least `min_s`, rounded up to
    `round_s` (an even number of frames), never past the full window."""
    step = max(2, int(round(round_s * FRAMES_PER_SECOND)) // 2 * 2)
    frames = math.ceil(max(seconds, min_s) * FRAMES_PER_SECOND / step) * step
    return int(min(max(frames, step), full_frames))


def trim_features(features: np.ndarray, frames: int) -> np.ndarray:
    """The first `frames` log-mel frames of (..., mel, 3000) features."""
    return features[..., :frames]
