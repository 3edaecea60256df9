"""The offline SLU dataset: text and speech manifests a user trains and scores SLU models on."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiolora.builtin.synth import speech
from audiolora.builtin.synth.slu import MANIFESTS, SUMMARY, synth_slu_dataset
from audiolora.cli import app
from tests.conftest import missing_setup, require_tts


@pytest.fixture
def espeak() -> None:
    """Skip without espeak-ng on a developer's machine; fail under CI=true (a broken setup)."""
    if shutil.which("espeak-ng") is None:
        missing_setup("needs espeak-ng (apt-get install espeak-ng)")


needs_espeak = pytest.mark.usefixtures("espeak")
LABELS = ("text", "language", "scenario", "action", "entities")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def build(out: Path, seed: int = 0) -> dict:
    return synth_slu_dataset(
        out,
        train_utterances=12,
        eval_utterances=4,
        voices_per_utterance=2,
        languages=("en", "de"),
        seed=seed,
        progress=False,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    require_tts()
    out = tmp_path_factory.mktemp("slu") / "ds"
    return out, build(out)


@needs_espeak
def test_every_file_is_written_with_rows_of_both_languages(dataset: tuple[Path, dict]) -> None:
    out, summary = dataset
    assert json.loads((out / SUMMARY).read_text()) == summary
    counts = {"train_text": 12, "train_speech": 24, "eval": 4, "eval_text": 4}
    for name, file in MANIFESTS.items():
        rows = read_rows(out / file)
        assert len(rows) == counts[name] == summary["splits"][name]["rows"], name
        assert {r["language"] for r in rows} == {"en", "de"}, f"{file}: both languages"
        assert summary["counts"][name]["languages"] == {
            "en": counts[name] // 2,
            "de": counts[name] // 2,
        }
        for r in rows:
            assert isinstance(r["entities"], list) and r["scenario"] and r["action"]
            for entity in r["entities"]:
                assert f" {entity['value']} " in f" {r['text']} ", f"{file}: {r}"
            if name.endswith("text"):
                assert set(r) == {"id", *LABELS}, f"text rows carry no audio: {r}"
            else:
                assert set(r) == {"id", "audio", *LABELS, "speaker", "voice", "duration"}
                assert r["audio"] == f"audio/{'eval' if name == 'eval' else 'train'}/{r['id']}.wav"


@needs_espeak
def test_clips_are_16k_mono_and_german_rows_have_german_voices(
    dataset: tuple[Path, dict],
) -> None:
    out, _ = dataset
    for file in ("train_speech.jsonl", "eval.jsonl"):
        for r in read_rows(out / file):
            info = sf.info(str(out / r["audio"]))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert abs(info.duration - r["duration"]) < 0.01
            assert 0.5 < r["duration"] < 10, f"implausible length for {r['text']!r}"
            base = r["voice"].removeprefix("espeak-ng:").partition("+")[0]
            assert (base == "de") == (r["language"] == "de"), r
    wavs = {p.relative_to(out).as_posix() for p in out.glob("audio/*/*.wav")}
    listed = {r["audio"] for f in ("train_speech.jsonl", "eval.jsonl") for r in read_rows(out / f)}
    assert wavs == listed, "every WAV is listed and every listed WAV exists"


@needs_espeak
def test_eval_utterances_and_voices_are_held_out_of_train(dataset: tuple[Path, dict]) -> None:
    out, summary = dataset
    train = read_rows(out / "train_speech.jsonl")
    evals = read_rows(out / "eval.jsonl")
    assert not {r["text"] for r in train} & {r["text"] for r in evals}
    assert not {r["voice"] for r in train} & {r["voice"] for r in evals}
    assert not {r["speaker"] for r in train} & {r["speaker"] for r in evals}
    assert {r["voice"] for r in evals} <= set(summary["voices"]["held_out"])
    # Each training utterance is spoken by two different voices.
    by_utterance: dict[str, set[str]] = {}
    for r in train:
        by_utterance.setdefault(r["id"].rpartition("-v")[0], set()).add(r["voice"])
    assert all(len(voices) == 2 for voices in by_utterance.values())


@needs_espeak
def test_text_rows_mirror_speech_rows(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    for text_file, speech_file in (("train_text", "train_speech"), ("eval_text", "eval")):
        texts = {r["id"]: r for r in read_rows(out / MANIFESTS[text_file])}
        spoken = read_rows(out / MANIFESTS[speech_file])
        assert {r["id"].rpartition("-v")[0] for r in spoken} == set(texts)
        for r in spoken:
            text_row = texts[r["id"].rpartition("-v")[0]]
            assert {k: r[k] for k in LABELS} == {k: text_row[k] for k in LABELS}


@needs_espeak
def test_same_seed_same_dataset_and_a_rerun_replaces_it(
    dataset: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = dataset

    def recipe(root: Path) -> list[tuple]:
        return [
            (r["id"], r["text"], r.get("voice"))
            for file in MANIFESTS.values()
            for r in read_rows(root / file)
        ]

    again = tmp_path / "again"
    build(again)
    assert recipe(again) == recipe(out)
    build(again, seed=1)
    assert recipe(again) != recipe(out)
    synth_slu_dataset(again, train_utterances=2, eval_utterances=1, progress=False)
    assert len(list(again.glob("audio/*/*.wav"))) == 3, "a smaller rerun leaves no orphan clips"
    assert not list(tmp_path.glob("again.tmp-*")), "the build folder is renamed into place"


def test_a_folder_with_other_content_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no SLU dataset"):
        synth_slu_dataset(tmp_path, train_utterances=1, eval_utterances=1, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@needs_espeak
def test_engines_that_always_hang_fail_fast_and_keep_the_old_dataset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    synth_slu_dataset(out, train_utterances=1, eval_utterances=1, progress=False)
    before = read_rows(out / "train_text.jsonl")
    monkeypatch.setattr(speech, "_engine_command", lambda attempt, text, wav: ["sleep", "5"])
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="no clip could be synthesized.*timed out"):
        synth_slu_dataset(out, train_utterances=2, eval_utterances=1, timeout_s=0.2, seed=5)
    assert time.monotonic() - started < 4, "a hung engine call must not stall the run"
    assert read_rows(out / "train_text.jsonl") == before, "a failed rebuild keeps the old one"
    assert not list(tmp_path.glob("ds.tmp-*"))


def test_bad_arguments_name_the_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"choose from \['en', 'de'\]"):
        synth_slu_dataset(tmp_path / "x", languages=("en", "fr"), progress=False)
    with pytest.raises(ValueError, match="voices_per_utterance must be >= 1"):
        synth_slu_dataset(tmp_path / "x", voices_per_utterance=0, progress=False)


runner = CliRunner()


def test_cli_help_lists_the_options() -> None:
    result = runner.invoke(app, ["data", "synth", "slu", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--train", "--eval", "--voices-per-utterance", "--languages", "--seed"):
        assert option in result.output


@needs_espeak
def test_cli_builds_a_two_language_dataset(tmp_path: Path) -> None:
    out = tmp_path / "slu"
    args = ["data", "synth", "slu", str(out), "--train", "4", "--eval", "2", "--languages", "en,de"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert '"kind": "slu"' in result.output and str(out / SUMMARY) in result.output
    assert {r["language"] for r in read_rows(out / "train_speech.jsonl")} == {"en", "de"}

    result = runner.invoke(app, ["data", "synth", "slu", str(out), "--languages", "en,xx"])
    assert result.exit_code == 2 and "choose from" in result.output
