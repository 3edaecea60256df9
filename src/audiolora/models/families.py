"""Architecture facts in one place, so tasks and adapters never hard-code a model's layout.

A family says which transformers classes build the model and its processor, where the audio
encoder and the text-side layers live (for "freeze the audio encoder" and "adapters on layers
2 and 3 only"), which linear layers LoRA targets by default, and which modules must stay out of
4-bit quantization.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PretrainedConfig


@dataclass(frozen=True)
class Family:
    name: str
    model_class: str
    """Name of the transformers class that loads the full model."""
    processor_class: str
    audio_encoder_prefix: str
    """Module-name prefix of the audio encoder (`model.encoder` for Whisper)."""
    text_prefix: str
    """Module-name prefix of the text decoder / language model."""
    default_targets: tuple[str, ...]
    quant_skip_modules: tuple[str, ...]
    """Full-name prefixes kept in full precision under 4-bit loading (transformers 5 matches
    `llm_int8_skip_modules` from the start of the module name)."""
    audio_input_name: str = "input_features"
    max_audio_seconds: float = 30.0


WHISPER = Family(
    name="whisper",
    model_class="WhisperForConditionalGeneration",
    processor_class="WhisperProcessor",
    audio_encoder_prefix="model.encoder",
    text_prefix="model.decoder",
    default_targets=("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
    quant_skip_modules=("proj_out",),
)

FAMILIES: dict[str, Family] = {f.name: f for f in (WHISPER,)}
_MODEL_TYPE_TO_FAMILY = {"whisper": "whisper"}


def family_for(config: PretrainedConfig, requested: str = "auto") -> Family:
    """Pick the family named in the recipe, or the one matching the checkpoint's `model_type`."""
    if requested != "auto":
        return FAMILIES[requested]
    name = _MODEL_TYPE_TO_FAMILY.get(config.model_type)
    if name is None:
        supported = ", ".join(sorted(_MODEL_TYPE_TO_FAMILY))
        raise ValueError(
            f"model_type '{config.model_type}' is not supported yet (supported: {supported})"
        )
    return FAMILIES[name]
