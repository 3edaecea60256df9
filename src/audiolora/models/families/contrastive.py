"""Contrastive audio-text families: transformers' `ClapModel` and audiolora's offline dual encoder.

A contrastive model does not generate text: it embeds a clip and a caption into one space and
scores them by cosine similarity. What differs between the two families is how audio and text
become inputs (CLAP's 48 kHz feature extractor, whose default `truncation="fusion"` crashes a
model without fusion, so `rand_trunc` is used; the dual encoder's 44.1 kHz log-mel), where the
embeddings come from, the logit scale's name, and which modules are the "last layers" a
TeminAL-style post-training trains.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from audiolora.models.dual_encoder import MODEL_TYPE, DualEncoderModel, DualEncoderProcessor
from audiolora.models.families.base import Family, unwrapped


class ContrastiveFamily(Family):
    """Embeds audio and text; every contrastive task asks through these methods only."""

    contrastive: ClassVar[bool] = True
    max_audio_seconds: ClassVar[float | None] = None
    last_layers: ClassVar[tuple[str, ...]]
    """Module names trained in full by `contrastive.tune: last_layers` (projections included)."""

    def sampling_rate(self, processor: Any) -> int:
        raise NotImplementedError

    def fully_trained_modules(self, cfg: Any) -> list[str]:
        """Beside LoRA, the projections train in full (a post-training re-aligns the spaces)."""
        return ["audio_projection", "text_projection"]

    def audio_inputs(self, processor: Any, audios: list[np.ndarray]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def text_inputs(self, processor: Any, texts: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def logit_scale(self, model: nn.Module) -> torch.Tensor:
        raise NotImplementedError

    def embed_audio(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unit-length audio embeddings (batch, dim)."""
        core = unwrapped(model)
        device = next(core.parameters()).device
        out = core.get_audio_features(**{k: v.to(device) for k, v in inputs.items()})
        return F.normalize(_tensor(out), dim=-1)

    def embed_text(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        core = unwrapped(model)
        device = next(core.parameters()).device
        out = core.get_text_features(**{k: v.to(device) for k, v in inputs.items()})
        return F.normalize(_tensor(out), dim=-1)

    def transcription_dataset(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"a {self.name} model embeds audio and text; it does not transcribe")


def _tensor(out: Any) -> torch.Tensor:
    """`get_*_features` returns a tensor, or (transformers 5) an output holding the pooled one."""
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output


class DualEncoder(ContrastiveFamily):
    name = "dual_encoder"
    model_types = (MODEL_TYPE,)
    model_class = "DualEncoderModel"
    audio_encoder_prefix = "audio_model"
    text_prefix = "text_model.encoder"
    default_targets = ("query", "key", "value", "conv1", "conv2")
    quant_skip_modules = ("audio_model", "audio_projection", "text_projection")
    last_layers = (
        "audio_model.conv_block4.bn2",
        "text_model.encoder.layer.5",
        "audio_projection",
        "text_projection",
    )
    """About 9 % of the parameters: the text tower's last layer (order words such as "then" and
    "after" must change the caption's embedding), the audio tower's last normalisation, both
    projections. The CNN's convolutions stay frozen, so training never backpropagates through
    the sound tower (the costly half on a CPU)."""

    def model_cls(self) -> type[PreTrainedModel]:
        return DualEncoderModel

    def load_processor(self, path: str) -> DualEncoderProcessor:
        return DualEncoderProcessor.from_pretrained(path)

    def sampling_rate(self, processor: Any) -> int:
        return int(processor.sampling_rate)

    def audio_inputs(self, processor: Any, audios: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return processor.audio(audios)

    def text_inputs(self, processor: Any, texts: list[str]) -> dict[str, torch.Tensor]:
        return processor.text(texts)

    def logit_scale(self, model: nn.Module) -> torch.Tensor:
        return unwrapped(model).logit_scale.exp()

    def last_layer_names(self, model: nn.Module) -> tuple[str, ...]:
        """The last text layer is the deepest the config has (tiny test towers have fewer)."""
        depth = unwrapped(model).text_model.config.num_hidden_layers
        return tuple(
            f"text_model.encoder.layer.{depth - 1}" if n.startswith("text_model") else n
            for n in self.last_layers
        )


class Clap(ContrastiveFamily):
    name = "clap"
    model_types = ("clap",)
    model_class = "ClapModel"
    audio_encoder_prefix = "audio_model"
    text_prefix = "text_model.encoder"
    default_targets = ("query", "key", "value")
    quant_skip_modules = ("audio_model", "audio_projection", "text_projection")
    last_layers = ("audio_projection", "text_projection")

    def load_processor(self, path: str) -> Any:
        from transformers import ClapProcessor

        return ClapProcessor.from_pretrained(path)

    def sampling_rate(self, processor: Any) -> int:
        return int(processor.feature_extractor.sampling_rate)

    def audio_inputs(self, processor: Any, audios: list[np.ndarray]) -> dict[str, torch.Tensor]:
        fe = processor.feature_extractor
        out = fe(audios, sampling_rate=fe.sampling_rate, truncation="rand_trunc",
                 padding="repeatpad", return_tensors="pt")  # fmt: skip
        return {"input_features": out["input_features"]}

    def text_inputs(self, processor: Any, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def logit_scale(self, model: nn.Module) -> torch.Tensor:
        return unwrapped(model).logit_scale_a.exp()

    def last_layer_names(self, model: nn.Module) -> tuple[str, ...]:
        core = unwrapped(model)
        audio_layers = core.config.audio_config.depths
        text_depth = core.config.text_config.num_hidden_layers
        return (
            f"audio_model.audio_encoder.layers.{len(audio_layers) - 1}",
            f"text_model.encoder.layer.{text_depth - 1}",
            *self.last_layers,
        )
