"""One efficiency meter across the stages of a run: every figure covers all stages' steps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from audiolora.evaluation.efficiency import EfficiencyMeter, matmul_peak


def test_stages_add_up_their_train_time_and_steps() -> None:
    meter = EfficiencyMeter(samples_per_step=4)
    started = []
    meter.energy.start = lambda: started.append(True)  # type: ignore[method-assign]
    args = state = control = SimpleNamespace()
    for steps in (2, 3):  # two stages, each its own trainer.train()
        meter.on_train_begin(args, state, control)
        for _ in range(steps):
            meter.on_step_begin(args, state, control)
            time.sleep(0.01)
            meter.on_step_end(args, state, control)
        meter.on_train_end(args, state, control)
    summary = meter.summary()
    assert summary["optimizer_steps"] == 5
    assert summary["train_seconds"] >= 5 * 0.01  # both stages, not just the last one
    assert started == [True]  # the energy counter starts once, at the first stage


def test_counted_steps_give_model_flops_and_mfu_and_are_not_timed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIOLORA_CACHE", str(tmp_path))
    meter = EfficiencyMeter(samples_per_step=2, flop_every=3)
    args = state = control = SimpleNamespace()
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    meter.on_train_begin(args, state, control)
    for step in range(7):
        meter.on_step_begin(args, state, control)
        a @ b
        time.sleep(0.05 if step % 3 == 0 else 0.01)  # counted steps are slow: never timed
        meter.on_step_end(args, state, control)
    meter.on_train_end(args, state, control)
    summary = meter.summary("fp32")
    assert sorted(meter.step_flops) == [0, 3, 6]
    assert summary["model_flops_per_step"] == 2 * 64 * 32 * 16
    assert summary["step_latency_s"] < 0.04
    peak = json.loads(next((tmp_path / "peak").glob("*fp32.json")).read_text())
    assert peak["flops_per_s"] > 1e8
    assert summary["mfu"] == pytest.approx(
        summary["model_flops_per_s"] / peak["flops_per_s"], rel=1e-9
    )


def test_matmul_peak_keeps_the_best_measurement_per_machine_and_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIOLORA_CACHE", str(tmp_path))
    first = matmul_peak("bf16")
    assert first["dtype"] == "bf16" and first["flops_per_s"] > 0
    (path,) = (tmp_path / "peak").glob("*bf16.json")
    path.write_text(json.dumps({**first, "flops_per_s": 1e18}))
    assert matmul_peak("bf16", measure=False)["flops_per_s"] == 1e18, "read from the cache"
    again = matmul_peak("bf16")
    assert again["flops_per_s"] == 1e18, "a lower new measurement does not replace the best"
    assert again["measurements"] == 2
    path.write_text(json.dumps({**first, "flops_per_s": 1.0}))
    assert matmul_peak("bf16")["flops_per_s"] > 1.0, "a higher one does"


def test_a_failed_calibration_costs_the_mfu_figure_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unwritable = tmp_path / "cache"
    unwritable.write_text("a file where the cache folder should be")
    monkeypatch.setenv("AUDIOLORA_CACHE", str(unwritable))
    meter = EfficiencyMeter(samples_per_step=2, flop_every=1)
    args = state = control = SimpleNamespace()
    meter.on_train_begin(args, state, control)
    for _ in range(2):
        meter.on_step_begin(args, state, control)
        torch.randn(8, 8) @ torch.randn(8, 8)
        meter.on_step_end(args, state, control)
    meter.on_train_end(args, state, control)
    summary = meter.summary("fp32")
    assert summary["model_flops_per_step"] == 2 * 8**3
    assert summary["mfu"] is None and "matmul_peak_flops_per_s" not in summary


def test_a_step_that_raises_does_not_leave_flop_counting_on() -> None:
    meter = EfficiencyMeter(samples_per_step=1, flop_every=1)
    args = state = control = SimpleNamespace()
    meter.on_train_begin(args, state, control)
    meter.on_step_begin(args, state, control)  # counting from here; the step then fails
    assert torch.utils._python_dispatch._get_current_dispatch_mode_stack()
    meter.stop_counting()
    assert not torch.utils._python_dispatch._get_current_dispatch_mode_stack()


def test_each_run_in_one_process_gets_its_own_peak_memory() -> None:
    """A sweep trains its runs in one process: a big earlier run must not set a later run's peak,
    and an evaluation after training is not part of the training peak."""
    args = state = control = SimpleNamespace()

    def run(megabytes: int) -> dict:
        meter = EfficiencyMeter(samples_per_step=1, flop_every=0)
        meter.on_train_begin(args, state, control)
        block = torch.ones(megabytes * 2**18)  # float32: 4 bytes each
        meter.on_step_begin(args, state, control)
        meter.on_step_end(args, state, control)
        meter.on_train_end(args, state, control)
        del block
        after = torch.ones(2 * megabytes * 2**18)  # an evaluation after training: not counted
        del after
        return meter.summary()

    big, small = run(400), run(40)
    assert big["peak_memory_scope"] == small["peak_memory_scope"] == "training"
    assert big["peak_memory_mb"] - small["peak_memory_mb"] > 300
