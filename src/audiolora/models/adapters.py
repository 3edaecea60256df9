"""Turn the recipe's `adapter` section into a PEFT LoRA / AdaLoRA model.

PEFT does the wrapping; this module only decides *where* adapters go. Restricting LoRA to some
layers or keeping the audio encoder free of adapters is expressed as one regex over full module
names, because plain target names (`q_proj`) would match the encoder and the decoder alike.

Audio-language models (family kind `lalm`, e.g. Qwen2-Audio) get LoRA in the language model only:
their audio tower has q_proj/k_proj/v_proj too, and `adapter.train_audio_encoder` (default True,
meant for Whisper's small encoder) does not put adapters there. What else an LALM trains -- its
projector, or its whole audio tower -- is chosen by `lalm_trainable_extras`, which registers those
modules with PEFT so that `save_pretrained` writes them beside the adapter.
"""

from __future__ import annotations

import re

from peft import AdaLoraConfig, LoraConfig, PeftModel, get_peft_model
from peft.utils.other import _set_trainable
from torch import nn

from audiolora.config import AdapterConfig
from audiolora.models.families import Family


def target_names(cfg: AdapterConfig, family: Family) -> list[str]:
    """The recipe's linear-layer names, else the family's defaults."""
    return list(cfg.target_modules or family.default_targets)


def target_regex(cfg: AdapterConfig, family: Family) -> str | list[str]:
    """Module-name pattern for the layers that get adapters.

    Without layer or encoder restrictions the plain name list is returned (PEFT matches the last
    name component). Otherwise a full-match regex such as
    `(model\\.decoder)\\.layers\\.(1|3)\\.(.*\\.)?(q_proj|v_proj)` is built. For an LALM the
    regex is always anchored at the language model (`model\\.language_model\\.layers\\...`) and
    `cfg.train_audio_encoder` is not consulted: see the module docstring.
    """
    lalm = family.kind == "lalm"
    targets = target_names(cfg, family)
    if cfg.layers is None and cfg.train_audio_encoder and not lalm:
        return targets
    stacks = [family.text_prefix]
    if cfg.train_audio_encoder and not lalm:
        stacks.append(family.audio_encoder_prefix)
    stack_re = "|".join(re.escape(s) for s in stacks)
    layer_re = r"\d+" if cfg.layers is None else "|".join(str(i) for i in cfg.layers)
    names_re = "|".join(re.escape(n) for n in targets)
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


def text_layer_count(model: nn.Module, family: Family) -> int:
    """Layers in the text stack (`model.decoder.layers.N`, `...language_model.layers.N`)."""
    pattern = re.compile(rf"{re.escape(family.text_prefix)}\.layers\.(\d+)")
    found = [int(m.group(1)) for name, _ in model.named_modules() if (m := pattern.fullmatch(name))]
    return max(found) + 1 if found else 0


def resolve_layers(model: nn.Module, cfg: AdapterConfig, family: Family) -> AdapterConfig:
    """Turn negative layer indices (-1 = the top layer) into absolute ones for this model."""
    if not cfg.layers or min(cfg.layers) >= 0:
        return cfg
    depth = text_layer_count(model, family)
    resolved = sorted({i + depth if i < 0 else i for i in cfg.layers})
    if resolved[0] < 0 or resolved[-1] >= depth:
        raise ValueError(f"adapter.layers={cfg.layers}: the text stack has {depth} layers")
    return cfg.model_copy(update={"layers": resolved})


def attach_adapters(
    model: nn.Module, cfg: AdapterConfig, family: Family, total_steps: int
) -> PeftModel:
    """Wrap the frozen base with fresh adapters; fails if no module matched the targets."""
    cfg = resolve_layers(model, cfg, family)
    peft_config = build_peft_config(cfg, family, total_steps)
    try:
        return get_peft_model(model, peft_config)
    except ValueError as e:
        raise ValueError(
            f"adapter.target_modules {target_names(cfg, family)} with "
            f"adapter.layers={cfg.layers} and train_audio_encoder={cfg.train_audio_encoder} "
            f"matched no module: {e}"
        ) from e


def lalm_trainable_extras(
    model: PeftModel, family: Family, train_projector: bool, train_audio_encoder_fully: bool
) -> list[str]:
    """Make an LALM's projector and/or whole audio tower trainable next to the LoRA adapters.

    Called after `attach_adapters`. The projector is the usual thing to train when the audio
    tower and the LM come from different checkpoints (an untrained projector is the only part
    that does not speak the LM's language yet); training the tower fully is for new audio domains.
    The modules are registered as PEFT `modules_to_save`: PEFT trains a copy of each (the frozen
    original stays for `disable_adapter()`) and writes it into the adapter folder, so the saved
    adapter is complete. The tower copy doubles its memory. Returns the registered module
    names, in the base model's naming (`model.multi_modal_projector`).
    """
    if family.kind != "lalm":
        raise ValueError(f"lalm_trainable_extras applies to LALM families, not '{family.name}'")
    names: list[str] = []
    if train_projector:
        if family.projector_prefix is None:
            raise ValueError(f"family '{family.name}' declares no projector_prefix")
        names.append(family.projector_prefix)
    if train_audio_encoder_fully:
        names.append(family.audio_encoder_prefix)
    if not names:
        return []
    adapter_name = model.active_adapter
    peft_config = model.peft_config[adapter_name]
    already = list(peft_config.modules_to_save or [])
    peft_config.modules_to_save = already + [n for n in names if n not in already]
    # PEFT's own routine behind `modules_to_save`, what get_peft_model runs for them; it matches
    # module names by suffix, hence the full dotted prefixes.
    _set_trainable(
        model, adapter_name, module_names=names, inference_mode=False, strict_module_check=True
    )
    return names


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
