"""The three inputs of `audiolora review`, their errors, and --sample / --sort."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audiolora.cli import EXIT_BAD_INPUT, app
from audiolora.review.sources import ReviewError, load_source, select
from tests.review.helpers import write_manifest, write_predictions


def test_a_session_manifest_is_shown_as_annotated(manifest: Path) -> None:
    source = load_source(manifest)
    assert source.kind == "annotated"
    assert source.default_output == manifest.parent / "sessions.verified.jsonl"
    first = source.sessions[0]
    assert first.audio == (manifest.parent / "audio/s0.wav").resolve()
    assert first.duration == pytest.approx(12.0)
    assert first.annotated["P2_start"] == 4.0
    assert first.annotated["P3_end"] is None  # null: the phase is absent
    assert first.candidate("annotated", "P3_end") == (True, None)


def test_a_label_file_is_shown_as_proposed(tmp_path: Path) -> None:
    def proposed(i: int) -> dict:
        entry = {"time_s": 4.5, "evidence": "I remember", "confidence": 0.8}
        return {"proposed": {"P2_start": entry, "P3_end": {"time_s": None}}}

    source = load_source(write_manifest(tmp_path, row=proposed))
    assert source.kind == "proposed"
    session = source.sessions[0]
    assert session.candidate("proposed", "P2_start") == (True, 4.5)
    assert session.candidate("proposed", "P1_start") == (True, 1.0)  # falls back to annotated
    assert session.disagreement() == pytest.approx(0.5)


def test_a_run_folder_is_shown_as_predicted(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data")
    run = tmp_path / "run"
    write_predictions(run, manifest, lambda i: 2.0 * i)
    source = load_source(run)
    assert source.kind == "predicted"
    assert source.manifest == manifest.resolve()
    assert source.default_output == run / "verified-sessions.jsonl"
    assert [s.predicted["P2_start"] for s in source.sessions] == [4.0, 6.1, 8.2]
    assert [s.disagreement() for s in source.sessions] == pytest.approx([0.0, 2.0, 4.0])


def test_several_predictions_take_the_newest_or_the_one_named(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data")
    run = tmp_path / "run"
    old = write_predictions(run, manifest, lambda i: 1.0)
    other = write_manifest(tmp_path / "other", n=2).rename(tmp_path / "other/eval.jsonl")
    new = write_predictions(run, other, lambda i: 3.0)
    os.utime(old, (1, 1))
    source = load_source(run)
    assert source.manifest == other.resolve()
    assert new.name in source.note and old.name in source.note and "--predictions" in source.note
    assert load_source(run, old).sessions[0].predicted["P1_start"] == 2.0


@pytest.mark.parametrize(
    ("row", "said"),
    [
        ({"audio": None}, ":2: field 'audio': must be a path"),
        ({"audio": "audio/missing.wav"}, ":2: field 'audio': file not found (audio/missing.wav)"),
        ({"boundaries": {"P1_start": "soon"}}, ":2: field 'boundaries.P1_start'"),
        ({"proposed": {"P1_start": 3}}, ":2: field 'proposed.P1_start'"),
        ({"transcript": "nope.json"}, ":2: field 'transcript': file not found"),
    ],
)
def test_bad_rows_are_named_by_file_line_and_field(tmp_path: Path, row: dict, said: str) -> None:
    path = write_manifest(tmp_path, row=lambda i: row if i == 1 else {})
    with pytest.raises(ReviewError) as e:
        load_source(path)
    assert f"{path}{said}" in str(e.value)


def test_a_run_folder_needs_its_predictions_and_their_manifest(tmp_path: Path) -> None:
    with pytest.raises(ReviewError, match="no sessions-\\*.json.*audiolora predict"):
        load_source(tmp_path)
    (tmp_path / "sessions-m.json").write_text(json.dumps({"sessions": []}))
    with pytest.raises(ReviewError, match="field 'manifest' missing.*rerun"):
        load_source(tmp_path)


def test_the_command_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["review", str(tmp_path / "nothing.jsonl")])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "nothing.jsonl: not found" in result.output
    manifest = write_manifest(tmp_path, row=lambda i: {"audio": ""} if i == 2 else {})
    result = CliRunner().invoke(app, ["review", str(manifest), "--port", "0"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "sessions.jsonl:3: field 'audio'" in result.output
    result = CliRunner().invoke(app, ["review", str(tmp_path), "--port", "0"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no sessions-*.json" in result.output


def test_sample_is_a_deterministic_share_of_at_least_one(tmp_path: Path) -> None:
    sessions = load_source(write_manifest(tmp_path, n=10)).sessions
    picked = select(sessions, sample=0.3, seed=1, sort="order")
    assert len(picked) == 3
    assert picked == select(sessions, sample=0.3, seed=1, sort="order")
    assert [s.line for s in picked] == sorted(s.line for s in picked)
    assert len(select(sessions, sample=0.01, seed=0, sort="order")) == 1
    with pytest.raises(ReviewError, match="--sample"):
        select(sessions, sample=0, seed=0, sort="order")
    with pytest.raises(ReviewError, match="--sort"):
        select(sessions, sample=None, seed=0, sort="worst")


def test_sort_puts_the_largest_disagreement_first(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data", n=4)
    write_predictions(tmp_path / "run", manifest, lambda i: [0.5, 3.0, -1.0, 0.0][i])
    sessions = load_source(tmp_path / "run").sessions
    ordered = select(sessions, sample=None, seed=0, sort="disagreement")
    assert [s.line for s in ordered] == [2, 3, 1, 4]


def test_predictions_that_no_longer_match_the_manifest_are_refused(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "data")
    predictions = write_predictions(tmp_path / "run", manifest, lambda i: 0.0)
    result = json.loads(predictions.read_text())
    result["sessions"][1]["line"] = 9
    predictions.write_text(json.dumps(result))
    with pytest.raises(ReviewError, match="session 2: no line 9 in .*rerun"):
        load_source(tmp_path / "run")
    result["sessions"][1]["line"] = 1
    predictions.write_text(json.dumps(result))
    with pytest.raises(ReviewError, match="session 2: audio .* is not line 1's .*changed since"):
        load_source(tmp_path / "run")
