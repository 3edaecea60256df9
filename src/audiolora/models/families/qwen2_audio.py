"""Qwen2-Audio: a Whisper-style audio tower (exactly 30 s of mel frames per pass), a linear
projector and a Qwen2 language model; its processor expands each `<|AUDIO|>` of the prompt to the
encoder's output count. The offline assembled model (`builtin:qwen2-audio-smollm2-tiny`) is one.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedModel, ProcessorMixin, Qwen2AudioProcessor

from audiolora.models.encoder_context import accept_any_width
from audiolora.models.families.base import AudioLanguageFamily
from audiolora.models.tower_cache import TowerCache, install_tower_cache
from audiolora.precision import full_precision


def cut_padded_frames(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple | None:
    """Forward pre-hook: segments padded to 30 s cut to the batch's longest real one."""
    from audiolora.models.lalm import trimmed_width

    features, mask = kwargs.get("input_features"), kwargs.get("feature_attention_mask")
    if features is None or mask is None or not Qwen2Audio.trims_padded_frames:
        return None
    width = min(features.shape[-1], trimmed_width(int(mask.sum(-1).max())))
    kwargs["input_features"] = features[..., :width]
    kwargs["feature_attention_mask"] = mask[..., :width]
    return args, kwargs


class Qwen2Audio(AudioLanguageFamily):
    name = "qwen2_audio"
    model_types = ("qwen2_audio",)
    model_class = "Qwen2AudioForConditionalGeneration"
    audio_encoder_prefix = "model.audio_tower"
    text_prefix = "model.language_model"
    projector_prefix = "model.multi_modal_projector"
    # The LM's attention and MLP projections (the tower has q/k/v_proj too: see
    # `adapts_audio_encoder`, which anchors them under `text_prefix`).
    default_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    # The tower and projector are small next to the LM and feed it every audio embedding: 4-bit
    # error there reaches every audio token. lm_head stays full precision as in most QLoRA setups.
    quant_skip_modules = ("model.audio_tower", "model.multi_modal_projector", "lm_head")
    max_audio_seconds = 30.0
    trims_padded_frames = True
    continues_from_cache = True

    def cache_tower(self, model: torch.nn.Module, budget_mb: float) -> TowerCache | None:
        inner = next(
            (
                m
                for m in model.modules()
                if hasattr(m, "audio_tower") and hasattr(m, "multi_modal_projector")
            ),
            None,
        )
        if inner is None:
            return None
        cache = TowerCache(budget_mb)
        install_tower_cache(inner, cache)
        return cache

    def configure(self, model: PreTrainedModel, language: str | None) -> None:
        # The tower sees only the batch's real frames (its attention masks the rest): exact.
        accept_any_width(model.get_submodule(self.audio_encoder_prefix))
        model.get_submodule("model").register_forward_pre_hook(cut_padded_frames, with_kwargs=True)

    def load_processor(self, path: str) -> ProcessorMixin:
        return Qwen2AudioProcessor.from_pretrained(path)

    def encode_audio_prompt(
        self, processor: ProcessorMixin, prompt: str, audios: list[np.ndarray], sr: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # The processor pads every segment to 30 s (padding="max_length"), returns the real-frame
        # mask as feature_attention_mask and expands each <|AUDIO|> to the encoder's output count.
        with full_precision():
            encoded = processor(text=[prompt], audio=audios, sampling_rate=sr, return_tensors="pt")
        return (
            encoded["input_ids"],
            encoded["input_features"],
            encoded["feature_attention_mask"].long(),
        )
