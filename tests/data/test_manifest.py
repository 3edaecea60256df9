"""Manifest validation: every bad row is reported at once, with file, line, field and reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from audiolora.data.manifest import (
    TOO_DEEP,
    BadInputError,
    ManifestReport,
    Problem,
    check_manifests,
    read_manifest,
)


def write_sine(path: Path, seconds: float = 1.0, sr: int = 16000, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * sr)) / sr
    wave = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, sr)
    return path


def write_manifest(path: Path, lines: list[Any]) -> Path:
    """Each item is a dict (written as JSON), a str (written as is) or bytes (written raw)."""
    out = bytearray()
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        out += line if isinstance(line, bytes) else line.encode("utf-8")
        out += b"\n"
    path.write_bytes(bytes(out))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A folder with a good 1 s clip at audio/ok.wav, where manifests are written."""
    write_sine(tmp_path / "audio" / "ok.wav")
    return tmp_path


def only_problem(report: ManifestReport) -> Problem:
    assert len(report.problems) == 1, report.summary()
    return report.problems[0]


def check_one_row(corpus: Path, row: Any, **kw: Any) -> Problem:
    """Manifest of one good row then `row`; the bad row's single problem, on line 2."""
    manifest = write_manifest(corpus / "m.jsonl", [{"audio": "audio/ok.wav", "text": "hi"}, row])
    report = read_manifest(manifest, **kw)
    assert [r.line for r in report.rows] == [1]
    problem = only_problem(report)
    assert problem.line == 2
    return problem


def test_good_rows_are_resolved_relative_to_the_manifest(corpus: Path) -> None:
    write_sine(corpus / "audio" / "stereo44k.wav", seconds=2.0, sr=44100, channels=2)
    manifest = write_manifest(
        corpus / "train.jsonl",
        [
            {"audio": "audio/ok.wav", "text": "hello"},
            "",
            {"audio": "audio/stereo44k.wav", "text": "world", "offset": 0.5, "duration": 1.0},
            {"audio": "audio/stereo44k.wav", "text": "tail", "offset": 1.5, "labels": [1]},
        ],
    )
    report = read_manifest(manifest)
    assert report.problems == []
    assert report.total_lines == 4
    assert [r.line for r in report.rows] == [1, 3, 4]
    first, sliced, tail = report.rows
    assert first.audio == (corpus / "audio" / "ok.wav").resolve()
    assert first.audio.is_absolute()
    assert first.text == "hello"
    assert first.audio_seconds == pytest.approx(1.0)
    assert (sliced.offset, sliced.duration) == (0.5, 1.0)
    assert sliced.audio_seconds == pytest.approx(1.0)
    assert tail.audio_seconds == pytest.approx(0.5)
    assert tail.raw["labels"] == [1]


def test_header_only_check_gives_the_same_lengths(corpus: Path) -> None:
    manifest = write_manifest(
        corpus / "m.jsonl", [{"audio": "audio/ok.wav", "text": "a", "offset": 0.25}]
    )
    report = read_manifest(manifest, decode_audio=False)
    assert report.rows[0].audio_seconds == pytest.approx(0.75)


def test_missing_audio_file(corpus: Path) -> None:
    problem = check_one_row(corpus, {"audio": "audio/x.wav", "text": "hi"})
    assert problem.field == "audio"
    assert problem.reason == "file not found (audio/x.wav)"
    assert str(problem) == f"{corpus / 'm.jsonl'}:2: field 'audio': file not found (audio/x.wav)"


