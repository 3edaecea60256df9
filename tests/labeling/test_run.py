"""`label_sessions` against a loopback OpenAI-compatible endpoint: proposals at word times,
absent phases, answers that are not answer words, resume, and what a label file is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audiolora.cli import EXIT_BAD_INPUT, app
from audiolora.data.manifest import BadInputError
from audiolora.data.sessions import read_sessions
from audiolora.labeling.llm import EndpointLLM
from audiolora.labeling.prompt import PromptTemplate
from audiolora.labeling.run import label_sessions, label_sweep
from tests.labeling.conftest import TURNS, write_labelled_session


def run(manifest: Path, out: Path, endpoint, **options):  # noqa: ANN001, ANN201
    llm = EndpointLLM(endpoint.url, "stub", retries=0)
    return label_sessions(manifest, out, llm, PromptTemplate.load(), progress=False, **options)


def test_right_answers_give_every_boundary_at_its_word_time(
    labelled_sessions: Path, endpoint, tmp_path: Path
) -> None:
    result = run(labelled_sessions, tmp_path / "labels" / "l.jsonl", endpoint)
    assert result.sessions == 3 and not result.answer_problems
    assert result.metrics["mae_s"] == pytest.approx(0.0, abs=1e-6)
    assert result.metrics["missed"] == result.metrics["invented"] == 0
    rows = [json.loads(line) for line in result.output.read_text().splitlines()]
    whole, _, no_p1 = rows
    assert whole["proposed"]["P2_start"]["time_s"] == whole["boundaries"]["P2_start"]
    assert whole["proposed"]["P2_start"]["evidence"].startswith("client at")
    assert "evening" in whole["proposed"]["P2_start"]["evidence"]
    assert 0.9 < whole["proposed"]["P2_start"]["confidence"] <= 1
    assert no_p1["proposed"]["P1_start"]["time_s"] is None
    assert no_p1["proposal_errors"]["P1_start"] == "absent, agreed"
    # The label file is a session manifest from its own folder (paths moved), absent P1 and all.
    sessions, problems = read_sessions(result.output, window_s=1, boundaries=())
    assert not problems and len(sessions) == 3
    assert sessions[2].absent == {"P1_start", "P1_end"}


def test_an_answer_that_is_no_answer_word_is_named_and_the_rest_decides(
    labelled_sessions: Path, endpoint, tmp_path: Path
) -> None:
    confused = "Thank you for staying with it. What was that like today?"
    endpoint.wrong[confused] = "Sorry, I cannot help with that."
    result = run(labelled_sessions, tmp_path / "l.jsonl", endpoint)
    assert len(result.answer_problems) == 3  # one passage in each session
    first = result.answer_problems[0]
    assert "sessions.jsonl line 1" in first and "field transcript, passage 8 at 37.2 s" in first
    assert "'Sorry, I cannot help with that.'" in first
    assert result.metrics["mae_s"] == pytest.approx(0.0, abs=1e-6)


def test_an_interrupted_run_resumes_without_asking_again(
    labelled_sessions: Path, endpoint, tmp_path: Path
) -> None:
    out = tmp_path / "l.jsonl"
    run(labelled_sessions, out, endpoint)
    full = out.read_text().splitlines()
    asked_once = len(endpoint.asked)
    # As if killed while writing the second session: one whole line, half of the next.
    out.unlink()
    partial = out.with_name("l.jsonl.partial")
    partial.write_text(full[0] + "\n" + full[1][:40])
    endpoint.asked.clear()
    resumed = run(labelled_sessions, out, endpoint)
    assert out.read_text().splitlines() == full
    assert 0 < len(endpoint.asked) < asked_once  # session 1 was not asked again
    assert not partial.exists() and resumed.sessions == 3


def test_resuming_with_other_settings_is_refused(
    labelled_sessions: Path, endpoint, tmp_path: Path
) -> None:
    out = tmp_path / "l.jsonl"
    run(labelled_sessions, out, endpoint)
    line = out.read_text().splitlines()[0]
    out.unlink()
    out.with_name("l.jsonl.partial").write_text(line + "\n")
    with pytest.raises(ValueError, match="other settings"):
        run(labelled_sessions, out, endpoint, settings={"temperature": 0.7})


def test_bad_sessions_are_all_named_before_any_question(
    labelled_sessions: Path, endpoint, tmp_path: Path
) -> None:
    root = labelled_sessions.parent
    (root / "transcripts" / "untimed.json").write_text(json.dumps([{"word": "hello"}]))
    rows = labelled_sessions.read_text().splitlines()
    bad = json.loads(rows[0]) | {"transcript": "transcripts/untimed.json"}
    outside = json.loads(rows[1])
    outside["boundaries"]["P3_end"] = 999.0
    labelled_sessions.write_text("\n".join([json.dumps(bad), json.dumps(outside), rows[2]]) + "\n")
    with pytest.raises(BadInputError) as caught:
        run(labelled_sessions, tmp_path / "l.jsonl", endpoint)
    message = str(caught.value)
    assert "sessions.jsonl:1: field 'transcript': word 1: 'start' must be" in message
    assert "sessions.jsonl:2: field 'boundaries.P3_end': 999 s is outside" in message
    assert endpoint.asked == []


def test_cli_labels_through_an_endpoint_and_prints_the_score(
    labelled_sessions: Path, endpoint, tmp_path: Path
) -> None:
    out = tmp_path / "l.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "label",
            "sessions",
            str(labelled_sessions),
            "-o",
            str(out),
            "--endpoint",
            endpoint.url,
            "--llm",
            "stub",
            "--reference-from",
            str(labelled_sessions),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3 sessions labelled" in result.output and "MAE 0.00 s" in result.output
    # The input-blind reference: each boundary at its mean share of the recording.
    assert "reference, against the manifest's boundaries: MAE" in result.output
    assert (
        json.loads(out.with_suffix(".summary.json").read_text())["metrics"]["reference"]["mae_s"]
        > 0
    )
    missing = CliRunner().invoke(
        app,
        [
            "label",
            "sessions",
            str(tmp_path / "nope.jsonl"),
            "-o",
            str(out),
            "--endpoint",
            endpoint.url,
        ],
    )
    assert missing.exit_code == EXIT_BAD_INPUT and "manifest not found" in missing.output


def test_an_unreachable_endpoint_fails_with_its_address(
    labelled_sessions: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "label",
            "sessions",
            str(labelled_sessions),
            "-o",
            str(tmp_path / "l.jsonl"),
            "--endpoint",
            "http://127.0.0.1:9/v1",
        ],
    )
    assert result.exit_code == 1
    assert "127.0.0.1:9/v1/chat/completions" in result.output and "no answer" in result.output


def test_the_prompt_sweep_scores_every_variant_and_reruns_nothing_finished(
    labelled_sessions: Path, endpoint, tmp_path: Path
) -> None:
    examples_dir = tmp_path / "examples"
    row = write_labelled_session(examples_dir, "ex", TURNS)
    (examples_dir / "ex.jsonl").write_text(json.dumps(row) + "\n")
    terse = tmp_path / "terse.txt"
    terse.write_text(
        "Parts: orientation, memory, processing, other.\n{examples}\n"
        "Passage ({speaker}, {position} into the session): {text}\nOne word:"
    )

    def make_llm(temperature: float) -> EndpointLLM:
        return EndpointLLM(endpoint.url, "stub", temperature, retries=0)

    def sweep() -> list[dict]:
        return label_sweep(
            labelled_sessions,
            tmp_path / "sweep",
            make_llm,
            [None, terse],
            [0.0],
            [0, 1],
            examples_from=examples_dir / "ex.jsonl",
            progress=False,
        )

    rows = sweep()
    assert [r["variant"] for r in rows] == [
        "phases-t0-shots0",
        "phases-t0-shots1",
        "terse-t0-shots0",
        "terse-t0-shots1",
    ]
    assert all(r["mae_s"] == pytest.approx(0, abs=1e-6) for r in rows)
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text()) == rows
    asked = len(endpoint.asked)
    assert sweep() == rows and len(endpoint.asked) == asked
