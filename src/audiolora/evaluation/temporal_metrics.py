"""Temporal localization metrics, in seconds, as the paper reports them (MAE 5.3 s at 30 s).

Why seconds and not offsets: an offset error of 0.1 is 3 s in a 30 s window but 12 s in a
120 s one, and raters judge a timestamp by how far off it is in the recording. So every error
is taken back to seconds with its own window's length before averaging, and the same numbers
come out per boundary type (P1_start, ...) and over all windows.

Metrics are flat `name -> float` dicts ("mae_s", "P2_start/mae_s", ...) so that
`summarize_over_seeds` can give the mean and spread over training seeds of every one of them,
the "5.3 +- 0.1 s" form of the paper's tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audiolora.evaluation.metrics import summarize_over_seeds  # noqa: F401 - re-exported

WITHIN_S = (5.0, 10.0)
"""Tolerances (seconds) for the share of boundaries placed close enough; 5 s is about what a
rater accepts when reviewing timestamps."""

_EPS = 1e-9
"""An error of exactly 5 s counts as within 5 s, also after float rounding of offset * length."""


def _stats(errors: np.ndarray, prefix: str) -> dict[str, float]:
    out = {
        f"{prefix}mae_s": float(errors.mean()),
        f"{prefix}median_ae_s": float(np.median(errors)),
    }
    for limit in WITHIN_S:
        out[f"{prefix}within_{limit:g}s"] = float((errors <= limit + _EPS).mean())
    out[f"{prefix}count"] = len(errors)
    return out


def boundary_error(truth: float | None, guess: float | None) -> float | str | None:
    """One boundary judged against its annotation (None: the phase is absent): the error in
    seconds where both are times, "missed" for a present phase called absent, "invented" for an
    absent phase given a time, None where both say absent."""
    if truth is None:
        return None if guess is None else "invented"
    return "missed" if guess is None else abs(guess - truth)


def localization_metrics(
    pred_offsets: Sequence[float],
    true_offsets: Sequence[float],
    window_lengths: Sequence[float],
    boundary_types: Sequence[str],
) -> dict[str, float]:
    """Errors in seconds overall and per boundary type.

    For window i with length L_i, the error is e_i = |pred_i - true_i| * L_i seconds. Over a set
    S of windows (all of them, or those of one boundary type):
      mae_s        = (1/|S|) * sum_{i in S} e_i
      median_ae_s  = median_{i in S} e_i
      within_5s    = |{i in S : e_i <= 5}| / |S|     (a fraction: 0.9 = 90 %)
      within_10s   = |{i in S : e_i <= 10}| / |S|
      count        = |S|
    Overall keys are bare ("mae_s"); per-type keys are prefixed ("P2_start/mae_s"). Predictions
    are scored as given, not clipped to [0, 1]: clipping is the model's job, and hiding an
    out-of-range prediction here would flatter it.
    """
    n = len(true_offsets)
    if not (len(pred_offsets) == len(window_lengths) == len(boundary_types) == n):
        raise ValueError(
            f"lengths differ: {len(pred_offsets)} predictions, {n} targets, "
            f"{len(window_lengths)} window lengths, {len(boundary_types)} boundary types"
        )
    if n == 0:
        raise ValueError("no windows to score")
    pred = np.asarray(pred_offsets, dtype=np.float64)
    true = np.asarray(true_offsets, dtype=np.float64)
    lengths = np.asarray(window_lengths, dtype=np.float64)
    if not (np.isfinite(pred).all() and np.isfinite(true).all()):
        raise ValueError("offsets must be finite numbers (a NaN prediction cannot be scored)")
    if not (np.isfinite(lengths).all() and (lengths > 0).all()):
        raise ValueError("window lengths must be positive numbers of seconds")
    errors = np.abs(pred - true) * lengths
    types = np.asarray(boundary_types, dtype=object)

    metrics = _stats(errors, "")
    for name in sorted(set(boundary_types)):
        metrics.update(_stats(errors[types == name], f"{name}/"))
    return metrics
