"""The command line as a user drives it: help, train, eval, predict, data, models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audiolora.builtin.ct2_import import find_packaged_model
from audiolora.cli import app
from tests.conftest import require_tts

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["train"],
        ["eval"],
        ["predict"],
        ["data", "synth", "speech"],
        ["data", "synth", "sessions"],
        ["models", "assemble"],
        ["models", "align"],
        ["data", "check"],
        ["models", "import-ct2"],
        ["models", "list"],
        ["sweep"],
        ["data", "synth", "slu"],
        ["data", "convert"],
        ["label", "sessions"],
        ["label", "sweep"],
        ["review"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_python_dash_m_runs_the_command_line() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "audiolora", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: audiolora" in result.stdout and "train" in result.stdout


def test_bad_recipe_key_fails_before_work(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "--set", "training.epochz=2", "--output-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "training.epochz" in result.output and "epochs" in result.output
    assert not (tmp_path / "r").exists()


def test_unknown_recipe_name_lists_builtins() -> None:
    result = runner.invoke(app, ["train", "no-such-recipe"])
    assert result.exit_code != 0
    assert "whisper-tiny-en-lora" in result.output


@pytest.fixture(scope="module")
def trained_run(tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    args = ["train", "--output-dir", str(out)]
    for o in [
        f"model.name={tiny_random_whisper_dir}",
        f"data.train={speech_dataset / 'train.jsonl'}",
        f"data.eval={speech_dataset / 'eval.jsonl'}",
        "training.max_steps=2",
        "training.batch_size=4",
        "training.max_new_tokens=6",
        "training.eval_steps=2",
        "training.save_steps=2",
    ]:
        args += ["--set", o]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Held-out split" in result.output and "Peak memory" in result.output
    return out


def test_eval_json_on_a_manifest(trained_run: Path, speech_dataset: Path) -> None:
    result = runner.invoke(
        app, ["eval", str(trained_run), "--data", str(speech_dataset / "eval.jsonl"), "--json"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 6 and metrics["model"] == "adapted"
    assert {"wer", "cer", "bleu", "perplexity"} <= set(metrics)
    assert (trained_run / "eval-eval-adapted.json").exists()


def test_eval_base_matches_the_runs_base_block(trained_run: Path, speech_dataset: Path) -> None:
    result = runner.invoke(
        app,
        [
            "eval",
            str(trained_run),
            "--base",
            "--json",
            "--data",
            str(speech_dataset / "eval.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    base = json.loads(result.stdout)
    recorded = json.loads((trained_run / "metrics.json").read_text())["base"]
    assert base["wer"] == pytest.approx(recorded["wer"])
    assert base["perplexity"] == pytest.approx(recorded["perplexity"], rel=1e-4)


def test_eval_reports_bad_manifest(trained_run: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "nope.wav", "text": "x"}\n')
    result = runner.invoke(app, ["eval", str(trained_run), "--data", str(manifest)])
    assert result.exit_code == 2
    assert "m.jsonl:1: field 'audio'" in result.output


def test_predict_prints_one_line_per_file(trained_run: Path, speech_dataset: Path) -> None:
    wavs = sorted((speech_dataset / "audio" / "eval").glob("*.wav"))[:2]
    result = runner.invoke(app, ["predict", str(trained_run), *map(str, wavs)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(w) for w in wavs]
    # The printed text is what the run's model transcribes, file by file.
    from audiolora.inference import predict_files

    assert [line.partition("\t")[2] for line in lines] == predict_files(trained_run, wavs)


def test_eval_scores_clips_longer_than_the_training_limit(
    trained_run: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    """A 34 s clip is scored the way predict transcribes it (in 30 s pieces), not rejected."""
    import numpy as np
    import soundfile as sf

    from audiolora.data.audio import load_audio
    from audiolora.inference import predict_files

    rows = [json.loads(line) for line in (speech_dataset / "eval.jsonl").read_text().splitlines()]
    pieces = [load_audio(speech_dataset / r["audio"], 16000) for r in rows]
    audio = np.concatenate(pieces)
    while audio.size < 34 * 16000:
        audio = np.concatenate([audio, audio])
    audio = audio[: 34 * 16000]
    sf.write(tmp_path / "long.wav", audio, 16000)
    (tmp_path / "long.jsonl").write_text(json.dumps({"audio": "long.wav", "text": "long"}) + "\n")
    result = runner.invoke(
        app, ["eval", str(trained_run), "--json", "--data", str(tmp_path / "long.jsonl")]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 1 and metrics["rejected"] == 0
    written = json.loads((trained_run / "eval-long-adapted.json").read_text())
    assert (
        written["examples"][0]["hypothesis"]
        == predict_files(trained_run, [tmp_path / "long.wav"])[0]
    )


def test_data_check_exit_code(speech_dataset: Path, tmp_path: Path) -> None:
    ok = runner.invoke(app, ["data", "check", str(speech_dataset / "train.jsonl")])
    assert ok.exit_code == 0 and "12 rows ok" in ok.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "x.wav"}\n')
    result = runner.invoke(app, ["data", "check", str(bad)])
    assert result.exit_code == 2 and "bad.jsonl:1" in result.output, "as train refuses it"


def test_argument_mistakes_exit_2_with_a_message_not_a_traceback(
    speech_dataset: Path, tmp_path: Path
) -> None:
    manifest = str(speech_dataset / "train.jsonl")
    for command, says in [
        (["eval", str(tmp_path), "--data", manifest, "--on-bad-input", "skpi"], "stop"),
        (["data", "check", "--sessions", "--window-s", "0", manifest], "longer than 0"),
        (["models", "import-ct2", str(tmp_path / "nothing"), str(tmp_path / "o")], "not exist"),
        (["train", "--set", "training.epochs=[1", "--output-dir", str(tmp_path / "r")], "YAML"),
        (["train", str(tmp_path)], "is a folder"),
    ]:
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output, result.exception)
        assert says in result.output, (command, result.output)


def test_data_synth_speech(tmp_path: Path) -> None:
    import soxr  # noqa: F401  (a declared dependency: missing fails)

    require_tts()
    result = runner.invoke(
        app, ["data", "synth", "speech", str(tmp_path / "ds"), "--n-train", "3", "--n-eval", "2"]
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "ds" / "train.jsonl").read_text().splitlines()) == 3


def test_models_import_ct2(tmp_path: Path, cache_root: Path) -> None:
    src = find_packaged_model("whisper-tiny.en")
    result = runner.invoke(app, ["models", "import-ct2", str(src), str(tmp_path / "tiny")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny" / "model.safetensors").exists()


def test_data_check_sessions_reports_bad_boundaries(tmp_path: Path) -> None:
    import soxr  # noqa: F401  (a declared dependency: missing fails)

    require_tts()
    out = tmp_path / "sessions"
    made = runner.invoke(
        app,
        [
            "data",
            "synth",
            "sessions",
            str(out),
            "--n-sessions",
            "2",
            "--n-eval",
            "1",
            "--min-minutes",
            "0.75",
            "--max-minutes",
            "1.25",
        ],
    )
    assert made.exit_code == 0, made.output
    ok = runner.invoke(
        app, ["data", "check", "--sessions", "--window-s", "10", str(out / "train.jsonl")]
    )
    assert ok.exit_code == 0 and "1 rows ok, 0 rejected" in ok.output

    row = json.loads((out / "train.jsonl").read_text())
    row["boundaries"]["P2_start"] = row["boundaries"]["P1_end"] - 1.0  # starts before P1 ends
    bad = out / "bad.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    result = runner.invoke(app, ["data", "check", "--sessions", str(bad)])
    assert result.exit_code == 2
    assert "bad.jsonl:1: field 'boundaries" in result.output


def test_data_convert_slurp_then_check_slu(tmp_path: Path) -> None:
    row = {
        "slurp_id": 7,
        "sentence": "wake me up at five am",
        "sentence_annotation": "wake me up at [time : five am]",
        "intent": "alarm_set",
        "action": "set",
        "scenario": "alarm",
        "tokens": [
            {"surface": w, "id": k} for k, w in enumerate(["wake", "me", "up", "at", "five", "am"])
        ],
        "entities": [{"span": [4, 5], "type": "time"}],
        "recordings": [{"file": "audio-1.flac"}],
    }
    source = tmp_path / "train.jsonl"
    source.write_text(json.dumps(row) + "\n")
    out = tmp_path / "slu.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["data", "convert", "slurp", str(source), str(out)])
    assert result.exit_code == 0, result.output
    converted = json.loads(out.read_text())
    assert converted["entities"] == [{"type": "time", "value": "five am"}]
    assert "audio" not in converted or converted["audio"] is None
    result = runner.invoke(app, ["data", "check", "--slu", str(out)])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["data", "convert", "timit", str(source), str(out)])
    assert bad.exit_code == 2 and "slurp or speech-massive" in bad.output
