"""End-to-end runs on the tiny random Whisper: the run folder contract, bad input, NaN loss,
QLoRA on CPU and kill-and-resume."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import (
    AutoProcessor,
    Qwen2AudioForConditionalGeneration,
    WhisperForConditionalGeneration,
)
from typer.testing import CliRunner

from audiolora.cli import EXIT_INTERRUPTED, app
from audiolora.config import AdapterConfig, load_config
from audiolora.data.manifest import BadInputError, read_manifest
from audiolora.models.adapters import attach_adapters
from audiolora.models.families import QWEN2_AUDIO
from audiolora.models.lalm import LalmCollator, encode_example
from audiolora.training import run as run_module
from audiolora.training.checkpoints import MARKER, latest_complete_checkpoint
from audiolora.training.run import (
    RunError,
    RunStopped,
    pick_optimizer,
    recompute_activations,
    run_training,
)
from audiolora.training.trainer import AudioTrainer, NonFiniteLossError


def tiny_overrides(model_dir: Path, data_dir: Path, out: Path, **extra: object) -> list[str]:
    settings = {
        "output_dir": str(out),
        "model.name": str(model_dir),
        "data.train": str(data_dir / "train.jsonl"),
        "data.eval": str(data_dir / "eval.jsonl"),
        "training.max_steps": 4,
        "training.batch_size": 4,
        "training.eval_steps": 2,
        "training.save_steps": 2,
        "training.logging_steps": 1,
        "training.max_new_tokens": 8,
        "training.learning_rate": 0.01,
        # fp32, not the default's `auto` (bf16 on bf16 hardware): these tests compare runs
        # (one process against two, resumed against uninterrupted) to float tolerance.
        "training.precision": "fp32",
        "data.retention": [],
    }
    settings.update(extra)
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items()]


def test_run_folder_contract(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = load_config(None, tiny_overrides(tiny_random_whisper_dir, speech_dataset, out))
    metrics = run_training(config)

    assert (out / "config.yaml").exists()
    assert load_config(out / "config.yaml") == config
    saved = json.loads((out / "metrics.json").read_text())
    for block in ("base", "final"):
        assert set(saved[block]) >= {"wer", "cer", "bleu", "perplexity"}
    assert set(saved["efficiency"]) >= {
        "samples_per_second",
        "step_latency_s",
        "peak_memory_mb",
        "trainable_params",
        "total_params",
        "adapter_mb",
    }
    assert saved["efficiency"]["optimizer_steps"] == 4
    evaluations = [h for h in saved["history"] if "eval_wer" in h]
    assert evaluations
    # Each evaluation records the training time before it (its own time left out), for
    # metric-against-time curves: it grows with the step.
    trained_s = [h["train_s"] for h in evaluations if h["step"] > 0]
    assert trained_s == sorted(trained_s) and trained_s[0] > 0
    assert metrics["final"] == saved["final"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "adapted" in html
    assert latest_complete_checkpoint(out / "checkpoints") is not None

    # The adapter is plain PEFT: reloadable without audiolora.
    base = WhisperForConditionalGeneration.from_pretrained(tiny_random_whisper_dir)
    reloaded = PeftModel.from_pretrained(base, str(out / "adapter"))
    trained = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert trained and all(torch.isfinite(t).all() for t in trained.values())
    assert any("lora_B" in k and t.abs().sum() > 0 for k, t in trained.items())
    assert sum(1 for n, _ in reloaded.named_modules() if n.endswith("lora_A")) > 0


def test_second_run_into_same_folder_needs_resume(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    (out / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    config = load_config(None, tiny_overrides(tiny_random_whisper_dir, speech_dataset, out))
    with pytest.raises(RunError, match="--resume"):
        run_training(config)


def bad_manifest(speech_dataset: Path, tmp_path: Path) -> Path:
    good = (speech_dataset / "train.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in good]
    for row in rows:
        row["audio"] = str(speech_dataset / row["audio"])
    lines = [json.dumps(r) for r in rows]
    lines.insert(1, json.dumps({"audio": str(tmp_path / "missing.wav"), "text": "gone"}))
    lines.insert(3, "{not json")
    lines.append(json.dumps({"audio": rows[0]["audio"], "text": "   "}))
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_input_stops_before_training_and_lists_every_row(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    manifest = bad_manifest(speech_dataset, tmp_path)
    out = tmp_path / "run"
    overrides = tiny_overrides(tiny_random_whisper_dir, speech_dataset, out)
    config = load_config(None, [*overrides, f"data.train={manifest}"])
    with pytest.raises(BadInputError) as err:
        run_training(config)
    message = str(err.value)
    assert "train.jsonl:2: field 'audio'" in message
    assert "train.jsonl:4" in message
    assert f"train.jsonl:{len(manifest.read_text().splitlines())}: field 'text'" in message
    assert not (out / "checkpoints").exists()


def test_bad_input_skip_trains_on_the_rest(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    manifest = bad_manifest(speech_dataset, tmp_path)
    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_random_whisper_dir, speech_dataset, out, **{"training.max_steps": 1}
    )
    config = load_config(None, [*overrides, f"data.train={manifest}", "data.on_bad_input=skip"])
    metrics = run_training(config)
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert sorted(r["line"] for r in rejected) == [2, 4, len(manifest.read_text().splitlines())]
    assert metrics["data"]["train"] == {"rows": 12, "rejected": 3, "examples": 12}
    assert (out / "adapter" / "adapter_model.safetensors").exists()


def test_nan_loss_stops_and_keeps_last_checkpoint(
    tiny_random_whisper_dir: Path,
    speech_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = AudioTrainer.compute_loss

    def poisoned(self: AudioTrainer, *args: object, **kwargs: object) -> torch.Tensor:
        loss = original(self, *args, **kwargs)
        return loss * float("nan") if self.state.global_step >= 2 else loss

    monkeypatch.setattr(AudioTrainer, "compute_loss", poisoned)
    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_random_whisper_dir, speech_dataset, out, **{"training.save_steps": 1}
    )
    with pytest.raises(NonFiniteLossError, match="step 3"):
        run_training(load_config(None, overrides))
    assert latest_complete_checkpoint(out / "checkpoints").name == "checkpoint-2"
    assert not (out / "adapter").exists()


@pytest.mark.parametrize("bits", ["nf4", "int8"])
def test_quantized_base_trains_on_cpu(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path, bits: str
) -> None:
    import bitsandbytes  # noqa: F401  (a declared dependency: missing fails)

    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_random_whisper_dir,
        speech_dataset,
        out,
        **{"model.quantization": bits, "training.max_steps": 3, "training.eval_steps": 1},
    )
    metrics = run_training(load_config(None, overrides))
    assert metrics["efficiency"]["quantization"] == bits
    assert metrics["efficiency"]["optimizer_steps"] == 3
    losses = [h["loss"] for h in metrics["history"] if "loss" in h]
    assert len(losses) == 3 and all(l == l for l in losses)  # noqa: E741 - finite, not NaN
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"


def test_adalora_runs_and_reallocates(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_random_whisper_dir,
        speech_dataset,
        out,
        **{
            "adapter.method": "adalora",
            "adapter.adalora.init_r": 4,
            "adapter.adalora.target_r": 2,
            "adapter.adalora.tinit": 1,
            "adapter.adalora.tfinal": 1,
            "training.max_steps": 4,
        },
    )
    run_training(load_config(None, overrides))
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "ADALORA"
    assert config["rank_pattern"], "AdaLoRA should record the ranks it allocated"


def train_command(overrides: list[str]) -> list[str]:
    args = [sys.executable, "-m", "audiolora.cli", "train"]
    for o in overrides:
        args += ["--set", o]
    return args


def adapter_tensors(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


def straight_run_and_command_to_kill(
    model_dir: Path, data_dir: Path, tmp_path: Path, max_steps: int
) -> tuple[Path, Path, list[str], dict[str, str]]:
    """An uninterrupted run (checkpoint every step, adapter dropout on, so resuming must restore
    the RNG too), and the command of the same run into another folder, to be killed."""
    extra = {
        "training.max_steps": max_steps,
        "training.save_steps": 1,
        "training.eval_steps": 100,
        "training.batch_size": 3,
        "adapter.dropout": 0.1,
    }
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(
        train_command(tiny_overrides(model_dir, data_dir, straight, **extra)),
        check=True,
        env=env,
        capture_output=True,
    )
    return (
        straight,
        killed,
        train_command(tiny_overrides(model_dir, data_dir, killed, **extra)),
        env,
    )


def test_killed_run_resumes_to_the_same_adapter(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    straight, killed, command, env = straight_run_and_command_to_kill(
        tiny_random_whisper_dir, speech_dataset, tmp_path, max_steps=8
    )
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while (
        time.time() < deadline and not (killed / "checkpoints" / "checkpoint-4" / MARKER).exists()
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoints" / "checkpoint-4" / MARKER).exists()
    assert not (killed / "adapter").exists()
    # A half-written newer checkpoint must be ignored and cleaned up.
    fake = killed / "checkpoints" / "checkpoint-99"
    shutil.copytree(killed / "checkpoints" / "checkpoint-4", fake)
    (fake / MARKER).unlink()

    subprocess.run(command + ["--resume"], check=True, env=env, capture_output=True)
    assert not fake.exists()
    resumed_metrics = json.loads((killed / "metrics.json").read_text())
    assert resumed_metrics["resumed_from"] is not None
    a, b = adapter_tensors(straight), adapter_tensors(killed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)


def test_paged_optimizer_on_cpu_is_refused_with_a_reason() -> None:
    if torch.cuda.is_available():
        pytest.skip("CPU-only behaviour")
    with pytest.raises(RunError, match="needs a CUDA GPU"):
        pick_optimizer(load_config(None, ["training.optimizer=paged_adamw_8bit"]))
    assert pick_optimizer(load_config(None, ["model.quantization=nf4"])) == "adamw_torch"


def test_tensorboard_logging_writes_event_files(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    """`training.report_to: tensorboard` logs offline: the training loss reaches event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_random_whisper_dir,
        speech_dataset,
        out,
        **{"training.report_to": "tensorboard", "training.max_steps": 2},
    )
    run_training(load_config(None, overrides))
    events = sorted(out.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file under {out}"
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    assert "train/loss" in accumulator.Tags()["scalars"]


def test_entropy_rank_allocation_run(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    """The allocation measured on training batches lands in the adapter as a plain PEFT
    rank_pattern at uniform LoRA's parameter budget, with its heatmap beside it; the entropy
    regulariser is logged and the updates' spectra are tracked."""
    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_random_whisper_dir, speech_dataset, out,
        **{"adapter.rank_allocation": "entropy", "adapter.r": 4, "adapter.rank_min": 1,
           "adapter.rank_max": 16, "adapter.calibration_batches": 1, "training.max_steps": 2,
           "adapter.entropy_weight": 0.01},
    )  # fmt: skip
    metrics = run_training(load_config(None, overrides))
    report = json.loads((out / "rank_allocation.json").read_text())
    assert report["allocated"] <= report["budget"] and report["allocated"] > 0.9 * report["budget"]
    ranks = {m["rank"] for m in report["modules"]}
    assert len(ranks) > 1, "entropy allocation gave every module the same rank"
    assert (out / "rank_allocation.png").stat().st_size > 0
    assert metrics["rank_allocation"]["budget"] == report["budget"]
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert len(config["rank_pattern"]) == len(report["modules"])
    base = WhisperForConditionalGeneration.from_pretrained(tiny_random_whisper_dir)
    reloaded = PeftModel.from_pretrained(base, out / "adapter")
    trainable = sum(p.numel() for n, p in reloaded.named_parameters() if "lora_" in n)
    assert trainable == report["allocated"]
    assert any("lora_entropy" in h for h in metrics["history"])
    tracking = json.loads((out / "adapter_tracking.json").read_text())
    assert [t["step"] for t in tracking] == [1, 2]
    tracked = {n.removeprefix("base_model.model.") for n in tracking[-1]["modules"]}
    assert tracked == {m["name"] for m in report["modules"]}
    assert (out / "adapter_tracking.png").stat().st_size > 0
    report = (out / "report.html").read_text()
    assert "Entropy-aware rank allocation" in report and "LoRA updates over training" in report


@pytest.mark.parametrize(
    "options",
    [{"adapter.use_dora": True}, {"adapter.init": "pissa"}, {"adapter.init": "eva"}],
    ids=["dora", "pissa", "eva"],
)
def test_lora_variants_train_and_reload_in_plain_peft(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path, options: dict
) -> None:
    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_random_whisper_dir, speech_dataset, out,
        **{"training.max_steps": 1, "adapter.calibration_batches": 1, **options},
    )  # fmt: skip
    run_training(load_config(None, overrides))
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    if "adapter.use_dora" in options:
        assert config["use_dora"] is True
    else:
        assert str(config["init_lora_weights"]).startswith(options["adapter.init"])
    base = WhisperForConditionalGeneration.from_pretrained(tiny_random_whisper_dir)
    PeftModel.from_pretrained(base, out / "adapter")


