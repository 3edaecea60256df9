"""The model families audiolora trains, by name; `family_for` picks one for a checkpoint.

A new family is one module here (a `Family` or `AudioLanguageFamily` subclass), its tests, and one
line in `FAMILIES`.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from audiolora.models.families.base import AudioLanguageFamily, Family
from audiolora.models.families.contrastive import Clap, ContrastiveFamily, DualEncoder
from audiolora.models.families.qwen2_5_omni import Qwen2_5Omni, Qwen3Omni
from audiolora.models.families.qwen2_audio import Qwen2Audio
from audiolora.models.families.whisper import Whisper

WHISPER, QWEN2_AUDIO, QWEN2_5_OMNI, QWEN3_OMNI = Whisper(), Qwen2Audio(), Qwen2_5Omni(), Qwen3Omni()
CLAP, DUAL_ENCODER = Clap(), DualEncoder()
FAMILIES: dict[str, Family] = {
    f.name: f for f in (WHISPER, QWEN2_AUDIO, QWEN2_5_OMNI, QWEN3_OMNI, CLAP, DUAL_ENCODER)
}

KIMI_AUDIO = (
    "Kimi-Audio is not in transformers (its hub repository ships remote code); audiolora "
    "trains the audio LMs transformers implements: Qwen2-Audio and Qwen2.5-Omni"
)

__all__ = [
    "FAMILIES",
    "KIMI_AUDIO",
    "AudioLanguageFamily",
    "ContrastiveFamily",
    "Family",
    "family_for",
]


def family_for(config: PretrainedConfig, requested: str = "auto") -> Family:
    """The family named in the recipe, or the one whose `model_types` has the checkpoint's."""
    if requested != "auto":
        if requested not in FAMILIES:
            raise ValueError(f"unknown model family {requested!r}; choose from {sorted(FAMILIES)}")
        return FAMILIES[requested]
    for family in FAMILIES.values():
        if config.model_type in family.model_types:
            return family
    if config.model_type == "kimi_audio":
        raise ValueError(KIMI_AUDIO)
    supported = ", ".join(sorted(t for f in FAMILIES.values() for t in f.model_types))
    raise ValueError(
        f"model_type '{config.model_type}' is not supported yet (supported: {supported})"
    )
