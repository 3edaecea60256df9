"""One efficiency meter across the stages of a run: every figure covers all stages' steps."""

from __future__ import annotations

import time
from types import SimpleNamespace

from audiolora.evaluation.efficiency import EfficiencyMeter


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
