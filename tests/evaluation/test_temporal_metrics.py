"""Localization metrics in seconds, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from audiolora.evaluation.temporal_metrics import localization_metrics, summarize_over_seeds


def test_errors_are_offsets_times_window_length_in_seconds() -> None:
    m = localization_metrics([0.5, 0.6], [0.5, 0.5], [30.0, 30.0], ["P2_start", "P2_start"])
    # Errors: |0.5 - 0.5| * 30 = 0 s and |0.6 - 0.5| * 30 = 3 s.
    assert m["mae_s"] == pytest.approx(1.5)
    assert m["median_ae_s"] == pytest.approx(1.5)
    assert m["within_5s"] == 1.0
    assert m["within_10s"] == 1.0
    assert m["count"] == 2
    assert m["P2_start/mae_s"] == pytest.approx(1.5)


def test_metrics_per_boundary_type_and_overall() -> None:
    pred = [0.5, 0.6, 0.0, 1.0, 0.25]
    true = [0.5, 0.5, 0.1, 0.5, 0.5]
    lengths = [30.0, 30.0, 60.0, 30.0, 120.0]
    types = ["P1_start", "P1_start", "P2_end", "P2_end", "P2_end"]
    m = localization_metrics(pred, true, lengths, types)
    # Errors (s): P1_start 0, 3; P2_end 6, 15, 30.
    assert m["mae_s"] == pytest.approx((0 + 3 + 6 + 15 + 30) / 5)
    assert m["median_ae_s"] == pytest.approx(6.0)
    assert m["within_5s"] == pytest.approx(2 / 5)
    assert m["within_10s"] == pytest.approx(3 / 5)
    assert m["P1_start/mae_s"] == pytest.approx(1.5)
    assert m["P1_start/within_5s"] == 1.0
    assert m["P2_end/mae_s"] == pytest.approx(17.0)
    assert m["P2_end/median_ae_s"] == pytest.approx(15.0)
    assert m["P2_end/within_5s"] == 0.0
    assert m["P2_end/within_10s"] == pytest.approx(1 / 3)
    assert m["P2_end/count"] == 3
    assert not any(k.startswith("P3") for k in m)


def test_an_error_of_exactly_the_tolerance_counts_as_within() -> None:
    # 0.7 - 0.6 in floats is 0.09999999999999998; times 50 s it must still be "within 5 s".
    m = localization_metrics([0.7], [0.6], [50.0], ["P3_start"])
    assert m["within_5s"] == 1.0


def test_predictions_outside_zero_one_are_scored_as_given() -> None:
    m = localization_metrics([1.5], [1.0], [30.0], ["P3_end"])
    assert m["mae_s"] == pytest.approx(15.0)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="lengths differ"):
        localization_metrics([0.1], [0.1, 0.2], [30.0, 30.0], ["P1_start", "P1_start"])
    with pytest.raises(ValueError, match="no windows"):
        localization_metrics([], [], [], [])
    with pytest.raises(ValueError, match="finite"):
        localization_metrics([math.nan], [0.5], [30.0], ["P1_start"])
    with pytest.raises(ValueError, match="positive"):
        localization_metrics([0.5], [0.5], [0.0], ["P1_start"])


def test_summarize_over_seeds_gives_mean_and_sample_std() -> None:
    runs = [
        {"mae_s": 5.0, "within_5s": 0.5, "model": "r8"},
        {"mae_s": 6.0, "within_5s": 0.7, "model": "r8"},
        {"mae_s": 7.0, "within_5s": 0.6, "model": "r8"},
    ]
    s = summarize_over_seeds(runs)
    assert set(s) == {"mae_s", "within_5s"}  # the model name is not a number
    # mae: mean 6, deviations -1, 0, 1 -> sum of squares 2 / (3 - 1) = 1 -> std 1.
    assert s["mae_s"]["mean"] == pytest.approx(6.0)
    assert s["mae_s"]["std"] == pytest.approx(1.0)
    # within_5s: mean 0.6, deviations -0.1, 0.1, 0 -> 0.02 / 2 = 0.01 -> std 0.1.
    assert s["within_5s"]["mean"] == pytest.approx(0.6)
    assert s["within_5s"]["std"] == pytest.approx(0.1)


def test_summarize_one_seed_has_zero_std_and_real_metrics_summarize() -> None:
    m = localization_metrics([0.5, 0.6], [0.5, 0.5], [30.0, 30.0], ["P2_start", "P2_start"])
    s = summarize_over_seeds([m])
    assert s["mae_s"] == {"mean": pytest.approx(1.5), "std": 0.0}
    assert s["P2_start/count"] == {"mean": 2.0, "std": 0.0}


def test_summarize_refuses_runs_with_different_metrics() -> None:
    with pytest.raises(ValueError, match=r"run 2 .* missing \['P3_end/mae_s'\]"):
        summarize_over_seeds([{"mae_s": 1.0, "P3_end/mae_s": 2.0}, {"mae_s": 1.0}])
    with pytest.raises(ValueError, match="no runs"):
        summarize_over_seeds([])
