"""Whisper-style audio encoders on the batch's real length instead of 30 s of padding.

Why: Whisper's feature extractor pads every clip to 3,000 log-mel frames (30 s) and the encoder
refuses anything else, while our clips last 2-5 s; the encoder then spends 6-15x more work on
padding than on audio, which is most of a training step.
- Whisper has no padding mask (its attention sees the padded frames), so trimming changes what
  it computes: pretrained tiny.en loops on 2-5 s inputs, so trimmed inputs keep a floor
  (`data.encoder_context_min_s`), and the option is measured before it is a default.
- Qwen2-Audio's tower masks the padded frames out of its attention, so cutting the frames to the
  batch's longest clip (plus the two frames its convolutions read past the end) is exact.

How: these encoders check the input width against `config.max_source_positions` and add all of
`embed_positions`. A forward pre-hook sets both to the incoming width (the first `width / 2`
positions, the ones a 30 s input gives those frames) on a config copy private to the encoder,
and a forward hook puts the full table back, so the model's config, its weights and its
checkpoints never change.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from torch import nn

FRAMES_PER_SECOND = 100
"""Log-mel frames per second of audio (Whisper's hop of 160 samples at 16 kHz)."""


def accept_any_width(encoder: nn.Module) -> None:
    """Let a Whisper-style encoder take any even number of mel frames up to its 30 s window.

    Idempotent. Inputs of the full width behave exactly as before."""
    if getattr(encoder, "_audiolora_any_width", False):
        return
    encoder.config = copy.copy(encoder.config)
    full_table = encoder.embed_positions
    full = full_table.num_embeddings
    strides = encoder.conv1.stride[0] * encoder.conv2.stride[0]

    def narrow(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        features = args[0] if args else kwargs["input_features"]
        width = features.shape[-1]
        if width % strides or not 0 < width // strides <= full:
            raise ValueError(
                f"audio encoder input of {width} mel frames: give a multiple of {strides} "
                f"up to {full * strides}"
            )
        positions = width // strides
        module.config.max_source_positions = positions
        if positions < full:  # a view of the first rows: no copy, no new weights
            table = nn.Embedding.from_pretrained(full_table.weight[:positions], freeze=True)
            module.embed_positions = table

    def restore(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        module.embed_positions = full_table
        module.config.max_source_positions = full

    encoder.register_forward_pre_hook(narrow, with_kwargs=True)
    encoder.register_forward_hook(restore, with_kwargs=True, always_call=True)
    encoder._audiolora_any_width = True  # type: ignore[attr-defined]


def context_frames(
    seconds: float, round_s: float, min_s: float = 0.0, full_frames: int = 3000
) -> int:
    """Mel frames fed to the encoder for audio of `seconds`: at least `min_s`, rounded up to
    `round_s` (an even number of frames), never past the full window."""
    step = max(2, int(round(round_s * FRAMES_PER_SECOND)) // 2 * 2)
    frames = math.ceil(max(seconds, min_s) * FRAMES_PER_SECOND / step) * step
    return int(min(max(frames, step), full_frames))
