"""The session search's windows spread over CPU cores: one forked process per core, one thread
each.

Why: a window's forward on the embedded audio LM is many mid-sized ops (a 917-token pass of a
576-wide model), and on 2 cores one process running them on 2 threads leaves time on the table
between and inside ops. Measured on the 4 held-out sessions at hop 30 (`runs/temporal-ql2`):
63.7 s in one process, against 58.0 and 45.7 s for two single-thread processes taking two
sessions each, side by side (the same boundaries to the last digit); windows, not sessions, are
what is split here, so the two halves come out even and one recording gains too.

The workers are forked after the model is loaded: they share its weights with the parent
(copy-on-write), inherit the autocast the search runs in, and receive nothing but index ranges.
Linux only (fork is unsafe on macOS) and CPU only: a GPU runs one process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

Job = Callable[[int, int], list[float]]
_JOB: Job | None = None
"""The job a forked worker runs, set by `spread` just before forking (never pickled)."""


def default_workers() -> int:
    """How many processes the search uses by default: the usable CPU cores on Linux without a
    GPU, else one."""
    if torch.cuda.is_available() or not sys.platform.startswith("linux"):
        return 1
    return len(os.sched_getaffinity(0))


def _run_span(span: tuple[int, int]) -> list[float]:
    torch.set_num_threads(1)
    assert _JOB is not None, "a worker forked without its job"
    return _JOB(*span)


def spread(
    job: Job, count: int, workers: int, *, desc: str = "windows", progress: bool = False
) -> list[float]:
    """`job(0, count)` computed as `job(i, i + 1)` for each i by `workers` forked processes of
    one thread each, which take the next i as they finish one (results joined in order).
    `workers <= 1`, or a single item: `job(0, count)` here."""
    workers = min(workers, count)
    if workers <= 1:
        return job(0, count)
    global _JOB
    _JOB = job
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.imap(_run_span, [(i, i + 1) for i in range(count)])
            parts = list(tqdm(parts, total=count, desc=desc, leave=False, disable=not progress))
    finally:
        _JOB = None
    return [x for part in parts for x in part]
