"""Qwen2.5-Omni's thinker (the part that hears and answers in text), the paralinguistic seed's
model: a Whisper-style audio tower that encodes only the real mel frames (no 30 s padding), whose
output projection writes straight into a Qwen2.5 language model's embeddings.

Its processor (`Qwen2_5OmniProcessor`) imports torchvision for its image and video parts, which
fails on CPU-only installs, and audio needs none of that: `AudioPromptProcessor` is the feature
extractor and the tokenizer (with the chat template) together, and this family expands each
`<|AUDIO|>` itself, to the encoder's token count for the segment's real frames.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedModel, ProcessorMixin, WhisperFeatureExtractor

from audiolora.models.families.base import AudioLanguageFamily
from audiolora.precision import full_precision
from audiolora.settings import AdapterConfig

AUDIO_TOKEN = "<|AUDIO|>"


class AudioPromptProcessor:
    """A feature extractor and a tokenizer saved in one folder, with the chat template of the
    tokenizer (or of the folder's `chat_template.json` / `.jinja`, as the hub checkpoints ship
    it)."""

    def __init__(
        self,
        feature_extractor: WhisperFeatureExtractor,
        tokenizer: object,
        audio_token: str = AUDIO_TOKEN,
    ) -> None:
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.audio_token = audio_token
        self.audio_token_id = int(tokenizer.convert_tokens_to_ids(audio_token))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> AudioPromptProcessor:
        path = Path(path)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        if getattr(tokenizer, "chat_template", None) is None:
            if (path / "chat_template.jinja").is_file():
                tokenizer.chat_template = (path / "chat_template.jinja").read_text("utf-8")
            elif (path / "chat_template.json").is_file():
                template = json.loads((path / "chat_template.json").read_text("utf-8"))
                tokenizer.chat_template = template["chat_template"]
        return cls(WhisperFeatureExtractor.from_pretrained(str(path)), tokenizer)

    def save_pretrained(self, path: str | Path) -> None:
        self.feature_extractor.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))

    def apply_chat_template(self, conversation: list[dict], **kwargs: object) -> str:
        return self.tokenizer.apply_chat_template(conversation, **kwargs)

    def batch_decode(self, *args: object, **kwargs: object) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)


class Qwen2_5Omni(AudioLanguageFamily):  # noqa: N801 (the model's own name)
    name = "qwen2_5_omni"
    model_types = ("qwen2_5_omni_thinker", "qwen2_5_omni")
    """A full Omni checkpoint (thinker + talker) loads its thinker."""
    model_class = "Qwen2_5OmniThinkerForConditionalGeneration"
    audio_encoder_prefix = "model.audio_tower"
    text_prefix = "model.language_model"
    projector_prefix = "model.audio_tower.proj"
    """The tower's output projection into the LM width (Omni has no separate projector)."""
    default_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    # The vision tower is never run on audio; it stays out of 4-bit with the audio side.
    quant_skip_modules = ("model.audio_tower", "model.visual", "lm_head")
    max_audio_seconds = 30.0
    loss_is_batch_mean = False  # the thinker divides by the Trainer's token count itself
    """The feature extractor's window; the encoder itself takes only real frames, so a short
    clip costs its own length, not 30 s."""

    def load_processor(self, path: str) -> AudioPromptProcessor:
        return AudioPromptProcessor.from_pretrained(path)

    def max_frames(self, processor: ProcessorMixin) -> int:
        return 0  # features are only as wide as the longest real segment in a batch

    def encode_audio_prompt(
        self, processor: ProcessorMixin, prompt: str, audios: list[np.ndarray], sr: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fe = processor.feature_extractor
        with full_precision():
            extracted = fe(
                audios,
                sampling_rate=sr,
                padding="longest",
                return_attention_mask=True,
                return_tensors="pt",
            )
        features, mask = extracted["input_features"], extracted["attention_mask"].long()
        return self.expand_audio_placeholders(processor, prompt, mask), features, mask


class Qwen3Omni(Qwen2_5Omni):
    """Qwen3-Omni's thinker (`Qwen3OmniMoeThinkerForConditionalGeneration`): the same layout and
    prompt as Qwen2.5-Omni, a mixture-of-experts language model, and an audio tower that reads
    its frames in chunks of `2 * n_window` with three stride-2 stages per chunk."""

    name = "qwen3_omni"
    model_types = ("qwen3_omni_moe_thinker", "qwen3_omni_moe")
    model_class = "Qwen3OmniMoeThinkerForConditionalGeneration"
    projector_prefix = "model.audio_tower.proj2"
    """The tower's last projection into the LM width."""
    default_targets = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Attention only: the experts' weights are fused tensors, not linear layers LoRA wraps."""
    n_window = 50
    """The released checkpoints' audio chunking (100 frames a chunk, 13 tokens from each)."""

    def peft_targets(self, cfg: AdapterConfig) -> dict[str, Any]:
        """PEFT rewrites a regex `target_modules` of a transformers-5 mixture-of-experts model
        into bare leaf names (its fused-experts conversion), which would put LoRA into the audio
        tower and lose the layer selection. So the names go as a list, the layers as
        `layers_to_transform`, and the towers are excluded by name."""
        options: dict[str, Any] = {
            "target_modules": list(cfg.target_modules or self.default_targets),
            "exclude_modules": rf"({re.escape(self.audio_encoder_prefix)}|model\.visual)(\..*)?",
        }
        if cfg.layers is not None:
            options.update(layers_to_transform=list(cfg.layers), layers_pattern="layers")
        return options

    def configure(self, model: PreTrainedModel, language: str | None) -> None:
        found = model.config.audio_config.n_window
        if found != self.n_window:
            raise ValueError(
                f"this Qwen3-Omni audio tower has n_window={found}; audiolora counts audio "
                f"tokens for n_window={self.n_window}, the released checkpoints' value"
            )

    def audio_token_counts(self, frames: torch.Tensor) -> torch.Tensor:
        # As the tower's `_get_feat_extract_output_lengths`: 13 tokens per full chunk, and three
        # halvings of the frames left over.
        chunk = 2 * self.n_window
        rest = (frames % chunk - 1) // 2 + 1
        return ((rest - 1) // 2 + 1 - 1) // 2 + 1 + (frames // chunk) * 13
