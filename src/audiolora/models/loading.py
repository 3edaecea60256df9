"""Load a base model and its processor from a hub id, a local folder or a builtin name.

Offline and safe by default: safetensors only, no remote code unless the recipe asks, and a
hub id is only tried when `HF_HUB_OFFLINE` is unset. 4-bit NF4 (QLoRA) goes through
bitsandbytes on CPU and CUDA alike; the CPU traps listed in OFFLINE-FACTS.md are handled here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, PreTrainedModel, ProcessorMixin

from audiolora.models.families import KIMI_AUDIO, Family, family_for
from audiolora.settings import ModelConfig

log = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """The model named in the recipe cannot be found or loaded; the message says how to fix it."""


def resolve_model_path(name: str) -> str:
    """Turn `builtin:NAME`, a local folder or a hub id into what `from_pretrained` takes."""
    if name.startswith(BUILTIN_PREFIX):
        from audiolora.builtin.aligned import ALIGNED_MODELS, aligned_model_path
        from audiolora.builtin.assemble import ASSEMBLED_MODELS, assembled_model_path
        from audiolora.builtin.ct2_import import builtin_model_path
        from audiolora.builtin.dual_encoder import DUAL_ENCODER_MODELS, dual_encoder_path

        builtin = name.removeprefix(BUILTIN_PREFIX)
        if builtin in DUAL_ENCODER_MODELS:
            return str(dual_encoder_path(builtin))
        if builtin in ALIGNED_MODELS:
            return str(aligned_model_path(builtin))
        if builtin in ASSEMBLED_MODELS:
            return str(assembled_model_path(builtin))
        return str(builtin_model_path(builtin))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path}: not a model folder (no config.json)")
        return str(path)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local:
        raise ModelLoadError(f"model folder '{name}' does not exist")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelLoadError(
            f"'{name}' is neither a local folder nor a builtin model, and HF_HUB_OFFLINE=1 "
            "forbids downloading it. Use a local folder or builtin:whisper-tiny.en."
        )
    return name


def kept_in_full_precision(cfg: ModelConfig, family: Family, hf_config: Any) -> list[str]:
    """The module-name prefixes bitsandbytes must leave alone: the family's, less `lm_head`
    where `model.quantize_lm_head` asks for it."""
    skip = list(family.quant_skip_modules)
    if not cfg.quantize_lm_head:
        return skip
    if "lm_head" not in skip:
        raise ModelLoadError(
            f"{cfg.name}: model.quantize_lm_head applies to audio LMs with an `lm_head`; the "
            f"{family.name} family has none. Remove the setting."
        )
    text = hf_config.get_text_config()
    if getattr(text, "tie_word_embeddings", False) or getattr(
        hf_config, "tie_word_embeddings", False
    ):
        raise ModelLoadError(
            f"{cfg.name}: its lm_head shares its weights with the input embeddings, which stay in "
            "full precision; model.quantize_lm_head cannot quantize one without the other. "
            "Remove the setting."
        )
    return [m for m in skip if m != "lm_head"]


def _bnb_config(cfg: ModelConfig, skip: list[str]) -> Any:
    from transformers import BitsAndBytesConfig

    if cfg.quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=cfg.double_quant,
        bnb_4bit_compute_dtype=DTYPES[cfg.compute_dtype],
        llm_int8_skip_modules=skip,
    )


def disable_cpu_repacking(model: torch.nn.Module) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for AVX512-BF16 inference on CPU.

    An eval forward would otherwise repack the weights in place and a later training step fails
    with "a view of a leaf Variable that requires grad is being used in an in-place operation".
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def load_model(cfg: ModelConfig) -> tuple[PreTrainedModel, ProcessorMixin, Family, str]:
    """Load the frozen base model (optionally NF4), its processor and its family."""
    path = resolve_model_path(cfg.name)
    try:
        hf_config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as e:
        if "kimi" in cfg.name.lower():
            raise ModelLoadError(f"'{cfg.name}': {KIMI_AUDIO}") from e
        raise ModelLoadError(f"cannot read the config of '{cfg.name}': {e}") from e
    try:
        family = family_for(hf_config, cfg.family)
    except ValueError as e:
        raise ModelLoadError(f"{cfg.name}: {e}") from e
    model_cls = family.model_cls()
    kwargs: dict[str, Any] = {
        "dtype": DTYPES[cfg.dtype],
        "use_safetensors": True,
        "trust_remote_code": cfg.trust_remote_code,
    }
    if cfg.quantization in ("nf4", "int8"):
        skip = kept_in_full_precision(cfg, family, hf_config)
        kwargs["quantization_config"] = _bnb_config(cfg, skip)
        # Each process of a multi-GPU run puts its copy on its own GPU.
        gpu = int(os.environ.get("LOCAL_RANK", "0"))
        kwargs["device_map"] = {"": gpu} if torch.cuda.is_available() else "cpu"
    model = model_cls.from_pretrained(path, **kwargs)
    if cfg.quantize_embeddings:
        from audiolora.models.quantized_embeddings import quantize_input_embeddings

        try:
            quantize_input_embeddings(model, cfg.quantization)
        except ValueError as e:
            raise ModelLoadError(f"{cfg.name}: {e}") from e
    if cfg.quantization in ("nf4", "int8"):
        own_unquantized_tensors(model)
    if cfg.quantization == "nf4" and not torch.cuda.is_available():
        n = disable_cpu_repacking(model)
        log.info("4-bit on CPU: disabled AVX512-BF16 repacking on %d layers", n)
    if cfg.merge_adapter:
        model = merge_adapter(model, cfg.merge_adapter)
    processor = family.load_processor(path)
    family.configure(model, cfg.language)
    release_freed_memory()
    return model, processor, family, path


def load_full_finetune(base: nn.Module, folder: Path, family: Family) -> PreTrainedModel:
    """The whole model an `adapter.method: full` run saved, on `base`'s device and dtype, with
    the family's settings applied as `load_model` applies them to a base (without them a
    Whisper fed trimmed input, or a Qwen2-Audio tower fed real frames, would refuse)."""
    device = next(base.parameters()).device
    model = type(base).from_pretrained(str(folder), dtype=base.dtype).to(device)
    family.configure(model, None)  # the saved generation config keeps the language
    return model


@torch.no_grad()
def own_unquantized_tensors(model: nn.Module) -> int:
    """Give every floating-point CPU tensor of a quantized model memory of its own; returns how
    many were copied.

    Why: a checkpoint is read through one memory map of its file, and a tensor loaded in the
    file's dtype stays a view of it. After a 4- or 8-bit load only the few unquantized tensors
    (tower, norms, embeddings) are such views, yet they keep the whole mapping alive, and every
    page the quantizer read stays resident: a random 1.1 B audio LM stored in bf16 measured
    2889 MB resident after loading in NF4, 1440 MB once these were copied (most real audio LMs,
    Qwen2-Audio-7B among them, ship in bf16). On CUDA the weights live on the GPU: nothing to do.
    """
    copied: set[int] = set()
    for module in model.modules():
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        for tensor in tensors:
            cpu_float = tensor.device.type == "cpu" and tensor.is_floating_point()
            if cpu_float and id(tensor) not in copied:  # a tied weight is copied once
                copied.add(id(tensor))
                tensor.data = tensor.data.clone()
    return len(copied)


def release_freed_memory() -> None:
    """Hand memory freed while loading back to the OS (glibc keeps it otherwise).

    Why: loading converts weights (full precision to bf16 or NF4) through temporary copies; on
    CPU the freed copies stay resident, so a 4-bit model measured 1045 MB resident where 677 MB
    remain after this call (`benchmarks/memory_4bit.py`). A no-op off Linux/glibc."""
    import contextlib
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, ...): nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def adapter_folder(path: str) -> Path:
    """A run folder's `adapter/`, or `path` itself when it holds an `adapter_config.json`."""
    folder = Path(path).expanduser()
    for candidate in (folder / "adapter", folder):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    raise ModelLoadError(
        f"model.merge_adapter: no adapter in '{path}' (expected a finished run folder, or a "
        "folder with adapter_config.json)"
    )


def merge_adapter(model: PreTrainedModel, path: str) -> PreTrainedModel:
    """Fold a finished run's LoRA weights and trained modules (projector) into the base.

    Why: a recipe then starts from what an earlier run learned (the alignment of the assembled
    model) with fresh adapters of its own, and `eval`/`predict` rebuild the same base from the
    run's config.
    """
    from peft import PeftModel

    folder = adapter_folder(path)
    merged = PeftModel.from_pretrained(model, folder).merge_and_unload()
    log.info("merged the adapter in %s into the base", folder)
    return merged