def test_full_finetuning_trains_every_weight_and_saves_a_model_folder(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    from audiolora.inference import load_run_with_family

    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_random_whisper_dir, speech_dataset, out,
        **{"adapter.method": "full", "training.max_steps": 1, "training.warmup_ratio": 0.0,
           "data.encoder_context": "batch"},
    )  # fmt: skip
    metrics = run_training(load_config(None, overrides))
    assert metrics["efficiency"]["trainable_ratio"] == 1.0
    assert (out / "adapter" / "config.json").exists()
    assert not (out / "adapter" / "adapter_config.json").exists()
    base = WhisperForConditionalGeneration.from_pretrained(tiny_random_whisper_dir)
    tuned, *_ = load_run_with_family(out)
    changed = [
        n for n, p in tuned.named_parameters()
        if not torch.equal(p, base.get_parameter(n))
    ]  # fmt: skip
    assert len(changed) > 0.5 * len(list(base.parameters()))
    # Reloaded, the model takes the trimmed input the run trained on, and scores as it did.
    result = CliRunner().invoke(
        app, ["eval", str(out), "--json", "--data", str(speech_dataset / "eval.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["wer"] == pytest.approx(metrics["final"]["wer"])


def test_speech_gated_run_trains_evaluates_and_reloads_gated(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    from audiolora.inference import load_run_with_family
    from audiolora.models.speech_gate import is_gated

    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_random_whisper_dir, speech_dataset, out,
        **{"adapter.speech_gate": True, "training.max_steps": 1,
           "data.encoder_context": "full"},  # the 30 s path (the recipe trims)
    )  # fmt: skip
    metrics = run_training(load_config(None, overrides))
    assert metrics["final"]["wer"] is not None
    model, *_ = load_run_with_family(out)
    assert is_gated(model)


def test_trimmed_encoder_input_trains_evaluates_and_predicts(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    from audiolora.inference import predict_files

    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_random_whisper_dir, speech_dataset, out,
        **{"data.encoder_context": "batch", "adapter.speech_gate": True,
           "training.max_steps": 2},
    )  # fmt: skip
    metrics = run_training(load_config(None, overrides))
    assert metrics["final"]["wer"] is not None
    assert load_config(out / "config.yaml").data.encoder_context == "batch"
    clip = read_manifest(speech_dataset / "eval.jsonl").rows[0].audio
    assert len(predict_files(out, [clip])) == 1


FULL_DISK_ERRORS = {
    "python": lambda path: OSError(errno.ENOSPC, "No space left on device", path),
    # what torch's own writer raises on a full disk: no errno, and "No space" nowhere
    "torch": lambda path: RuntimeError(
        "[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file "
        "data/0: file write failed"
    ),
}


@pytest.mark.parametrize("raised_by", sorted(FULL_DISK_ERRORS))
def test_a_full_disk_while_saving_names_what_is_kept_and_resume_finishes(
    tiny_random_whisper_dir: Path,
    speech_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    raised_by: str,
) -> None:
    out = tmp_path / "run"
    overrides = tiny_overrides(tiny_random_whisper_dir, speech_dataset, out)
    real_save = torch.save
    real_usage = shutil.disk_usage

    def disk_fills_at_step_4(obj: object, f: object, *args: object, **kwargs: object) -> None:
        if "checkpoint-4" in str(f):
            monkeypatch.setattr(shutil, "disk_usage", lambda p: real_usage(p)._replace(free=0))
            raise FULL_DISK_ERRORS[raised_by](str(f))
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_at_step_4)
    with pytest.raises(RunStopped, match="disk filled up") as stopped:
        run_training(load_config(None, overrides))
    assert "checkpoint-2, is intact" in str(stopped.value) and "--resume" in str(stopped.value)
    checkpoints = out / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2"], "partial one gone"
    assert (checkpoints / "checkpoint-2" / MARKER).exists()

    monkeypatch.setattr(torch, "save", real_save)  # space freed
    monkeypatch.setattr(shutil, "disk_usage", real_usage)
    metrics = run_training(load_config(None, overrides), resume=True)
    assert metrics["resumed_from"].endswith("checkpoint-2")
    assert (out / "adapter" / "adapter_model.safetensors").exists()


def test_gradient_accumulation_trains_what_the_whole_batch_trains(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    """Batch 2 x 2 accumulated micro-batches = batch 4: the step's loss is the token mean over
    all four clips, not the sum of two micro-batch means."""
    same = {"adapter.dropout": 0.0, "data.spec_augment.enabled": False, "training.eval_steps": 100}
    runs = {}
    for name, extra in (
        ("whole", {"training.batch_size": 4}),
        ("accumulated", {"training.batch_size": 2, "training.gradient_accumulation_steps": 2}),
    ):
        out = tmp_path / name
        overrides = tiny_overrides(tiny_random_whisper_dir, speech_dataset, out, **same, **extra)
        runs[name] = run_training(load_config(None, overrides))
    losses = {n: [h["loss"] for h in m["history"] if "loss" in h] for n, m in runs.items()}
    assert losses["accumulated"] == pytest.approx(losses["whole"], rel=1e-5)
    a, b = adapter_tensors(tmp_path / "whole"), adapter_tensors(tmp_path / "accumulated")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=2e-5, msg=key)  # sum order


def test_recomputed_activations_give_the_same_gradients(tiny_random_whisper_dir: Path) -> None:
    """With activation checkpointing a decoder layer's attention runs twice (forward, then again
    in the backward), and the gradients are those of the plain forward."""
    grads, calls = {}, {}
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = WhisperForConditionalGeneration.from_pretrained(tiny_random_whisper_dir).train()
        if checkpointing:
            recompute_activations(model)
        runs: list[int] = []
        attention = model.model.decoder.layers[0].self_attn
        attention.register_forward_hook(lambda *_, seen=runs: seen.append(1))
        features = torch.randn(
            2, model.config.num_mel_bins, 3000, generator=torch.Generator().manual_seed(1)
        )
        labels = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]])
        model(input_features=features, labels=labels).loss.backward()
        grads[checkpointing] = {
            n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
        }
        calls[checkpointing] = len(runs)
    assert calls == {False: 1, True: 2}
    for name, grad in grads[False].items():
        torch.testing.assert_close(grads[True][name], grad, msg=name)


