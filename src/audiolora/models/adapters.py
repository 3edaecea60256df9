"""Turn the recipe's `adapter` section into a PEFT LoRA / AdaLoRA model.

PEFT does the wrapping; this module only decides *where* adapters go. Restricting LoRA to some
layers or keeping the audio encoder free of adapters is expressed as one regex over full module
names, because plain target names (`q_proj`) would match the encoder and the decoder alike.
"""

from __future__ import annotations

import re

from peft import AdaLoraConfig, LoraConfig, PeftModel, get_peft_model
from torch import nn

from audiolora.config import AdapterConfig
from audiolora.models.families import Family


def target_regex(cfg: AdapterConfig, family: Family) -> str | list[str]:
    """Module-name pattern for the layers that get adapters.

    Without layer or encoder restrictions the plain name list is returned (PEFT matches the last
    name component). Otherwise a full-match regex such as
    `(model\\.decoder)\\.layers\\.(1|3)\\..*\\.(q_proj|v_proj)` is built.
    """
    if cfg.layers is None and cfg.train_audio_encoder:
        return list(cfg.target_modules)
    stacks = [family.text_prefix]
    if cfg.train_audio_encoder:
        stacks.append(family.audio_encoder_prefix)
    stack_re = "|".join(re.escape(s) for s in stacks)
    layer_re = r"\d+" if cfg.layers is None else "|".join(str(i) for i in cfg.layers)
    names_re = "|".join(re.escape(n) for n in cfg.target_modules)
    return rf"({stack_re})\.layers\.({layer_re})\.(.*\.)?({names_re})"


def build_peft_config(cfg: AdapterConfig, family: Family, total_steps: int) -> LoraConfig:
    common = {
        "target_modules": target_regex(cfg, family),
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "rank_pattern": dict(cfg.rank_pattern),
        "alpha_pattern": dict(cfg.alpha_pattern),
        "bias": "none",
    }
    if cfg.method == "adalora":
        ada = cfg.adalora
        tfinal = ada.tfinal
        if ada.tinit + tfinal >= total_steps:
            tfinal = 0
        return AdaLoraConfig(
            init_r=ada.init_r,
            target_r=ada.target_r,
            tinit=min(ada.tinit, max(total_steps - 1, 0)),
            tfinal=tfinal,
            deltaT=ada.delta_t,
            total_step=max(total_steps, 1),
            **common,
        )
    return LoraConfig(r=cfg.r, **common)


def attach_adapters(
    model: nn.Module, cfg: AdapterConfig, family: Family, total_steps: int
) -> PeftModel:
    """Wrap the frozen base with fresh adapters; fails if no module matched the targets."""
    peft_config = build_peft_config(cfg, family, total_steps)
    try:
        return get_peft_model(model, peft_config)
    except ValueError as e:
        raise ValueError(
            f"adapter.target_modules {cfg.target_modules} with adapter.layers={cfg.layers} and "
            f"train_audio_encoder={cfg.train_audio_encoder} matched no module: {e}"
        ) from e


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit weights count as their unpacked size."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
