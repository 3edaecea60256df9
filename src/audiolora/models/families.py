"""Architecture facts in one place, so tasks and adapters never hard-code a model's layout.

A family says which transformers classes build the model and its processor, where the audio
encoder and the text-side layers live (for "freeze the audio encoder" and "adapters on layers
2 and 3 only"), which linear layers LoRA targets by default, and which modules must stay out of
4-bit quantization.

Two kinds exist. `seq2seq` (Whisper): the audio encoder feeds a text decoder through
cross-attention. `lalm` (large audio-language model, Qwen2-Audio): the audio tower's outputs go
through a projector into a causal LM's input sequence, one embedding per audio placeholder token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    kind: Literal["seq2seq", "lalm"] = "seq2seq"
    """`seq2seq`: encoder + cross-attending decoder. `lalm`: audio tower -> projector -> causal LM,
    prompted through a chat template (see `audiolora.models.lalm`)."""
    projector_prefix: str | None = None
    """Module-name prefix of the audio-to-text projector (LALMs only)."""
    audio_input_name: str = "input_features"
    max_audio_seconds: float = 30.0
    """Longest audio one encoder pass takes; longer audio is split (LALMs) or rejected."""


WHISPER = Family(
    name="whisper",
    model_class="WhisperForConditionalGeneration",
    processor_class="WhisperProcessor",
    audio_encoder_prefix="model.encoder",
    text_prefix="model.decoder",
    default_targets=("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
    quant_skip_modules=("proj_out",),
    kind="seq2seq",
)

QWEN2_AUDIO = Family(
    name="qwen2_audio",
    model_class="Qwen2AudioForConditionalGeneration",
    processor_class="Qwen2AudioProcessor",
    audio_encoder_prefix="model.audio_tower",
    text_prefix="model.language_model",
    # The LM's attention and MLP projections. The audio tower has q_proj/k_proj/v_proj too, so
    # adapters.target_regex anchors these names under `text_prefix` for this family.
    default_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    # The tower and projector are small next to the LM and feed it every audio embedding: 4-bit
    # error there reaches every audio token. lm_head stays full precision as in most QLoRA setups.
    quant_skip_modules=("model.audio_tower", "model.multi_modal_projector", "lm_head"),
    kind="lalm",
    projector_prefix="model.multi_modal_projector",
    max_audio_seconds=30.0,
)

FAMILIES: dict[str, Family] = {f.name: f for f in (WHISPER, QWEN2_AUDIO)}
_MODEL_TYPE_TO_FAMILY = {"whisper": "whisper", "qwen2_audio": "qwen2_audio"}


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
