"""The audio LM's training loss with the vocabulary projection computed only where it counts.

Why: an audio-LM training example is ~130 tokens of prompt (audio placeholders, instruction)
and ~15 of answer, and only the answer carries loss; yet the model's forward projects every
position onto the whole vocabulary (49k for SmolLM2, 152k for Qwen2), forward and backward,
which is a quarter of a step on the embedded model. Here the language model runs as usual and
`lm_head` sees only the positions whose next token is labelled: the same loss (mean
cross-entropy over labelled next tokens, as `Qwen2AudioForConditionalGeneration` computes it)
and the same gradients, for less work. Used for training steps only; evaluation and generation
take the model's own path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from audiolora.models.families.base import unwrapped

IGNORE_INDEX = -100


def labelled_positions_loss(model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor | None:
    """Mean next-token cross-entropy over labelled positions, or None when `model` is not an
    audio LM of the `model` (inner) + `lm_head` shape this applies to (heads, Whisper)."""
    base = unwrapped(model)
    inner = getattr(base, "model", None)
    head = getattr(base, "lm_head", None)
    labels = inputs.get("labels")
    # Qwen2-Audio-style models only: their own loss is a plain mean over labelled tokens (the
    # Omni thinkers divide by the accumulated token count instead).
    qwen2_audio = hasattr(inner, "audio_tower") and hasattr(inner, "multi_modal_projector")
    if labels is None or head is None or not qwen2_audio:
        return None
    hidden = inner(**{k: v for k, v in inputs.items() if k != "labels"}).last_hidden_state
    targets = labels[:, 1:].to(hidden.device)
    keep = targets != IGNORE_INDEX
    mask = inputs.get("attention_mask")
    if mask is not None:  # the model's own loss skips padded positions as well
        keep &= mask[:, 1:].to(hidden.device) != 0
    logits = head(hidden[:, :-1][keep])
    return nn.functional.cross_entropy(logits.float(), targets[keep])
