"""Spreading the session search's windows over forked single-thread processes."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from audiolora.tasks.temporal.parallel import default_workers, spread, usable_workers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks: Linux")


def test_spread_joins_every_item_in_order_computed_in_other_processes_of_one_thread() -> None:
    def item_and_threads(start: int, stop: int) -> list[float]:
        return [i * 1000.0 + torch.get_num_threads() for i in range(start, stop)]

    here = item_and_threads(0, 7)
    assert spread(item_and_threads, 7, workers=1) == here  # one worker: here, as is
    spread_out = spread(item_and_threads, 7, workers=2)
    assert [x // 1000 for x in spread_out] == list(range(7))  # every item, in order
    assert {x % 1000 for x in spread_out} == {1.0}  # one thread in each worker


def test_spread_runs_in_forked_processes_and_reraises_their_errors() -> None:
    def pids(start: int, stop: int) -> list[float]:
        return [float(os.getpid())] * (stop - start)

    assert os.getpid() not in spread(pids, 4, workers=2)

    def fails(start: int, stop: int) -> list[float]:
        raise ValueError(f"window {start} is broken")

    with pytest.raises(ValueError, match="window 0 is broken"):
        spread(fails, 3, workers=2)


def test_the_search_forks_for_a_model_on_the_cpu_only() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert default_workers(cpu) == len(os.sched_getaffinity(0))  # one per usable core
    assert default_workers(gpu) == 1
    assert usable_workers(None, cpu) == default_workers(cpu)
    assert usable_workers(3, cpu) == 3
    assert usable_workers(3, gpu) == 1  # CUDA does not survive a fork: asked for, refused
