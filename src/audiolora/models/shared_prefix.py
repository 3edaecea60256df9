"""Prompts that begin alike: the common beginning through the model once, the rest as a batch.

Why: the whole-recording search asks every window one question per boundary type, and those
prompts differ only after the audio and the first words of the instruction. Run one by one,
the audio tower and ~85 % of the language model's tokens repeat for every question. Here the
shared beginning (with its audio) runs once with a key/value cache, and the remainders run as
one batch over copies of that cache.

Exact, not approximate: under causal attention a prefix's keys and values do not depend on what
follows, LoRA adapts every position alike, and the remainders continue the rotary positions
from the cache's length. Only families whose positions simply continue from a cache qualify
(`AudioLanguageFamily.continues_from_cache`; Qwen2.5-Omni's 3-D positions do not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from audiolora.models.heads.regression import last_token_states

if TYPE_CHECKING:
    from audiolora.models.families.base import AudioLanguageFamily


def common_prefix_length(rows: Sequence[torch.Tensor]) -> int:
    """How many leading tokens every 1-D row of `rows` has in common."""
    shortest = min(len(row) for row in rows)
    first = rows[0][:shortest]
    same = torch.ones(shortest, dtype=torch.bool)
    for row in rows[1:]:
        same &= row[:shortest] == first
    differs = (~same).nonzero()
    return int(differs[0]) if len(differs) else shortest


@torch.no_grad()
def shared_prefix_last_states(
    family: AudioLanguageFamily,
    backbone: nn.Module,
    examples: Sequence[dict[str, torch.Tensor]],
    audio_token_id: int,
) -> torch.Tensor:
    """(len(examples), hidden): each prompt's last-token state from the language model's last
    layer, as a separate forward of each prompt would give it.

    `examples` are `encode_example` outputs for the same audio (equal `input_features`) with
    different instructions; every audio placeholder must lie in their common beginning.
    """
    if not family.continues_from_cache:
        raise ValueError(f"{family.name}: its positions do not continue from a cache")
    ids = [e["input_ids"] for e in examples]
    features, mask = examples[0]["input_features"], examples[0]["feature_attention_mask"]
    for e in examples[1:]:
        if not (
            torch.equal(e["input_features"], features)
            and torch.equal(e["feature_attention_mask"], mask)
        ):
            raise ValueError("prompts share a prefix only when they carry the same audio")
    # Every remainder keeps at least one token: its last state is what is asked for.
    shared = min(common_prefix_length(ids), min(len(row) for row in ids) - 1)
    if any(bool((row[shared:] == audio_token_id).any()) for row in ids):
        raise ValueError("an audio placeholder lies after the prompts' common beginning")
    device = next(backbone.parameters()).device
    prefix = {
        "input_ids": ids[0][None, :shared].to(device),
        "attention_mask": torch.ones(1, shared, dtype=torch.long, device=device),
        "use_cache": True,
    }
    if len(features):
        prefix["input_features"] = features.to(device)
        prefix["feature_attention_mask"] = mask.to(device)
    cache = family.hidden_states(backbone, prefix).cache
    cache.batch_repeat_interleave(len(ids))
    width = max(len(row) for row in ids) - shared
    pad = torch.zeros(len(ids), width, dtype=ids[0].dtype)
    rest_mask = torch.zeros(len(ids), width, dtype=torch.long)
    for i, row in enumerate(ids):  # right padding: the remainders' positions start together
        pad[i, : len(row) - shared] = row[shared:]
        rest_mask[i, : len(row) - shared] = 1
    rest = {
        "input_ids": pad.to(device),
        "attention_mask": torch.cat(
            [torch.ones(len(ids), shared, dtype=torch.long), rest_mask], dim=1
        ).to(device),
        "cache": cache,
        "use_cache": True,
    }
    hidden = family.hidden_states(backbone, rest).last_hidden_state
    return last_token_states(hidden, rest_mask.to(hidden.device))
