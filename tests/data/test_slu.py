"""SLU data: the manifest check reports every bad row at once, and the public corpora convert."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from audiolora.data.slu import (
    convert_to_manifest,
    parse_bracket_annotation,
    read_slu_manifest,
    read_slurp,
    read_speech_massive,
    write_slu_manifest,
)


def write_tone(path: Path, seconds: float = 1.0, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), sr)
    return path


def write_lines(path: Path, lines: list[Any]) -> Path:
    """Each item is a dict (written as JSON), a str (written as is) or bytes (written raw)."""
    out = bytearray()
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line, ensure_ascii=False)
        out += line if isinstance(line, bytes) else line.encode("utf-8")
        out += b"\n"
    path.write_bytes(bytes(out))
    return path


def row(**overrides: Any) -> dict[str, Any]:
    """A good text-only row; keyword arguments replace fields (None-valued ones stay as null)."""
    base: dict[str, Any] = {
        "id": "en-0001",
        "text": "wake me up at five am",
        "language": "en",
        "scenario": "alarm",
        "action": "set",
        "entities": [{"type": "time", "value": "five am"}],
    }
    base.update(overrides)
    return base


# --- bracket annotations --------------------------------------------------------------------------


def test_bracket_annotation_gives_text_and_entities_in_order() -> None:
    text, entities = parse_bracket_annotation("wake me up at [time : five am] [date : this week]")
    assert text == "wake me up at five am this week"
    assert entities == [("time", "five am"), ("date", "this week")]


def test_bracket_annotation_tolerates_spacing_and_colons_in_values() -> None:
    text, entities = parse_bracket_annotation("  set it for [time:10:30  am]  [date :today]  ")
    assert text == "set it for 10:30 am today"
    assert entities == [("time", "10:30 am"), ("date", "today")]
    assert parse_bracket_annotation("no entities here") == ("no entities here", [])


def test_bracket_annotation_adds_no_spaces_for_unspaced_scripts() -> None:
    text, entities = parse_bracket_annotation("[date : 明天]早上叫醒我")
    assert text == "明天早上叫醒我"
    assert entities == [("date", "明天")]


@pytest.mark.parametrize(
    ("annotated", "message"),
    [
        ("wake me [time : five am", "'\\[' at position 8 is never closed"),
        ("wake me time : five am]", "'\\]' at position 22 has no matching"),
        ("a [time : [five] am]", "'\\[' at position 10 is inside another bracket"),
        ("a [five am] b", "bracket at position 2 must read"),
        ("a [time : ] b", "bracket at position 2 must read"),
        ("a [ : five] b", "bracket at position 2 must read"),
    ],
)
def test_bad_brackets_name_the_position(annotated: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_bracket_annotation(annotated)


# --- the manifest check ---------------------------------------------------------------------------


def test_speech_and_text_only_rows_are_read(tmp_path: Path) -> None:
    write_tone(tmp_path / "audio" / "en-0001.wav")
    manifest = write_lines(
        tmp_path / "train.jsonl",
        [
            row(audio="audio/en-0001.wav", speaker="espeak:en-us+m3"),
            "",
            row(id="en-0002", audio=None),
            row(
                id="en-0003",
                text="what's the weather",
                scenario="weather",
                action="query",
                entities=[],
            ),
        ],
    )
    examples, problems = read_slu_manifest(manifest)
    assert problems == []
    speech, null_audio, no_audio = examples
    assert speech.audio == (tmp_path / "audio" / "en-0001.wav").resolve()
    assert speech.has_audio and speech.speaker == "espeak:en-us+m3"
    assert speech.entities == (("time", "five am"),)
    assert speech.intent == "alarm_set" and speech.line == 1
    assert not null_audio.has_audio and null_audio.line == 3
    assert no_audio.audio is None and no_audio.intent == "weather_query"


def test_every_bad_row_is_reported_at_once_with_line_and_field(tmp_path: Path) -> None:
    write_tone(tmp_path / "audio" / "ok.wav", seconds=1.0)
    write_tone(tmp_path / "audio" / "long.wav", seconds=3.0)
    lines: list[Any] = [
        row(id="ok-1", audio="audio/ok.wav"),  # 1: good
        '{"id": "x", "text": ',  # 2
        b'{"id": "y", "text": "caf\xe9"}',  # 3: Latin-1 byte
        "[1, 2]",  # 4
        row(id="r5", text=None),  # 5
        {k: v for k, v in row(id="r6").items() if k != "action"} | {"scenario": 7},  # 6
        row(id="r7", entities={"time": "five am"}),  # 7
        row(id="r8", entities=[{"type": "time"}, "five am"]),  # 8
        row(id="r9", entities=[{"type": "time", "value": "six pm"}]),  # 9
        row(id="r10", audio="audio/missing.wav"),  # 10
        row(id="r11", audio="audio/long.wav"),  # 11
        row(id="r12", audio=3),  # 12
        row(id="ok-1"),  # 13: duplicate id
        row(id="ok-14"),  # 14: good text-only row
    ]
    manifest = write_lines(tmp_path / "m.jsonl", lines)
    examples, problems = read_slu_manifest(manifest, max_duration_s=2.0)

    assert [e.id for e in examples] == ["ok-1", "ok-14"]
    found = {(p.line, p.field) for p in problems}
    assert found == {
        (2, "<line>"),
        (3, "<line>"),
        (4, "<line>"),
        (5, "text"),
        (6, "scenario"),
        (6, "action"),
        (7, "entities"),
        (8, "entities[0].value"),
        (8, "entities[1]"),
        (9, "entities[0].value"),
        (10, "audio"),
        (11, "audio"),
        (12, "audio"),
        (13, "id"),
    }
    reasons = {(p.line, p.field): p.reason for p in problems}
    assert reasons[(2, "<line>")].startswith("bad JSON")
    assert "not valid UTF-8 (byte 0xe9" in reasons[(3, "<line>")]
    assert reasons[(4, "<line>")] == "expected a JSON object, got list"
    assert reasons[(5, "text")] == "must be a string, got null"
    assert reasons[(6, "scenario")] == "must be a string, got int"
    assert reasons[(6, "action")] == "missing required field"
    assert reasons[(9, "entities[0].value")] == (
        "'six pm' does not occur in the text 'wake me up at five am'"
    )
    assert reasons[(10, "audio")] == "file not found (audio/missing.wav)"
    assert reasons[(11, "audio")].startswith("too long: 3.0 s > max 2.0 s")
    assert reasons[(13, "id")] == "duplicate of line 1"
    assert str(problems[0]) == f"{manifest}:2: field '<line>': {reasons[(2, '<line>')]}"


def test_entity_values_are_found_whatever_their_case(tmp_path: Path) -> None:
    manifest = write_lines(
        tmp_path / "m.jsonl",
        [row(text="Wake me up at Five  AM", entities=[{"type": "time", "value": "five am"}])],
    )
    examples, problems = read_slu_manifest(manifest)
    assert problems == [] and examples[0].entities == (("time", "five am"),)


def test_audio_files_are_not_opened_when_not_asked(tmp_path: Path) -> None:
    manifest = write_lines(tmp_path / "m.jsonl", [row(audio="audio/later.wav")])
    examples, problems = read_slu_manifest(manifest, check_audio=False)
    assert problems == [] and examples[0].audio == (tmp_path / "audio" / "later.wav").resolve()


def test_missing_and_empty_manifests_are_reported(tmp_path: Path) -> None:
    examples, problems = read_slu_manifest(tmp_path / "nope.jsonl")
    assert examples == [] and [p.reason for p in problems] == ["manifest not found"]
    empty = write_lines(tmp_path / "empty.jsonl", ["", "  "])
    _, problems = read_slu_manifest(empty)
    assert [(p.line, p.reason) for p in problems] == [(0, "no rows (empty manifest)")]


# --- SLURP ----------------------------------------------------------------------------------------

SLURP_ROWS = [
    {
        "slurp_id": 4318,
        "sentence": "wake me up at ten",
        "sentence_annotation": "wake me up at [time : ten]",
        "intent": "alarm_set",
        "action": "set",
        "tokens": [
            {"surface": w, "id": k, "lemma": w, "pos": "NN"}
            for k, w in enumerate(["wake", "me", "up", "at", "ten"])
        ],
        "scenario": "alarm",
        "recordings": [
            {"file": "audio-1501756826.flac", "wer": 0.0, "ent_wer": 0.0, "status": "correct"},
            {
                "file": "audio--1504194842-headset.flac",
                "wer": 0.2,
                "ent_wer": 0.0,
                "status": "correct",
            },
        ],
        "entities": [{"span": [4], "type": "time"}],
    },
    {
        "slurp_id": 16421,
        "sentence": "how many unread emails do i have",
        "sentence_annotation": "how many unread emails do i have",
        "intent": "email_query",
        "action": "query",
        "tokens": [],
        "scenario": "email",
        "recordings": [
            {
                "file": "audio-1499695168-headset.flac",
                "wer": 0.0,
                "ent_wer": None,
                "status": "correct",
            },
        ],
        "entities": [],
    },
]


def test_slurp_gives_one_row_per_recording(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "train.jsonl", SLURP_ROWS)
    rows = read_slurp(source, audio_dir="slurp_real")
    assert [r["id"] for r in rows] == [
        "slurp-4318-audio-1501756826",
        "slurp-4318-audio--1504194842-headset",
        "slurp-16421-audio-1499695168-headset",
    ]
    assert rows[0] == {
        "id": "slurp-4318-audio-1501756826",
        "audio": "slurp_real/audio-1501756826.flac",
        "text": "wake me up at ten",
        "language": "en",
        "scenario": "alarm",
        "action": "set",
        "entities": [{"type": "time", "value": "ten"}],
    }


def test_slurp_without_audio_gives_text_only_rows(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "train.jsonl", SLURP_ROWS)
    rows = read_slurp(source)
    assert [r["id"] for r in rows] == ["slurp-4318", "slurp-16421"]
    assert all("audio" not in r for r in rows)
    assert rows[1]["entities"] == [] and rows[1]["scenario"] == "email"


def test_slurp_row_with_a_span_past_its_tokens_is_named(tmp_path: Path) -> None:
    bad = dict(SLURP_ROWS[0], entities=[{"span": [9], "type": "time"}])
    source = write_lines(tmp_path / "train.jsonl", [bad])
    with pytest.raises(ValueError, match="slurp_id 4318: ValueError: entity .* spans tokens"):
        read_slurp(source)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recordings", None),
        ("recordings", [{"wer": 0.0}]),
        ("recordings", ["a.flac"]),
        ("tokens", ["wake"]),
    ],  # fmt: skip
)
def test_slurp_rows_of_the_wrong_shape_are_named_not_a_crash(
    tmp_path: Path, field: str, value: object
) -> None:
    bad = dict(SLURP_ROWS[0], **{field: value})
    source = write_lines(tmp_path / "train.jsonl", [bad])
    if field == "recordings" and value is None:  # no recordings: a text-only sentence
        assert read_slurp(source, audio_dir="audio") == []
        return
    with pytest.raises(ValueError, match="slurp_id 4318: "):
        read_slurp(source, audio_dir="audio")


def test_slurp_entities_are_read_as_the_reference_scorer_reads_them(tmp_path: Path) -> None:
    """The reference joins the span's token surfaces with spaces and lower-cases them: the
    bracketed annotation's "Jessica's" is gold "jessica 's", and the row still passes the
    manifest check although that spelling is not in the text."""
    words = ["call", "Jessica", "'s", "phone"]
    row = dict(
        SLURP_ROWS[0],
        slurp_id=7,
        sentence="call Jessica's phone",
        sentence_annotation="call [person : Jessica's] phone",
        tokens=[{"surface": w, "id": k} for k, w in enumerate(words)],
        entities=[{"span": [1, 2], "type": "person"}],
        recordings=[{"file": "audio-7.flac"}],
    )
    rows = read_slurp(write_lines(tmp_path / "train.jsonl", [row]))
    assert rows[0]["entities"] == [{"type": "person", "value": "jessica 's"}]
    out = tmp_path / "m.jsonl"
    write_slu_manifest(rows, out)
    examples, problems = read_slu_manifest(out)
    assert not problems and examples[0].entities == (("person", "jessica 's"),)


def test_converted_slurp_passes_the_manifest_check(tmp_path: Path) -> None:
    audio_dir = tmp_path / "slurp_real"
    for name in ("audio-1501756826", "audio--1504194842-headset", "audio-1499695168-headset"):
        write_tone(audio_dir / f"{name}.flac")
    source = write_lines(tmp_path / "train.jsonl", SLURP_ROWS)
    out = tmp_path / "manifests" / "slurp_train.jsonl"

    assert convert_to_manifest("slurp", source, out, audio_dir) == 3
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["audio"] == "../slurp_real/audio-1501756826.flac"
    examples, problems = read_slu_manifest(out)
    assert problems == []
    assert [e.audio for e in examples] == [
        (audio_dir / f).resolve()
        for f in (
            "audio-1501756826.flac",
            "audio--1504194842-headset.flac",
            "audio-1499695168-headset.flac",
        )
    ]


# --- Speech-MASSIVE / MASSIVE ---------------------------------------------------------------------

SPEECH_MASSIVE_ROW = {
    "id": "2205",
    "locale": "de-DE",
    "partition": "test",
    "scenario": 10,
    "scenario_str": "audio",
    "intent_idx": 46,
    "intent_str": "audio_volume_mute",
    "utt": "stille für zwei stunden",
    "annot_utt": "stille für [time : zwei stunden]",
    "worker_id": "8",
    "slot_method": {"slot": ["time"], "method": ["translation"]},
    "judgments": {"worker_id": ["27", "28", "8"]},
    "tokens": ["stille", "für", "zwei", "stunden"],
    "labels": ["Other", "Other", "time", "time"],
    "audio": {"bytes": None, "path": "c15b5445ba46918a8d678e7b59b80aa6.wav"},
    "path": "test/c15b5445ba46918a8d678e7b59b80aa6.wav",
    "is_transcript_reported": False,
    "is_validated": True,
    "speaker_id": "5f32d5f107d49607c3f6cf7a",
    "speaker_sex": "Female",
    "speaker_age": "40",
}

MASSIVE_TEXT_ROW = {
    "id": "1",
    "locale": "fr-FR",
    "partition": "train",
    "scenario": "iot",
    "intent": "iot_hue_lightchange",
    "utt": "mets la lumière en bleu",
    "annot_utt": "mets la lumière en [color_type : bleu]",
    "worker_id": "3",
}


def test_speech_massive_rows_keep_audio_speaker_and_language() -> None:
    (converted,) = read_speech_massive([SPEECH_MASSIVE_ROW], audio_dir="speech_massive/de-DE")
    assert converted == {
        "id": "massive-de-DE-2205-c15b5445ba46918a8d678e7b59b80aa6",
        "audio": "speech_massive/de-DE/test/c15b5445ba46918a8d678e7b59b80aa6.wav",
        "text": "stille für zwei stunden",
        "language": "de",
        "scenario": "audio",
        "action": "volume_mute",
        "entities": [{"type": "time", "value": "zwei stunden"}],
        "speaker": "5f32d5f107d49607c3f6cf7a",
    }


def test_massive_text_rows_split_intent_after_the_scenario() -> None:
    (converted,) = read_speech_massive([MASSIVE_TEXT_ROW], audio_dir="unused")
    assert converted["id"] == "massive-fr-FR-1" and "audio" not in converted
    assert (converted["scenario"], converted["action"]) == ("iot", "hue_lightchange")
    assert converted["language"] == "fr"
    assert converted["entities"] == [{"type": "color_type", "value": "bleu"}]
    (text_only,) = read_speech_massive([SPEECH_MASSIVE_ROW])
    assert "audio" not in text_only and text_only["id"] == "massive-de-DE-2205"


def test_massive_intent_that_does_not_extend_the_scenario_is_an_error() -> None:
    bad = dict(MASSIVE_TEXT_ROW, intent="alarm_set")
    with pytest.raises(ValueError, match="id 1.*'alarm_set' does not start with scenario 'iot'"):
        read_speech_massive([bad])


def test_massive_annotation_that_is_not_text_is_an_error() -> None:
    with pytest.raises(ValueError, match="id 1"):
        read_speech_massive([dict(MASSIVE_TEXT_ROW, annot_utt=42)])


def test_converted_speech_massive_round_trips_through_the_manifest(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "de.jsonl", [SPEECH_MASSIVE_ROW, MASSIVE_TEXT_ROW])
    out = tmp_path / "de_manifest.jsonl"
    write_tone(tmp_path / "sm" / "test" / "c15b5445ba46918a8d678e7b59b80aa6.wav")
    assert convert_to_manifest("speech-massive", source, out, tmp_path / "sm") == 2
    examples, problems = read_slu_manifest(out)
    assert problems == []
    assert examples[0].has_audio and examples[0].language == "de"
    assert examples[0].entities == (("time", "zwei stunden"),)
    assert not examples[1].has_audio and examples[1].text == "mets la lumière en bleu"


def test_manifest_writer_keeps_non_ascii_and_replaces_whole_files(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "m.jsonl"
    write_slu_manifest([row(text="réveille-moi à cinq heures", entities=[])], out)
    write_slu_manifest([row(id="a"), row(id="b")], out)
    assert [json.loads(line)["id"] for line in out.read_text("utf-8").splitlines()] == ["a", "b"]
    write_slu_manifest([row(text="réveille-moi", entities=[])], out)
    assert "réveille-moi" in out.read_text("utf-8")


def test_unknown_source_kind_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="source_kind"):
        convert_to_manifest("atis", tmp_path / "x", tmp_path / "y")  # type: ignore[arg-type]


def test_an_audio_path_with_a_nul_byte_is_a_row_to_fix_not_a_crash(tmp_path: Path) -> None:
    manifest = write_lines(tmp_path / "m.jsonl", [row(audio="audio/a\x00.wav")])
    examples, problems = read_slu_manifest(manifest)
    assert examples == []
    assert [(p.line, p.field) for p in problems] == [(1, "audio")]
    assert "NUL byte" in problems[0].reason
