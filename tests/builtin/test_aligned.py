"""`builtin:qwen2-audio-smollm2-aligned`: shipped weights with a checksum, merged into the
assembled model on first use, and a model that transcribes speech it never heard."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

from audiolora.builtin.aligned import (
    ADAPTER_FILE,
    aligned_model_path,
    ship_alignment,
    shipped_alignment,
)
from audiolora.data.manifest import read_manifest
from audiolora.evaluation.metrics import transcription_metrics
from audiolora.models.families import family_for
from audiolora.models.lalm import STT_INSTRUCTION, SpeechPromptDataset

NAME = "qwen2-audio-smollm2-aligned"


def test_shipped_weights_match_their_recorded_checksum_and_command() -> None:
    folder, provenance = shipped_alignment(NAME)
    assert (folder / "adapter_config.json").is_file()
    assert provenance["command"].startswith("audiolora models align")
    assert provenance["recipe"]["loop"]["seed"] == 0


def test_tampered_or_missing_weights_are_refused(tmp_path: Path) -> None:
    folder, _ = shipped_alignment(NAME)
    shutil.copytree(folder, tmp_path / NAME)
    with open(tmp_path / NAME / ADAPTER_FILE, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(ValueError, match="checksum"):
        shipped_alignment(NAME, tmp_path)
    with pytest.raises(FileNotFoundError, match="models align"):
        shipped_alignment(NAME, tmp_path / "empty")


def test_ship_alignment_records_the_checksum(tmp_path: Path) -> None:
    folder, provenance = shipped_alignment(NAME)
    run = tmp_path / "run"
    shutil.copytree(folder, run / "adapter")
    ship_alignment(run, "mine", {"command": "audiolora models align"}, tmp_path / "w")
    assert shipped_alignment("mine", tmp_path / "w")[1]["sha256"] == provenance["sha256"]


def test_aligned_model_transcribes_unheard_speech(cache_root: Path, speech_dataset: Path) -> None:
    path = aligned_model_path(NAME, cache_dir=cache_root)
    weights = path / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert aligned_model_path(NAME, cache_dir=cache_root) == path  # cached, not rebuilt
    assert weights.stat().st_mtime_ns == mtime

    model = Qwen2AudioForConditionalGeneration.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    family = family_for(model.config, "auto")
    rows = read_manifest(speech_dataset / "eval.jsonl").rows
    dataset = SpeechPromptDataset(family, rows, processor, 16000, STT_INSTRUCTION)
    hyps, _, _ = family.transcribe(
        model,
        processor,
        dataset,
        batch_size=6,
        num_beams=1,
        max_new_tokens=40,
        desc="aligned",
        progress=False,
    )
    wer = transcription_metrics(hyps, [r.text for r in rows])["wer"]
    assert wer < 0.35, list(zip(hyps, [r.text for r in rows], strict=True))
