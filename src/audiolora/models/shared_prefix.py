"""Prompts that begin alike: the common beginning through the model once, the rest packed.

Why: the whole-recording search asks every window one question per boundary type, and those
prompts differ only after the audio and the first words of the instruction. Run one by one,
the audio tower and ~85 % of the language model's tokens repeat for every question. Here the
shared beginning (with its audio) runs once with a key/value cache, and the remainders run
together as one packed row over that single cache: each remainder token sees the beginning and
its own remainder's earlier tokens (a 4-D mask), its positions continuing from the cache. A
batch of remainders over copies of the cache would spend a quarter of the window's time copying
and masking keys (measured on the embedded model: 1.9 s against 1.6 s a window).

Exact, not approximate: under causal attention a prefix's keys and values do not depend on what
follows, LoRA adapts every position alike, and every remainder sees exactly the keys and
positions its own full prompt would. Only families whose positions simply continue from a cache
qualify (`AudioLanguageFamily.continues_from_cache`; Qwen2.5-Omni's 3-D positions do not), with
an attention that takes a custom mask (`PACKED_MASKS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

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
    rests = [row[shared:] for row in ids]
    lengths = [len(row) for row in rests]
    positions = torch.cat([torch.arange(n) for n in lengths])
    rest = {
        "input_ids": torch.cat(rests)[None].to(device),
        "attention_mask": packed_mask(lengths, shared, attention_kind(backbone)).to(device),
        "position_ids": (positions + shared)[None].to(device),
        "cache": cache,
        "use_cache": True,
    }
    hidden = family.hidden_states(backbone, rest).last_hidden_state
    ends = torch.tensor(lengths).cumsum(0) - 1
    return hidden[0, ends.to(hidden.device)]


PACKED_MASKS = ("sdpa", "eager")
"""Attention implementations that take `packed_mask`'s 4-D mask (flash attention does not)."""


def attention_kind(model: nn.Module) -> str:
    """The language model's attention implementation (transformers' `_attn_implementation`)."""
    from audiolora.models.families.base import unwrapped

    config = unwrapped(model).config.get_text_config()
    return str(getattr(config, "_attn_implementation", None) or "eager")


def can_share_prefix(family: AudioLanguageFamily, model: nn.Module) -> bool:
    """Whether `shared_prefix_last_states` can run for this family and loaded model."""
    return family.continues_from_cache and attention_kind(model) in PACKED_MASKS


def packed_mask(lengths: Sequence[int], shared: int, kind: str) -> torch.Tensor:
    """(1, 1, sum(lengths), shared + sum(lengths)): remainders packed in one row, each token
    seeing the shared beginning and its own remainder up to itself. Boolean for SDPA, additive
    for the eager attention (which adds the mask to the scores)."""
    if kind not in PACKED_MASKS:
        raise ValueError(f"attention {kind!r} takes no custom mask; share prefixes with sdpa")
    which = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
    position = torch.cat([torch.arange(n) for n in lengths])
    own = (which[:, None] == which[None, :]) & (position[None, :] <= position[:, None])
    seen = torch.cat([torch.ones(len(which), shared, dtype=torch.bool), own], dim=1)[None, None]
    if kind == "sdpa":
        return seen
    blocked = torch.full(seen.shape, torch.finfo(torch.float32).min)
    return blocked.masked_fill(seen, 0.0)