def test_recomputing_leaves_the_frozen_layers_below_the_adapters_out_of_the_backward(
    tiny_qwen2_audio_dir: Path,
) -> None:
    """LoRA on the top layer of an audio LM: with checkpointing, only that layer runs again in
    the backward; the frozen layer below it (and the audio tower) run once, as without."""
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)
    sound = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    example = encode_example(QWEN2_AUDIO, processor, [sound], "say it", "a b c")
    batch = LalmCollator(QWEN2_AUDIO, processor)([example, example])
    grads, calls = {}, {}
    for checkpointing in (False, True):
        model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio_dir)
        QWEN2_AUDIO.configure(model, None)
        torch.manual_seed(0)  # the same adapter on both sides
        peft_model = attach_adapters(
            model, AdapterConfig(r=4, dropout=0.0, layers=[-1]), QWEN2_AUDIO, 4
        )
        if checkpointing:
            recompute_activations(model)
        peft_model.train()
        runs: dict[str, int] = {}
        for name, module in peft_model.named_modules():
            if name.endswith(
                (
                    "language_model.layers.0.self_attn",
                    "language_model.layers.1.self_attn",
                    "audio_tower.layers.0.self_attn",
                )
            ):
                key = name.split("model.model.")[-1].removeprefix("model.")
                module.register_forward_hook(
                    lambda *_, k=key, seen=runs: seen.__setitem__(k, seen.get(k, 0) + 1)
                )
        peft_model(**batch).loss.backward()
        calls[checkpointing] = runs
        grads[checkpointing] = {
            n: p.grad for n, p in peft_model.named_parameters() if p.grad is not None
        }
    assert calls[False] == {
        "audio_tower.layers.0.self_attn": 1,
        "language_model.layers.0.self_attn": 1,
        "language_model.layers.1.self_attn": 1,
    }
    assert calls[True] == {**calls[False], "language_model.layers.1.self_attn": 2}
    assert grads[True].keys() == grads[False].keys() and grads[False]
    for name, grad in grads[False].items():
        torch.testing.assert_close(grads[True][name], grad, msg=name)


