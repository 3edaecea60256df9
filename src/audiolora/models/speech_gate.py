"""Speech-activity-conditioned LoRA (seed 001: "dynamic adapters conditioned on speech activity").

With `adapter.speech_gate`, the LoRA update of every audio-encoder module is scaled frame by
frame by the probability that the frame holds speech: y_t = W x_t + g_t * s * B A x_t, with g_t
from Silero VAD (`silero-vad`, MIT, runs offline on CPU) on the clip's waveform. Where nobody
speaks (silence, the 30 s padding Whisper's encoder always sees, background noise) the encoder
behaves as the base model; where someone speaks the adapter acts fully. g = 1 everywhere is
plain LoRA, g = 0 the base model.

Plumbing: the dataset computes each clip's gate (`speech_activity`) at the encoder's frame rate
and the collator stacks it as the batch's `speech_gate`; a pre-hook on the trained model takes
it out of the forward's arguments, and pre-hooks on the encoder's LoRA layers turn their
scaling into the per-frame tensor for that forward (PEFT multiplies the LoRA output by its
`scaling`, so a (batch, frames, 1) tensor broadcasts). Decoding sets it with `set_speech_gate`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from audiolora.precision import full_precision

VAD_RATE = 16000
VAD_CHUNK = 512
"""Silero VAD scores 512-sample chunks (32 ms) at 16 kHz."""
GATE_KEY = "speech_gate"


@lru_cache(maxsize=1)
def _vad() -> Any:
    try:
        from silero_vad import load_silero_vad
    except ImportError as e:
        raise RuntimeError("adapter.speech_gate needs Silero VAD: pip install silero-vad") from e
    return load_silero_vad()


def speech_activity(audio: np.ndarray, sr: int, frames: int, frame_s: float) -> np.ndarray:
    """Speech probability of each of `frames` encoder frames (`frame_s` apart; 0 past the end
    of the audio: padding is not speech)."""
    import soxr

    wave = audio if sr == VAD_RATE else soxr.resample(audio, sr, VAD_RATE)
    n_chunks = max(1, int(np.ceil(len(wave) / VAD_CHUNK)))
    padded = np.zeros(n_chunks * VAD_CHUNK, dtype=np.float32)
    padded[: len(wave)] = wave
    # The gate is data, the same in every precision: a bf16 autocast region (training.precision
    # auto/bf16, where the evaluation reads its clips) must not reach the VAD.
    with torch.no_grad(), full_precision():
        probs = _vad().audio_forward(torch.from_numpy(padded)[None], VAD_RATE)[0].numpy()
    _vad().reset_states()
    chunk = (np.arange(frames) * frame_s * VAD_RATE / VAD_CHUNK).astype(int)
    out = np.zeros(frames, dtype=np.float32)
    inside = chunk < len(probs)
    out[inside] = probs[chunk[inside]]
    return out


def install_speech_gate(model: nn.Module, encoder_prefix: str) -> list[RemovableHandle]:
    """Hooks on `model` (takes `speech_gate` out of its forward kwargs) and on every LoRA layer
    inside the audio encoder (scales its update per frame). Returns the handles."""
    state: dict[str, torch.Tensor | None] = {"gate": None}
    handles = []

    def take_gate(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        gate = kwargs.pop(GATE_KEY, None)
        if gate is not None:
            state["gate"] = gate
        return args, kwargs

    handles.append(model.register_forward_pre_hook(take_gate, with_kwargs=True))
    gated = 0
    for name, module in model.named_modules():
        if f"{encoder_prefix}." not in f"{name}." or not isinstance(
            getattr(module, "lora_A", None), nn.ModuleDict
        ):
            continue
        module._speech_gate_state = state  # type: ignore[attr-defined]
        handles.append(module.register_forward_pre_hook(_gate_scaling))
        handles.append(module.register_forward_hook(_restore_scaling))
        gated += 1
    if not gated:
        raise ValueError(
            f"adapter.speech_gate: no LoRA layer in the audio encoder ({encoder_prefix}); "
            "set adapter.train_audio_encoder=true"
        )
    return handles


def _gate_scaling(module: nn.Module, args: tuple) -> None:
    gate = module._speech_gate_state["gate"]  # type: ignore[attr-defined]
    if gate is None:
        return
    x = args[0]
    g = gate[:, : x.shape[1]].to(x.device, x.dtype).unsqueeze(-1)
    module._plain_scaling = dict(module.scaling)  # type: ignore[attr-defined]
    for adapter, s in module._plain_scaling.items():  # type: ignore[attr-defined]
        module.scaling[adapter] = s * g


def _restore_scaling(module: nn.Module, args: tuple, output: Any) -> None:
    plain = getattr(module, "_plain_scaling", None)
    if plain is not None:
        module.scaling.update(plain)
        module._plain_scaling = None  # type: ignore[attr-defined]


def set_speech_gate(model: nn.Module, gate: torch.Tensor | None) -> None:
    """The gate for the next forwards (decoding calls the model without the batch's kwargs)."""
    for module in model.modules():
        state = getattr(module, "_speech_gate_state", None)
        if state is not None:
            state["gate"] = gate
            return


def is_gated(model: nn.Module) -> bool:
    return any(hasattr(m, "_speech_gate_state") for m in model.modules())


def encoder_gate(audios: list[np.ndarray], sr: int, features: torch.Tensor) -> torch.Tensor:
    """Gates of a batch for a Whisper-style encoder: one per two mel frames (10 ms each)."""
    frames = features.shape[-1] // 2
    return torch.from_numpy(np.stack([speech_activity(a, sr, frames, 0.02) for a in audios]))
