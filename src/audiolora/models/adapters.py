"""Turn the recipe's `adapter` section into a PEFT LoRA / AdaLoRA model.

PEFT does the wrapping; this module only decides *where* adapters go, asking the family: which
linear layers (one regex over full module names when layers or the audio encoder are restricted,
because plain target names such as `q_proj` match the encoder and the decoder alike), and which
modules train in full beside them (an audio LM's projector, or its whole audio tower). Those are
PEFT `modules_to_save`: PEFT trains a copy of each (the frozen original stays for
`disable_adapter()`) and writes it into the adapter folder, so the saved adapter is complete.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from peft import AdaLoraConfig, EvaConfig, LoraConfig, PeftModel, get_peft_model
from torch import nn

from audiolora.models.families import Family
from audiolora.models.heads.base import HeadModel
from audiolora.settings import AdapterConfig


def fully_trained(cfg: AdapterConfig, family: Family) -> list[str]:
    """The family's modules that train in full; one inside another is covered by the outer."""
    names = family.fully_trained_modules(cfg)
    return [n for n in names if not any(n.startswith(f"{o}.") for o in names if o != n)]


def build_peft_config(cfg: AdapterConfig, family: Family, total_steps: int) -> LoraConfig:
    common = {
        **family.peft_targets(cfg),
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "rank_pattern": dict(cfg.rank_pattern),
        "alpha_pattern": dict(cfg.alpha_pattern),
        "bias": "none",
        "modules_to_save": fully_trained(cfg, family) or None,
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
    lora_options: dict[str, Any] = {"use_dora": cfg.use_dora}
    if cfg.init == "pissa":
        lora_options["init_lora_weights"] = "pissa_niter_4"  # fast randomised SVD
    elif cfg.init == "eva":
        lora_options["init_lora_weights"] = "eva"
        lora_options["eva_config"] = EvaConfig(rho=2.0)
    return LoraConfig(r=cfg.r, **common, **lora_options)


def resolve_layers(model: nn.Module, cfg: AdapterConfig, family: Family) -> AdapterConfig:
    """Turn negative layer indices (-1 = the top layer) into absolute ones for this model."""
    if not cfg.layers or min(cfg.layers) >= 0:
        return cfg
    depth = family.text_layer_count(model)
    resolved = sorted({i + depth if i < 0 else i for i in cfg.layers})
    if resolved[0] < 0 or resolved[-1] >= depth:
        raise ValueError(f"adapter.layers={cfg.layers}: the text stack has {depth} layers")
    return cfg.model_copy(update={"layers": resolved})


def attach_adapters(
    model: nn.Module, cfg: AdapterConfig, family: Family, total_steps: int
) -> nn.Module:
    """Wrap the frozen base with fresh adapters; fails if no module matched the targets.
    `method: full` returns the model itself with every weight trainable."""
    if cfg.method == "full":
        if any(p.__class__.__name__ in ("Params4bit", "Int8Params") for p in model.parameters()):
            raise ValueError("adapter.method=full trains every weight: use model.quantization=none")
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    cfg = resolve_layers(model, cfg, family)
    peft_config = build_peft_config(cfg, family, total_steps)
    try:
        peft_model = get_peft_model(model, peft_config)
    except ValueError as e:
        raise ValueError(
            f"adapter.target_modules {list(cfg.target_modules or family.default_targets)} with "
            f"adapter.layers={cfg.layers} and train_audio_encoder={cfg.train_audio_encoder} "
            f"matched no module: {e}"
        ) from e
    check_patterns(peft_model, cfg)
    return peft_model


def check_patterns(model: nn.Module, cfg: AdapterConfig) -> None:
    """A `rank_pattern` / `alpha_pattern` key that matches no adapted module is a mistake PEFT
    would ignore silently: refuse it, naming the key."""
    adapted = [
        n
        for n, m in model.named_modules()
        if isinstance(getattr(m, "lora_A", None), nn.ModuleDict | nn.ParameterDict)
    ]
    for setting, pattern in (
        ("rank_pattern", cfg.rank_pattern),
        ("alpha_pattern", cfg.alpha_pattern),
    ):
        for key in pattern:
            if not any(re.match(rf"(.*\.)?({key})$", n) for n in adapted):
                raise ValueError(
                    f"adapter.{setting} key {key!r} matches none of the {len(adapted)} adapted "
                    f"modules (e.g. {adapted[0] if adapted else 'none'}); fix or remove it"
                )


def scale_adapter(model: nn.Module, scale: float) -> int:
    """Scale every LoRA update by `scale` in place (its `lora_B` factor, so the update
    B·A becomes scale·B·A exactly); returns how many tensors were scaled."""
    if scale == 1:
        return 0
    scaled = 0
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(scale)
                scaled += 1
    return scaled


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, 4-bit weights at their unpacked size: PEFT's own
    count for a PEFT model; a model with a head adds the head to its backbone's."""
    if isinstance(model, PeftModel):
        return model.get_nb_trainable_parameters()
    if isinstance(model, HeadModel):
        trainable, total = count_parameters(model.backbone)
        head = list(model.head.parameters())
        return (
            trainable + sum(p.numel() for p in head if p.requires_grad),
            total + sum(p.numel() for p in head),
        )
    trainable = total = 0
    for p in model.parameters():
        n = p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1)
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total
