"""`audiolora train` with `task: temporal` on a tiny random Qwen2-Audio: run folder, head-only
baseline, resume from an adapter+head checkpoint, eval and session-level predict."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiolora.cli import app
from audiolora.config import load_config
from audiolora.data.manifest import BadInputError
from audiolora.data.sessions import read_sessions
from audiolora.tasks.temporal.search import coarse_grid, search_session
from audiolora.training.run import RunError, run_training


def overrides(model: Path, sessions: Path, out: Path, *extra: str) -> list[str]:
    return [
        "task=temporal",
        f"output_dir={out}",
        f"model.name={model}",
        f"data.train={sessions / 'train.jsonl'}",
        f"data.eval={sessions / 'eval.jsonl'}",
        "data.spec_augment.enabled=false",
        "temporal.window_s=20",
        "temporal.windows_per_boundary=1",
        "training.batch_size=4",
        "training.eval_batch_size=8",
        "training.max_steps=4",
        "training.save_steps=2",
        "training.eval_steps=100",
        "training.logging_steps=1",
        "training.learning_rate=0.01",
        "data.retention=[]",
        *extra,
    ]


def test_temporal_run_writes_mae_per_boundary_and_a_reloadable_adapter_with_head(
    tiny_qwen2_audio_dir: Path, tiny_sessions: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    metrics = run_training(load_config(None, overrides(tiny_qwen2_audio_dir, tiny_sessions, out)))
    assert metrics["task"] == "temporal"
    assert metrics["base_reference"] == "median training offset per boundary type"
    # The window-centre figure is what always answering the centre scores on these windows.
    window_s = load_config(out / "config.yaml").temporal.window_s
    centre_errors = [
        abs(e["window_start_s"] + window_s / 2 - float(e["reference"].removesuffix(" s")))
        for e in metrics["base_examples"]
    ]
    centre = metrics["base_details"]
    assert centre["centre_mae_s"] == pytest.approx(sum(centre_errors) / len(centre_errors), abs=0.1)
    assert centre["centre_within_10s"] == pytest.approx(
        sum(e <= 10 for e in centre_errors) / len(centre_errors)
    )
    assert set(metrics["final"]) >= {"mae_s", "within_5s", "within_10s"}
    per_type = {k for k in metrics["final_details"] if k.endswith("/mae_s")}
    assert per_type == {f"{p}_{e}/mae_s" for p in ("P1", "P2", "P3") for e in ("start", "end")}
    # 2 train sessions x 6 boundaries + a third as many outside windows
    assert metrics["data"]["train"]["examples"] == 16
    assert metrics["data"]["eval"]["examples"] == 6
    losses = [h["loss"] for h in metrics["history"] if "loss" in h]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)

    adapter = out / "adapter"
    assert (adapter / "adapter_config.json").exists()
    head = load_file(str(adapter / "regression_head.safetensors"))
    assert head["weight"].abs().sum() > 0, "the head trained away from its zero start"
    lora = load_file(str(adapter / "adapter_model.safetensors"))
    assert lora and all(".language_model." in k for k in lora)
    checkpoint = out / "checkpoints" / "checkpoint-4"
    assert (checkpoint / "trainable.safetensors").exists()
    assert not (checkpoint / "model.safetensors").exists(), "no copy of the frozen base"
    report = (out / "report.html").read_text()
    assert "Per boundary type" in report and "MAE (s)" in report
    assert "each boundary type at its median offset in the training windows" in report

    runner = CliRunner()
    result = runner.invoke(
        app, ["eval", str(out), "--json", "--data", str(tiny_sessions / "eval.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mae_s"] == pytest.approx(metrics["final"]["mae_s"], rel=1e-4)

    search = ["predict", str(out), "--sessions", str(tiny_sessions / "eval.jsonl")]
    result = runner.invoke(app, [*search, "--workers", "1"])
    assert result.exit_code == 0, result.output
    in_one_process = json.loads((out / "sessions-eval.json").read_text())
    result = runner.invoke(app, [*search, "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "session-level MAE" in result.output
    located = json.loads((out / "sessions-eval.json").read_text())
    assert located["workers"] == 2 and in_one_process["workers"] == 1
    assert located["seconds"] > 0 and located["audio_s"] > 0 and "x real time" in result.output
    for spread_out, alone in zip(located["sessions"], in_one_process["sessions"], strict=True):
        assert spread_out["boundaries"] == pytest.approx(alone["boundaries"], abs=0.01)
        for name, said in spread_out["coarse_pass"].items():
            expected = np.asarray(alone["coarse_pass"][name])
            assert np.asarray(said) == pytest.approx(expected, abs=1e-4)
    session = located["sessions"][0]
    assert (
        set(session["boundaries"]) == set(session["abs_error_s"])
        and len(session["boundaries"]) == 6
    )
    assert located["metrics"]["count"] == 6
    assert located["coarse_metrics"]["count"] == 6 and "coarse pass alone" in result.output
    assert (
        located["reference_metrics"]["count"] == 6 and "reference (each boundary" in result.output
    )
    assert all(len(said) > 1 for said in session["coarse_pass"].values())
    assert (out / "sessions-eval.png").read_bytes()[:4] == b"\x89PNG"
    # The recorded answers are enough to search again without the model
    # (`benchmarks/search_hop.py --replay`): the same boundaries.
    recordings, _ = read_sessions(tiny_sessions / "eval.jsonl", window_s=20, boundaries=())
    by_line = {r.line: r for r in recordings}
    for recorded in located["sessions"]:
        recording = by_line[recorded["line"]]
        names = list(recorded["coarse_pass"])
        length, starts = coarse_grid(recording.duration, located["window_s"], located["hop_s"])
        said = np.array([[p for _, p in recorded["coarse_pass"][n]] for n in names])
        again = search_session(
            recording.duration,
            names,
            starts,
            length,
            said,
            lambda pairs, r=recorded: [r["refined"][name][1] for name, _ in pairs],
        )
        for name in names:
            # the result rounds times to 0.01 s; the answers are recorded as they were
            assert again[name]["time_s"] == pytest.approx(recorded["boundaries"][name], abs=0.006)
    result = runner.invoke(app, [*search, "--workers", "1", "--fill-in"])
    assert result.exit_code == 0, result.output
    filled = json.loads((out / "sessions-eval.json").read_text())
    assert filled["fill_in"] is True and "fill-in" in result.output
    assert located["fill_in"] is False  # the run's default
    # the search ran with it: the estimates after the in-between windows voted are there
    assert all(set(s["filled"]) == set(s["coarse"]) for s in filled["sessions"])
    assert all("filled" not in s for s in located["sessions"])


def test_head_only_trains_only_the_head(
    tiny_qwen2_audio_dir: Path, tiny_sessions: Path, tmp_path: Path
) -> None:
    out = tmp_path / "head-only"
    config = load_config(
        None,
        overrides(
            tiny_qwen2_audio_dir,
            tiny_sessions,
            out,
            "temporal.head_only=true",
            "training.max_steps=2",
        ),
    )
    metrics = run_training(config)
    assert metrics["efficiency"]["trainable_params"] == 6 * (64 + 1), "one output per boundary"
    assert not (out / "adapter" / "adapter_config.json").exists()
    assert (out / "adapter" / "regression_head.safetensors").exists()


def test_resume_restores_adapter_and_head_from_the_checkpoint(
    tiny_qwen2_audio_dir: Path, tiny_sessions: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    args = overrides(tiny_qwen2_audio_dir, tiny_sessions, out, "data.eval=null")
    run_training(load_config(None, args))
    finished = {
        **load_file(str(out / "adapter" / "adapter_model.safetensors")),
        **load_file(str(out / "adapter" / "regression_head.safetensors")),
    }
    # Pretend the run was killed after checkpoint-2: resuming must redo steps 3-4 exactly.
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    shutil.rmtree(out / "adapter")
    (out / "metrics.json").unlink()
    metrics = run_training(load_config(None, args), resume=True)
    assert metrics["resumed_from"].endswith("checkpoint-2")
    again = {
        **load_file(str(out / "adapter" / "adapter_model.safetensors")),
        **load_file(str(out / "adapter" / "regression_head.safetensors")),
    }
    assert finished.keys() == again.keys()
    for key, tensor in finished.items():
        torch.testing.assert_close(again[key], tensor, rtol=1e-4, atol=1e-6)


def test_sessions_shorter_than_the_window_are_refused_before_training(
    tiny_qwen2_audio_dir: Path, tiny_sessions: Path, tmp_path: Path
) -> None:
    config = load_config(
        None,
        overrides(tiny_qwen2_audio_dir, tiny_sessions, tmp_path / "r", "temporal.window_s=120"),
    )
    with pytest.raises(BadInputError, match="shorter than the 120 s window"):
        run_training(config)


def test_text_only_ablation_trains_and_locates_without_reading_audio(
    tiny_qwen2_audio_dir: Path, tiny_sessions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audiolora.tasks.temporal import windows

    def no_audio(*args: object, **kwargs: object) -> None:
        raise AssertionError("a text-only temporal run read audio")

    monkeypatch.setattr(windows, "load_audio", no_audio)
    out = tmp_path / "text-only"
    config = load_config(
        None,
        overrides(
            tiny_qwen2_audio_dir, tiny_sessions, out, "temporal.audio=false", "training.max_steps=2"
        ),
    )
    metrics = run_training(config)
    from audiolora.inference import evaluate_run

    again = evaluate_run(out, tiny_sessions / "eval.jsonl")
    assert math.isfinite(metrics["final"]["mae_s"])
    assert again["mae_s"] == pytest.approx(metrics["final"]["mae_s"], rel=1e-4)
    result = CliRunner().invoke(
        app, ["predict", str(out), "--sessions", str(tiny_sessions / "eval.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "sessions-eval.json").read_text())["metrics"]["count"] == 6


def test_an_encoder_decoder_is_refused_before_any_data_is_built(
    tiny_random_whisper_dir: Path, tiny_sessions: Path, tmp_path: Path
) -> None:
    config = load_config(None, overrides(tiny_random_whisper_dir, tiny_sessions, tmp_path / "r"))
    with pytest.raises(RunError, match="task temporal needs an audio LM .* is a whisper model"):
        run_training(config)


def test_early_stopping_keeps_the_best_evaluated_adapter_and_head(
    tiny_qwen2_audio_dir: Path, tiny_sessions: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    extra = ("training.max_steps=6", "training.eval_steps=1", "training.early_stopping_patience=1")
    metrics = run_training(
        load_config(None, overrides(tiny_qwen2_audio_dir, tiny_sessions, out, *extra))
    )
    kept = metrics["early_stopping"]
    scores = {h["step"]: h["eval_mae_s"] for h in metrics["history"] if "eval_mae_s" in h}
    trained = {step: mae for step, mae in scores.items() if step > 0}
    assert kept["best_step"] == min(trained, key=trained.get)
    assert kept["best_metric"] == pytest.approx(trained[kept["best_step"]])
    checkpoint = load_file(
        str(out / "checkpoints" / f"checkpoint-{kept['best_step']}" / "trainable.safetensors")
    )
    head = load_file(str(out / "adapter" / "regression_head.safetensors"))
    (weight,) = (v for k, v in checkpoint.items() if k.endswith("head.weight"))
    torch.testing.assert_close(head["weight"], weight, rtol=0, atol=0)
    assert metrics["final"]["mae_s"] == pytest.approx(kept["best_metric"], abs=1e-3)


def test_a_recording_in_both_splits_is_refused_before_the_model_loads(
    tiny_sessions: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    leaky = overrides(tmp_path / "no-model-needed", tiny_sessions, out)
    leaky = [
        f"data.eval={tiny_sessions / 'train.jsonl'}" if a.startswith("data.eval=") else a
        for a in leaky
    ]
    with pytest.raises(RunError, match="2 recording.*both the training and the held-out"):
        run_training(load_config(None, leaky))


def test_full_finetuning_trains_every_weight_and_reloads_with_its_head(
    tiny_qwen2_audio_dir: Path, tiny_sessions: Path, tmp_path: Path
) -> None:
    from transformers import Qwen2AudioForConditionalGeneration

    from audiolora.export import export_run, load_exported

    out = tmp_path / "full"
    args = overrides(tiny_qwen2_audio_dir, tiny_sessions, out, "adapter.method=full",
                     "training.max_steps=2", "training.warmup_ratio=0")  # fmt: skip
    metrics = run_training(load_config(None, args))
    assert metrics["efficiency"]["trainable_ratio"] == 1.0
    adapter = out / "adapter"
    assert (adapter / "config.json").exists() and (adapter / "regression_head.safetensors").exists()
    assert not (adapter / "adapter_config.json").exists()
    base = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio_dir)
    tuned = Qwen2AudioForConditionalGeneration.from_pretrained(adapter)
    changed = [n for n, p in tuned.named_parameters() if not torch.equal(p, base.get_parameter(n))]
    assert len(changed) > 0.5 * len(list(base.parameters())), "the language model trained too"

    result = CliRunner().invoke(
        app, ["eval", str(out), "--json", "--data", str(tiny_sessions / "eval.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mae_s"] == pytest.approx(metrics["final"]["mae_s"], rel=1e-4)
    # A full fine-tune exports as it is: the model folder, the head beside it.
    record = export_run(out, tmp_path / "export")
    assert record["head"].endswith("OffsetRegressor")
    exported = load_exported(tmp_path / "export")
    assert all(
        torch.equal(p, tuned.get_parameter(n)) for n, p in exported.backbone.named_parameters()
    )
