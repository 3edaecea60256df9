"""The session search's windows spread over CPU cores: one forked process per core, one thread
each.

Why: a window's forward on the embedded audio LM is many mid-sized ops (a 917-token pass of a
576-wide model), and one process running them on 2 threads gets ~88 % of twice one thread's
speed (one recording: 16.0 s on 2 threads, 28.1 s on 1). Two single-thread workers taking
windows as they finish searched the 4 held-out sessions at hop 30 1.17x faster than one process,
with the same answers (`benchmarks/results/speed_sessions_question_last_hop30.json`).

The workers are forked after the model is loaded: they share its weights with the parent
(copy-on-write), inherit the autocast the search runs in, and receive nothing but indices.
Linux only (fork is unsafe on macOS), and only for a model on the CPU: a GPU runs one process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

Job = Callable[[int, int], list[float]]
_JOB: Job | None = None
"""The job a forked worker runs, set by `spread` just before forking (never pickled)."""


def default_workers(device: torch.device) -> int:
    """How many processes the search uses by default for a model on `device`: the usable CPU
    cores for a CPU model on Linux, else one."""
    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return 1
    return len(os.sched_getaffinity(0))


def usable_workers(requested: int | None, device: torch.device) -> int:
    """`requested` (None: `default_workers`), or 1 where forking cannot serve: a model on a GPU
    (CUDA does not survive a fork) or a platform without a safe fork."""
    if requested is None:
        return default_workers(device)
    why = None
    if device.type != "cpu":
        why = f"the model is on {device}"
    elif not sys.platform.startswith("linux"):
        why = "forking is Linux-only here"
    if requested > 1 and why:
        log.warning("--workers %d: %s; searching in one process", requested, why)
        return 1
    return max(1, requested)


def _run_span(span: tuple[int, int]) -> list[float]:
    torch.set_num_threads(1)
    assert _JOB is not None, "a worker forked without its job"
    return _JOB(*span)


def spread(
    job: Job, count: int, workers: int, *, desc: str = "windows", progress: bool = False
) -> list[float]:
    """`job(0, count)` computed as `job(i, i + 1)` for each i by `workers` forked processes of
    one thread each, which take the next i as they finish one (results joined in order; a
    worker's error, or a worker killed, raises here). `workers <= 1`, or a single item:
    `job(0, count)` here. One `spread` at a time per process (the job is a module global)."""
    workers = min(workers, count)
    if workers <= 1:
        return job(0, count)
    global _JOB
    _JOB = job
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            done = pool.map(_run_span, [(i, i + 1) for i in range(count)])
            parts = list(tqdm(done, total=count, desc=desc, leave=False, disable=not progress))
    finally:
        _JOB = None
    return [x for part in parts for x in part]