def test_random_bytes_named_wav(corpus: Path) -> None:
    (corpus / "audio" / "noise.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    problem = check_one_row(corpus, {"audio": "audio/noise.wav", "text": "hi"})
    assert problem.field == "audio"
    assert problem.reason.startswith("unreadable: ")
    assert problem.reason.endswith("(audio/noise.wav)")


def test_empty_wav(corpus: Path) -> None:
    sf.write(corpus / "audio" / "empty.wav", np.zeros(0), 16000)
    problem = check_one_row(corpus, {"audio": "audio/empty.wav", "text": "hi"})
    assert (problem.field, problem.reason) == ("audio", "empty (0 samples) (audio/empty.wav)")


def test_nan_samples_are_found_only_by_decoding(corpus: Path) -> None:
    data = np.zeros(1600, dtype=np.float32)
    data[100] = np.nan
    sf.write(corpus / "audio" / "nan.wav", data, 16000, subtype="FLOAT")
    problem = check_one_row(corpus, {"audio": "audio/nan.wav", "text": "hi"})
    assert problem.field == "audio"
    assert "NaN/inf" in problem.reason
    header_only = read_manifest(corpus / "m.jsonl", decode_audio=False)
    assert header_only.problems == []


def test_too_long_clip(corpus: Path) -> None:
    write_sine(corpus / "audio" / "long.wav", seconds=3.0)
    problem = check_one_row(corpus, {"audio": "audio/long.wav", "text": "hi"}, max_duration_s=2.0)
    assert problem.field == "audio"
    assert problem.reason == "too long: 3.0 s > max 2.0 s (audio/long.wav)"


def test_slicing_a_long_file_under_the_limit_is_fine(corpus: Path) -> None:
    write_sine(corpus / "audio" / "long.wav", seconds=3.0)
    manifest = write_manifest(
        corpus / "m.jsonl", [{"audio": "audio/long.wav", "text": "a", "offset": 1, "duration": 1.5}]
    )
    report = read_manifest(manifest, max_duration_s=2.0)
    assert report.problems == []
    assert report.rows[0].audio_seconds == pytest.approx(1.5)


def test_empty_text(corpus: Path) -> None:
    problem = check_one_row(corpus, {"audio": "audio/ok.wav", "text": "  \t"})
    assert (problem.field, problem.reason) == ("text", "empty or whitespace-only")


def test_text_that_is_not_a_string(corpus: Path) -> None:
    problem = check_one_row(corpus, {"audio": "audio/ok.wav", "text": 42})
    assert (problem.field, problem.reason) == ("text", "must be a string, got int")


def test_text_is_not_checked_when_the_task_does_not_need_it(corpus: Path) -> None:
    manifest = write_manifest(corpus / "m.jsonl", [{"audio": "audio/ok.wav", "caption": "a dog"}])
    report = read_manifest(manifest, required_fields=("audio", "caption"))
    assert report.problems == []
    assert report.rows[0].text is None


def test_non_utf8_line(corpus: Path) -> None:
    problem = check_one_row(corpus, b'{"audio": "audio/ok.wav", "text": "caf\xe9"}')
    assert problem.field == "<line>"
    assert problem.reason == "not valid UTF-8 (byte 0xe9 at byte 39)"


def test_bad_json(corpus: Path) -> None:
    problem = check_one_row(corpus, '{"audio": "audio/ok.wav", "text": "hi"')
    assert problem.field == "<line>"
    assert problem.reason.startswith("bad JSON: ")


def test_json_nested_deeper_than_the_reader_goes(corpus: Path) -> None:
    problem = check_one_row(corpus, "[" * 100_000 + "]" * 100_000)
    assert (problem.field, problem.reason) == ("<line>", TOO_DEEP)


def test_json_that_is_not_an_object(corpus: Path) -> None:
    problem = check_one_row(corpus, '["audio/ok.wav", "hi"]')
    assert (problem.field, problem.reason) == ("<line>", "expected a JSON object, got list")


def test_missing_required_field(corpus: Path) -> None:
    problem = check_one_row(corpus, {"audio": "audio/ok.wav"})
    assert (problem.field, problem.reason) == ("text", "missing required field")


def test_audio_that_is_not_a_string(corpus: Path) -> None:
    problem = check_one_row(corpus, {"audio": ["audio/ok.wav"], "text": "hi"})
    assert (problem.field, problem.reason) == ("audio", "must be a path string, got list")


def test_negative_offset(corpus: Path) -> None:
    problem = check_one_row(corpus, {"audio": "audio/ok.wav", "text": "hi", "offset": -0.5})
    assert problem.field == "offset"
    assert problem.reason == "must be a non-negative number of seconds, got -0.5"


def test_offset_that_is_not_a_number(corpus: Path) -> None:
    problem = check_one_row(corpus, {"audio": "audio/ok.wav", "text": "hi", "offset": "1.0"})
    assert problem.field == "offset"


def test_offset_beyond_any_float(corpus: Path) -> None:
    problem = check_one_row(corpus, {"audio": "audio/ok.wav", "text": "hi", "offset": 10**400})
    assert problem.field == "offset"


def test_offset_past_the_end(corpus: Path) -> None:
    problem = check_one_row(corpus, {"audio": "audio/ok.wav", "text": "hi", "offset": 12.0})
    assert problem.field == "offset"
    assert problem.reason == "offset 12.0 s is past the end (1.0 s) in audio/ok.wav"


def test_slice_running_past_the_end(corpus: Path) -> None:
    row = {"audio": "audio/ok.wav", "text": "hi", "offset": 0.5, "duration": 2}
    problem = check_one_row(corpus, row)
    assert problem.field == "duration"
    assert "runs past the end (1.0 s)" in problem.reason


def test_bad_offset_still_reports_a_missing_file(corpus: Path) -> None:
    row = {"audio": "gone.wav", "text": "a", "offset": -1}
    manifest = write_manifest(corpus / "m.jsonl", [row])
    fields = {p.field for p in read_manifest(manifest).problems}
    assert fields == {"offset", "audio"}


def test_wrong_rate_and_channel_count_are_not_problems(corpus: Path) -> None:
    write_sine(corpus / "audio" / "s.wav", sr=8000, channels=3)
    manifest = write_manifest(corpus / "m.jsonl", [{"audio": "audio/s.wav", "text": "a"}])
    assert read_manifest(manifest).problems == []


def test_missing_manifest(tmp_path: Path) -> None:
    report = read_manifest(tmp_path / "nope.jsonl")
    problem = only_problem(report)
    assert (problem.line, problem.field) == (0, "<file>")
    assert "not found" in problem.reason


def test_manifest_with_only_blank_lines_is_empty(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", ["", "   ", ""])
    problem = only_problem(read_manifest(manifest))
    assert (problem.line, problem.field) == (0, "<file>")
    assert problem.reason == "no rows (empty manifest)"


def test_every_bad_row_is_reported_with_its_line(corpus: Path) -> None:
    manifest = write_manifest(
        corpus / "train.jsonl",
        [
            {"audio": "audio/ok.wav", "text": "good"},  # 1
            {"audio": "audio/missing.wav", "text": "a"},  # 2
            "",  # 3: blank, skipped silently
            "not json",  # 4
            {"audio": "audio/ok.wav", "text": "good again"},  # 5
            {"text": ""},  # 6: two problems on one line
            b"\xff\xfe",  # 7
            {"audio": "audio/ok.wav", "text": "b", "offset": 5},  # 8
        ],
    )
    report = read_manifest(manifest)
    assert [r.line for r in report.rows] == [1, 5]
    assert [(p.line, p.field) for p in report.problems] == [
        (2, "audio"),
        (4, "<line>"),
        (6, "audio"),
        (6, "text"),
        (7, "<line>"),
        (8, "offset"),
    ]
    summary = report.summary().splitlines()
    assert summary[0] == f"{manifest}: 2 rows ok, 5 rejected"
    assert len(summary) == 1 + 6


def test_windows_line_endings_and_byte_order_mark(corpus: Path) -> None:
    manifest = corpus / "m.jsonl"
    row = json.dumps({"audio": "audio/ok.wav", "text": "hi"}).encode()
    manifest.write_bytes(b"\xef\xbb\xbf" + row + b"\r\n" + row + b"\r\n")
    report = read_manifest(manifest)
    assert report.problems == []
    assert [r.text for r in report.rows] == ["hi", "hi"]


def test_progress_bar_does_not_change_the_result(corpus: Path) -> None:
    manifest = write_manifest(corpus / "m.jsonl", [{"audio": "audio/ok.wav", "text": "hi"}])
    assert len(read_manifest(manifest, progress=True).rows) == 1


def bad_train_and_eval(corpus: Path) -> dict[str, Path]:
    train = write_manifest(
        corpus / "train.jsonl",
        [{"audio": "audio/ok.wav", "text": "good"}, {"audio": "audio/x.wav", "text": "bad"}],
    )
    eval_ = write_manifest(
        corpus / "eval.jsonl",
        [{"audio": "audio/ok.wav", "text": ""}, {"audio": "audio/ok.wav", "text": "fine"}],
    )
    return {"train": train, "eval": eval_}


def test_stop_raises_with_every_problem_of_every_manifest(corpus: Path) -> None:
    paths = bad_train_and_eval(corpus)
    with pytest.raises(BadInputError) as err:
        check_manifests(paths, on_bad_input="stop", rejected_path=None)
    message = str(err.value)
    assert f"{paths['train']}:2: field 'audio': file not found (audio/x.wav)" in message
    assert f"{paths['eval']}:1: field 'text': empty or whitespace-only" in message
    assert "--on-bad-input skip" in message
    assert len(err.value.reports) == 2


def test_skip_keeps_good_rows_and_writes_rejected(corpus: Path) -> None:
    paths = bad_train_and_eval(corpus)
    rejected = corpus / "run" / "rejected.jsonl"
    reports = check_manifests(paths, on_bad_input="skip", rejected_path=rejected)
    assert [r.text for r in reports["train"].rows] == ["good"]
    assert [r.text for r in reports["eval"].rows] == ["fine"]
    records = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert [(r["file"], r["line"], r["field"]) for r in records] == [
        (str(paths["train"]), 2, "audio"),
        (str(paths["eval"]), 1, "text"),
    ]
    assert records[0]["row"] == {"audio": "audio/x.wav", "text": "bad"}


def test_rejected_file_keeps_the_text_of_lines_that_did_not_parse(corpus: Path) -> None:
    manifest = write_manifest(
        corpus / "m.jsonl", [{"audio": "audio/ok.wav", "text": "a"}, "oops {", b"\xff"]
    )
    report = read_manifest(manifest)
    report.write_rejected(corpus / "rejected.jsonl")
    lines = (corpus / "rejected.jsonl").read_text().splitlines()
    rows = [json.loads(line)["row"] for line in lines]
    assert rows == ["oops {", "\\xff"]


def test_skip_still_stops_when_nothing_is_left(corpus: Path) -> None:
    manifest = write_manifest(corpus / "m.jsonl", [{"audio": "audio/x.wav", "text": "a"}])
    with pytest.raises(BadInputError, match="no usable rows"):
        check_manifests({"train": manifest}, on_bad_input="skip", rejected_path=None)


def test_clean_manifests_pass_both_modes(corpus: Path) -> None:
    manifest = write_manifest(corpus / "m.jsonl", [{"audio": "audio/ok.wav", "text": "a"}])
    for mode in ("stop", "skip"):
        reports = check_manifests({"train": manifest}, on_bad_input=mode, rejected_path=None)
        assert len(reports["train"].rows) == 1


@pytest.mark.parametrize(
    ("audio", "reason"),
    [("audio/a\x00b.wav", "NUL byte"), ("audio/loop.wav", "cannot be resolved")],
    ids=["nul-byte", "symlink-loop"],
)
def test_paths_the_system_cannot_take_are_rows_to_fix_not_crashes(
    corpus: Path, audio: str, reason: str
) -> None:
    (corpus / "audio" / "loop.wav").symlink_to(corpus / "audio" / "loop2.wav")
    (corpus / "audio" / "loop2.wav").symlink_to(corpus / "audio" / "loop.wav")
    problem = check_one_row(corpus, {"audio": audio, "text": "hi"})
    assert problem.field == "audio" and reason in problem.reason
    assert "\x00" not in str(problem), "shown escaped, not swallowed by the terminal"
