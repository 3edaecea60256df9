"""The offline TTS speech dataset: what a user training a recognizer on it relies on."""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolora.builtin.synth import speech
from audiolora.builtin.synth.speech import available_engines, synth_speech_dataset
from audiolora.builtin.synth.text import normalize, sample_sentences

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)"
)
needs_both = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("flite")),
    reason="needs espeak-ng and flite (apt-get install espeak-ng flite)",
)


def read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("speech")
    summary = synth_speech_dataset(out, n_train=6, n_eval=4, seed=0, progress=False)
    return out, summary


def test_sentences_are_distinct_plain_words_of_everyday_length() -> None:
    sentences = sample_sentences(2000, random.Random(0))
    assert len(set(sentences)) == 2000, "templates should give thousands of distinct sentences"
    for s in sentences:
        assert re.fullmatch(r"[A-Z][A-Za-z' ]+[.?]", s), f"not plain words: {s!r}"
        assert 5 <= len(s.split()) <= 15, f"length outside 5-15 words: {s!r}"
    assert normalize("Turn left at the Bank.") == "turn left at the bank"


@needs_espeak
def test_manifests_list_every_clip_with_relative_paths(dataset: tuple[Path, dict]) -> None:
    out, summary = dataset
    assert json.loads((out / "dataset.json").read_text()) == summary
    for split, n in (("train", 6), ("eval", 4)):
        rows = read_manifest(out / f"{split}.jsonl")
        assert len(rows) == n == summary["splits"][split]["clips"]
        for i, row in enumerate(rows):
            assert row["audio"] == f"audio/{split}/{i:05d}.wav"  # relative to the manifest
            assert (out / row["audio"]).is_file()
            assert row["text"] and not re.search(r"\d", row["text"])
            assert row["engine"] in speech.ENGINES
            assert row["voice"].startswith(row["engine"] + ":")
            assert row["speaker"]


@needs_espeak
def test_clips_are_16k_mono_speech_of_the_stated_length(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    for split in ("train", "eval"):
        for row in read_manifest(out / f"{split}.jsonl"):
            info = sf.info(str(out / row["audio"]))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert abs(info.duration - row["duration"]) < 0.01
            assert 0.8 < row["duration"] < 10, f"implausible length for {row['text']!r}"
            audio, _ = sf.read(str(out / row["audio"]), dtype="float32")
            assert np.sqrt(np.mean(audio**2)) > 0.02, f"{row['audio']} is (nearly) silent"


@needs_espeak
def test_eval_sentences_and_voices_are_held_out_of_train(dataset: tuple[Path, dict]) -> None:
    out, summary = dataset
    train = read_manifest(out / "train.jsonl")
    evals = read_manifest(out / "eval.jsonl")
    assert not {normalize(r["text"]) for r in train} & {normalize(r["text"]) for r in evals}
    assert not {r["voice"] for r in train} & {r["voice"] for r in evals}
    assert not {r["speaker"] for r in train} & {r["speaker"] for r in evals}
    held_engines = {v.split(":")[0] for v in summary["held_out_voices"]}
    assert set(available_engines()) <= held_engines, "each engine should hold a voice out"


def test_held_out_from_keeps_another_sets_eval_split_unheard(
    dataset: tuple[Path, dict], tmp_path: Path
) -> None:
    out, summary = dataset
    other_texts = {r["text"] for r in read_manifest(out / "eval.jsonl")}
    reserved = set(summary["held_out_voices"])
    # Same seed: without held_out_from the first eval sentences would be the same ones.
    synth_speech_dataset(tmp_path, n_train=40, n_eval=4, seed=0, progress=False, held_out_from=out)
    train = read_manifest(tmp_path / "train.jsonl")
    evals = read_manifest(tmp_path / "eval.jsonl")
    assert not {r["text"] for r in train + evals} & other_texts
    assert not {r["voice"] for r in train} & reserved
    assert {r["voice"] for r in evals} <= reserved


@needs_espeak
def test_same_seed_gives_the_same_dataset(dataset: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = dataset

    def recipe(root: Path) -> list[tuple]:
        return [
            (r["text"], r["voice"], r["pitch"], r["rate"])
            for split in ("train", "eval")
            for r in read_manifest(root / f"{split}.jsonl")
        ]

    synth_speech_dataset(tmp_path / "again", n_train=6, n_eval=4, seed=0, progress=False)
    synth_speech_dataset(tmp_path / "other", n_train=6, n_eval=4, seed=1, progress=False)
    assert recipe(tmp_path / "again") == recipe(out)
    assert recipe(tmp_path / "other") != recipe(out)


@needs_espeak
def test_a_hanging_engine_call_times_out_and_another_voice_takes_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_command = speech._engine_command
    hung: set[str] = set()

    def first_call_hangs(attempt: speech.Attempt, text: str, wav: Path) -> list[str]:
        if text not in hung:  # each utterance is handled by one thread, so this is race-free
            hung.add(text)
            return ["sleep", "5"]
        return real_command(attempt, text, wav)

    monkeypatch.setattr(speech, "_engine_command", first_call_hangs)
    started = time.monotonic()
    summary = synth_speech_dataset(
        tmp_path, n_train=3, n_eval=2, engines=("espeak-ng",), timeout_s=0.5, progress=False
    )
    assert time.monotonic() - started < 4.5, "a hung engine call must not stall the run"
    assert summary["failed_attempts"] == 5
    assert all("timed out after 0.5 s" in f["error"] for f in summary["failures"])
    assert summary["splits"]["train"]["clips"] == 3 and summary["splits"]["eval"]["clips"] == 2


@needs_espeak
def test_engines_that_always_hang_fail_fast_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(speech, "_engine_command", lambda attempt, text, wav: ["sleep", "5"])
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="no clip could be synthesized.*timed out"):
        synth_speech_dataset(tmp_path, n_train=2, n_eval=1, timeout_s=0.3, progress=False)
    assert time.monotonic() - started < 6
    assert json.loads((tmp_path / "failed.json").read_text())["failed_attempts"] > 0
    assert not (tmp_path / "dataset.json").exists(), "a failed build is not a dataset"


@needs_espeak
def test_a_single_engine_still_holds_voices_out(tmp_path: Path) -> None:
    summary = synth_speech_dataset(
        tmp_path, n_train=4, n_eval=2, engines=("espeak-ng",), progress=False
    )
    assert summary["engines"] == ["espeak-ng"]
    train, evals = (set(summary["splits"][s]["voices"]) for s in ("train", "eval"))
    assert evals and not evals & train


@needs_both
def test_flite_kal_and_kal16_count_as_one_speaker() -> None:
    assert speech.Voice("flite", "kal16").speaker == speech.Voice("flite", "kal").speaker


def test_missing_engines_name_the_apt_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    assert available_engines() == []
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng flite"):
        synth_speech_dataset(tmp_path, n_train=1, n_eval=1, progress=False)


def test_an_interrupted_rebuild_leaves_no_summary_vouching_for_the_folder(
    dataset: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C half-way through rebuilding a finished dataset: its old summary is gone, so the
    builtin sources build it again instead of trusting manifests that no longer match."""
    out = tmp_path / "copy"
    shutil.copytree(dataset[0], out)
    assert (out / speech.SUMMARY).exists()
    real = speech._synthesize
    calls = []

    def interrupted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(speech, "_synthesize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synth_speech_dataset(out, n_train=6, n_eval=4, seed=1, progress=False)
    assert not (out / speech.SUMMARY).exists()
    assert not list(out.glob(".*.tmp-*")), "no temporary file left behind"
