"""One run in two CPU processes (gloo): the same global batch trains the same adapter as one
process, rank 0 alone writes, evaluates and checks, and a resumed two-process run finishes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from audiolora.training import distributed
from audiolora.training.checkpoints import MARKER
from tests.training.test_run import adapter_tensors, tiny_overrides


def _once_in_a_group(rank: int, init_file: str, results: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2")
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2
    )
    calls = []
    value = distributed.once(lambda: calls.append(rank) or {"from": rank})
    try:
        distributed.once(lambda: 1 / 0)
        failed = "no"
    except ZeroDivisionError:
        failed = "ZeroDivisionError"
    Path(results, f"{rank}.json").write_text(json.dumps([value, calls, failed]))
    torch.distributed.destroy_process_group()


def test_once_runs_on_rank_0_and_every_rank_gets_its_result_or_its_error(tmp_path: Path) -> None:
    mp.spawn(_once_in_a_group, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    zero = json.loads((tmp_path / "0.json").read_text())
    one = json.loads((tmp_path / "1.json").read_text())
    assert zero == [{"from": 0}, [0], "ZeroDivisionError"]
    assert one == [{"from": 0}, [], "ZeroDivisionError"], "rank 1 ran nothing, heard everything"


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-12000:]
    return done


def train(overrides: list[str], nproc: int, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "audiolora", "train", "--nproc", str(nproc), *extra]
    for o in overrides:
        command += ["--set", o]
    return run(command)


def losses(run_dir: Path) -> list[float]:
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    return [h["loss"] for h in history if "loss" in h]


def test_two_processes_train_what_one_process_trains_and_resume(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    same = {  # nothing random but the data order, which both runs share
        "adapter.dropout": 0.0,
        "data.spec_augment.enabled": False,
        "training.max_steps": 4,
        "training.save_steps": 2,
        "training.eval_steps": 2,
    }
    one = tmp_path / "one"
    train(tiny_overrides(tiny_random_whisper_dir, speech_dataset, one, **same), 1)
    two = tmp_path / "two"
    per_process = {**same, "training.batch_size": 2}  # global batch 4, as above
    done = train(tiny_overrides(tiny_random_whisper_dir, speech_dataset, two, **per_process), 2)

    assert done.stdout.count("Held-out split") == 1, "rank 0 alone prints the run's tables"
    assert len(losses(two)) == len(losses(one)) == 4
    assert losses(two) == pytest.approx(losses(one), rel=1e-5)
    a, b = adapter_tensors(one), adapter_tensors(two)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6, msg=key)
    evals = [
        h for h in json.loads((two / "metrics.json").read_text())["history"] if "eval_wer" in h
    ]
    assert [h["step"] for h in evals] == [0, 2, 4], "evaluated once per eval step, not per rank"
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == [
        "checkpoint-2",
        "checkpoint-4",
    ]

    # As if both processes were killed after checkpoint 2: resume in two processes.
    shutil.rmtree(two / "checkpoints" / "checkpoint-4")
    shutil.rmtree(two / "adapter")
    (two / "metrics.json").unlink()
    assert (two / "checkpoints" / "checkpoint-2" / MARKER).exists()
    train(
        tiny_overrides(tiny_random_whisper_dir, speech_dataset, two, **per_process), 2, "--resume"
    )
    metrics = json.loads((two / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("checkpoint-2")
    resumed = adapter_tensors(two)
    for key in b:
        torch.testing.assert_close(resumed[key], b[key], rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize(
    ("strategy", "quantization", "cuda", "deepspeed", "says"),
    [
        ("ddp", "nf4", False, False, None),
        ("zero3", "nf4", True, True, "cannot be sharded"),
        ("zero3", "none", True, True, "evaluates on rank 0 alone"),
        ("fsdp", "none", True, True, "evaluates on rank 0 alone"),
        ("zero2", "none", False, True, "needs CUDA"),
        ("zero2", "nf4", True, False, "pip install deepspeed"),
        ("zero2", "nf4", True, True, None),
    ],
)
def test_strategies_that_cannot_work_are_named_before_the_model_loads(
    strategy: str, quantization: str, cuda: bool, deepspeed: bool, says: str | None
) -> None:
    problem = distributed.strategy_problem(strategy, quantization, cuda, deepspeed)
    assert problem is None if says is None else says in problem


def test_the_shipped_deepspeed_config_is_zero_stage_2() -> None:
    path = Path(distributed.strategy_arguments("zero2")["deepspeed"])
    config = json.loads(path.read_text())
    assert config["zero_optimization"]["stage"] == 2
    assert config["train_micro_batch_size_per_gpu"] == "auto", "the recipe's batch size"
    assert distributed.strategy_arguments("ddp") == {}


def test_a_run_asking_for_zero3_on_a_4bit_base_stops_before_loading(tmp_path: Path) -> None:
    from audiolora.config import load_config
    from audiolora.training.run import RunError, run_training

    config = load_config(
        None,
        [f"output_dir={tmp_path / 'run'}", "model.name=/nonexistent",
         "model.quantization=nf4", "training.strategy=zero3"],
    )  # fmt: skip
    with pytest.raises(RunError, match="zero3"):
        run_training(config)
    assert not (tmp_path / "run").exists(), "nothing written"


def test_a_head_task_trains_in_two_processes_as_in_one(
    tiny_qwen2_audio_dir: Path, tiny_sessions: Path, tmp_path: Path
) -> None:
    """The temporal task (audio LM + LoRA + regression head, per-window L1 mean): two
    processes of batch 2 train what one process of batch 4 trains."""
    from audiolora.config import load_config, save_config
    from tests.training.test_temporal_run import overrides

    def recipe(out: Path, batch: int) -> str:
        config = load_config(None, overrides(tiny_qwen2_audio_dir, tiny_sessions, out,
                             "adapter.dropout=0.0", f"training.batch_size={batch}"))  # fmt: skip
        path = tmp_path / f"{out.name}.yaml"
        save_config(config, path)
        return str(path)

    one, two = tmp_path / "one", tmp_path / "two"
    train([], 1, recipe(one, 4))
    train([], 2, recipe(two, 2))
    assert losses(two) == pytest.approx(losses(one), rel=1e-4)
    a = load_file(str(one / "adapter" / "regression_head.safetensors"))
    b = load_file(str(two / "adapter" / "regression_head.safetensors"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-5, msg=key)