def test_a_run_with_gradient_checkpointing_trains_what_a_plain_run_trains(
    tiny_random_whisper_dir: Path,
    speech_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    same = {"adapter.dropout": 0.0, "data.spec_augment.enabled": False, "training.eval_steps": 100}
    enabled: list[str] = []

    def spy(model: torch.nn.Module) -> None:
        enabled.append(type(model).__name__)
        recompute_activations(model)

    monkeypatch.setattr(run_module, "recompute_activations", spy)
    runs = {}
    for checkpointing in (False, True):
        out = tmp_path / str(checkpointing)
        extra = {**same, "training.gradient_checkpointing": checkpointing}
        runs[checkpointing] = run_training(
            load_config(None, tiny_overrides(tiny_random_whisper_dir, speech_dataset, out, **extra))
        )
    assert enabled == ["WhisperForConditionalGeneration"]
    losses = {c: [h["loss"] for h in m["history"] if "loss" in h] for c, m in runs.items()}
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
    a, b = adapter_tensors(tmp_path / "False"), adapter_tensors(tmp_path / "True")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6, msg=key)


def newest_complete_is_loadable(checkpoints: Path) -> Path | None:
    """The checkpoint a resume would pick, opened the way the Trainer opens it."""
    newest = latest_complete_checkpoint(checkpoints, clean_incomplete=False)
    if newest is not None:
        assert load_file(str(newest / "adapter_model.safetensors"))
        assert json.loads((newest / "trainer_state.json").read_text())["global_step"] > 0
        torch.load(newest / "optimizer.pt", weights_only=True)
        torch.load(newest / "scheduler.pt", weights_only=True)
    return newest


