"""`task: slu` pieces: prompts for speech and text rows, the reproducible nested speech subset,
the language filter and the split layout the run sees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolora.config import ModelConfig, RunConfig
from audiolora.data.slu import SluExample
from audiolora.evaluation.slu_metrics import parse_slu_json
from audiolora.models.families import QWEN2_AUDIO
from audiolora.models.lalm import IGNORE_INDEX
from audiolora.models.loading import load_model
from audiolora.tasks.registry import get_task
from audiolora.tasks.slu import (
    SluConfig,
    SluDataset,
    select_languages,
    speech_subset,
    training_rows,
)

INSTRUCTION = "Extract JSON."


def example(i: int, language: str = "en", audio: Path | None = None) -> SluExample:
    return SluExample(
        id=f"{language}-{i:04d}",
        text=f"wake me up at {i} am",
        language=language,
        scenario="alarm",
        action="set",
        entities=(("time", f"{i} am"),),
        audio=audio,
        speaker=None,
        line=i + 1,
    )


@pytest.fixture(scope="module")
def processor(tiny_qwen2_audio_dir: Path):
    _, processor, _, _ = load_model(ModelConfig(name=str(tiny_qwen2_audio_dir)))
    return processor


def test_text_row_prompt_holds_the_utterance_and_no_audio(processor) -> None:
    item = SluDataset(QWEN2_AUDIO, [example(5)], processor, INSTRUCTION)[0]
    assert item["input_features"].shape[0] == 0
    assert int((item["input_ids"] == processor.audio_token_id).sum()) == 0
    prompt = processor.tokenizer.decode(item["input_ids"][item["labels"] == IGNORE_INDEX])
    assert f"{INSTRUCTION}\nUtterance: wake me up at 5 am" in prompt
    answer = processor.tokenizer.decode(item["labels"][item["labels"] != IGNORE_INDEX][:-1])
    parsed = parse_slu_json(answer)
    assert parsed is not None and parsed.intent == "alarm_set"
    assert parsed.entities == (("time", "5 am"),)


def test_speech_row_prompt_holds_audio_and_not_the_transcript(processor, tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)
    dataset = SluDataset(QWEN2_AUDIO, [example(5, audio=wav)], processor, INSTRUCTION)
    item = dataset[0]
    assert item["input_features"].shape == (1, 80, 3000)
    assert int((item["input_ids"] == processor.audio_token_id).sum()) > 0
    prompt = processor.tokenizer.decode(item["input_ids"])
    assert "Audio 1:" in prompt and "Utterance:" not in prompt
    assert "labels" not in dataset.prompts_only()[0]


def test_speech_fraction_is_reproducible_and_nested() -> None:
    pool = [example(i) for i in range(500)]
    small, mid, large = (speech_subset(pool, f, seed=7) for f in (0.02, 0.05, 0.10))
    assert [len(s) for s in (small, mid, large)] == [10, 25, 50]
    ids = [{r.id for r in s} for s in (small, mid, large)]
    assert ids[0] <= ids[1] <= ids[2]
    # Same rows whatever the manifest order; another seed draws other rows.
    assert {r.id for r in speech_subset(pool[::-1], 0.05, seed=7)} == ids[1]
    assert {r.id for r in speech_subset(pool, 0.05, seed=8)} != ids[1]
    assert speech_subset(pool, 0.0, seed=7) == []
    assert speech_subset(pool, 1.0, seed=7) == pool
    assert len(speech_subset(pool[:10], 0.01, seed=7)) == 1  # a non-zero share keeps a row


def test_language_filter_and_training_mix(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    speech = [example(i, "en", wav) for i in range(10)] + [example(i, "de", wav) for i in range(10)]
    text = [example(i, "en") for i in range(20, 24)] + [example(i, "de") for i in range(20, 22)]
    assert {r.language for r in select_languages(speech, ["de"])} == {"de"}
    assert select_languages(speech, None) == speech

    rows = training_rows(speech, text, SluConfig(speech_fraction=0.5, languages=["en"]))
    assert all(r.language == "en" for r in rows)
    assert sum(not r.has_audio for r in rows) == 4 and sum(r.has_audio for r in rows) == 5
    text_only = training_rows(speech, text, SluConfig(speech_fraction=0.0))
    assert len(text_only) == 6 and not any(r.has_audio for r in text_only)
    speech_only = training_rows(speech, text, SluConfig(use_text=False))
    assert len(speech_only) == 20 and all(r.has_audio for r in speech_only)


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def row(i: int, audio: str | None = None, **extra: object) -> dict:
    out: dict = {
        "id": f"u{i}",
        "text": f"wake me up at {i} am",
        "language": "en",
        "scenario": "alarm",
        "action": "set",
        "entities": [{"type": "time", "value": f"{i} am"}],
        **extra,
    }
    if audio is not None:
        out["audio"] = audio
    return out


def test_check_data_keeps_train_and_eval_splits_and_applies_the_policy(
    processor, tmp_path: Path
) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(8000, dtype=np.float32), 16000)
    speech = write_manifest(tmp_path / "speech.jsonl", [row(1, "a.wav"), row(2, "a.wav")])
    bad = row(4, entities=[{"type": "time", "value": "noon"}])  # value not in the text
    text = write_manifest(tmp_path / "text.jsonl", [row(3), bad])
    config = RunConfig.model_validate(
        {
            "task": "slu",
            "data": {"train": str(speech), "eval": str(speech), "on_bad_input": "skip"},
            "slu": {"text_train": str(text)},
        }
    )
    task = get_task("slu")
    reports = task.check_data(config, tmp_path)
    assert set(reports) == {"train", "eval"}
    assert [r.id for r in reports["train"].rows] == ["u1", "u2"]
    assert [r.id for r in reports["train"].text_rows] == ["u3"]
    assert len(reports["train"].problems) == 1
    rejected = (tmp_path / "rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 1 and "noon" in rejected[0]

    datasets = task.build_datasets(config, reports, processor, QWEN2_AUDIO)
    assert len(datasets["train"]) == 3 and len(datasets["eval"]) == 2
    as_text = config.model_copy(
        update={"slu": config.slu.model_copy(update={"eval_input": "text"})}
    )
    eval_rows = task.build_datasets(as_text, reports, processor, QWEN2_AUDIO)["eval"].rows
    assert not any(r.has_audio for r in eval_rows)


def test_cross_lingual_mix_takes_source_speech_target_text_and_a_little_target_speech(
    tmp_path: Path,
) -> None:
    wav = tmp_path / "a.wav"
    speech = [example(i, "en", wav) for i in range(40)] + [example(i, "de", wav) for i in range(40)]
    text = [example(i, "en") for i in range(40)] + [example(i, "de") for i in range(40)]
    cfg = SluConfig(
        text_languages=["de"],
        speech_fraction=0.0,
        speech_fraction_by_language={"en": 1.0, "de": 0.05},
    )
    rows = training_rows(speech, text, cfg)
    text_rows = [r for r in rows if not r.has_audio]
    speech_rows = [r for r in rows if r.has_audio]
    assert {r.language for r in text_rows} == {"de"} and len(text_rows) == 40
    assert sum(r.language == "en" for r in speech_rows) == 40
    assert sum(r.language == "de" for r in speech_rows) == 2