def test_five_kills_in_a_row_even_mid_checkpoint_leave_a_resumable_run(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    """SIGKILL five times: alternately the moment a checkpoint folder appears (while the
    Trainer is still writing it) and after a random delay; every time the newest complete
    checkpoint opens, and the run finally ends with the uninterrupted run's adapter."""
    straight, killed, command, env = straight_run_and_command_to_kill(
        tiny_random_whisper_dir, speech_dataset, tmp_path, max_steps=40
    )
    checkpoints = killed / "checkpoints"
    rng = np.random.default_rng(0)
    mid_save_kills = 0
    for kill in range(5):
        before = set(checkpoints.iterdir()) if checkpoints.exists() else set()
        proc = subprocess.Popen(
            command + (["--resume"] if kill else []),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            new = set(checkpoints.iterdir()) - before if checkpoints.exists() else set()
            if new:
                break
            time.sleep(0.005)
        if kill % 2:
            time.sleep(float(rng.uniform(0.0, 1.5)))
        elif any(not (p / MARKER).exists() for p in new):
            mid_save_kills += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
        assert newest_complete_is_loadable(checkpoints) is not None or kill == 0
    assert mid_save_kills >= 1, "no kill landed while a checkpoint was being written"
    subprocess.run(command + ["--resume"], check=True, env=env, capture_output=True)
    a, b = adapter_tensors(straight), adapter_tensors(killed)
    for key in a:
        torch.testing.assert_close(
            a[key], b[key], rtol=1e-4, atol=1e-6, msg=lambda m, k=key: f"{k}: {m}"
        )


def test_early_stopping_keeps_the_best_checkpoint_and_its_patience_survives_resume(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    """A learning rate too small to move the WER: the first evaluation is the best, every
    later one fails to improve, so patience 2 stops at the third evaluation (step 6 of 12),
    and the run keeps step 2's adapter. Resumed from step 4, the counter (one evaluation
    without improvement) comes back with the checkpoint, so the run stops at step 6 again."""
    extra = {
        "training.max_steps": 12,
        "training.eval_steps": 2,
        "training.save_steps": 5,  # early stopping saves at every evaluation instead
        "training.save_total_limit": 10,
        "training.learning_rate": 1e-12,
        "training.early_stopping_patience": 2,
    }
    out = tmp_path / "run"
    metrics = run_training(
        load_config(None, tiny_overrides(tiny_random_whisper_dir, speech_dataset, out, **extra))
    )
    assert metrics["early_stopping"]["best_step"] == 2
    assert metrics["early_stopping"]["stopped_early"]
    assert metrics["efficiency"]["optimizer_steps"] == 6
    evaluated = [h["step"] for h in metrics["history"] if "eval_wer" in h]
    assert evaluated[:4] == [0, 2, 4, 6], evaluated  # 0: the base model
    kept = load_file(str(out / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors"))
    final = adapter_tensors(out)
    assert kept.keys() == final.keys()
    for key in kept:
        torch.testing.assert_close(final[key], kept[key], rtol=0, atol=0)

    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed, ignore=shutil.ignore_patterns("checkpoint-6", "adapter"))
    (resumed / "metrics.json").unlink()
    again = run_training(
        load_config(
            None, tiny_overrides(tiny_random_whisper_dir, speech_dataset, resumed, **extra)
        ),
        resume=True,
    )
    assert again["resumed_from"] is not None
    assert max(h["step"] for h in again["history"] if "eval_wer" in h) == 6  # not 8
    assert again["early_stopping"]["best_step"] == 2


def test_early_stopping_without_held_out_data_is_refused_up_front(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    overrides = tiny_overrides(
        tiny_random_whisper_dir,
        speech_dataset,
        tmp_path / "run",
        **{"data.eval": None, "training.early_stopping_patience": 3},
    )
    with pytest.raises(RunError, match="early_stopping_patience needs held-out data"):
        run_training(load_config(None, overrides))


def test_ctrl_c_stops_a_run_with_exit_130_and_resume_ends_like_an_uninterrupted_run(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    """SIGINT (Ctrl-C) after a checkpoint: no traceback, exit code 130, no adapter or metrics
    left for a later command to trust, and `--resume` ends with the uninterrupted adapter."""
    straight, stopped, command, env = straight_run_and_command_to_kill(
        tiny_random_whisper_dir, speech_dataset, tmp_path, max_steps=40
    )
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A shell running the tests in the background ignores Ctrl-C, and children inherit
        # that; the user's terminal does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    while (
        time.time() < deadline and not (stopped / "checkpoints" / "checkpoint-3" / MARKER).exists()
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # 37 steps to go: the run is still training
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted (Ctrl-C)" in stderr
    assert not (stopped / "adapter").exists() and not (stopped / "metrics.json").exists()
    subprocess.run(command + ["--resume"], check=True, env=env, capture_output=True)
    a, b = adapter_tensors(straight), adapter_tensors(stopped)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
