"""Whole recordings: every boundary of a session, found by a coarse pass and a refining pass.

A user has whole recordings, not windows that happen to contain the boundary. `locate_boundaries`
searches a session in two passes: a coarse pass tiles the recording with overlapping windows, and
every window votes: a boundary at time t implies offset clip((t - start) / W, 0, 1) in each
window, and the coarse estimate is the t whose implied offsets disagree least (L1) with what the
head said, the boundaries kept in their phase order. One confused window cannot move the
estimate; windows far before or after the boundary, which the head should call 1 or 0, vote too.
A second pass re-centres a window on the estimate and asks again (a re-centred window that is
one of the coarse pass's was asked already, and boundaries whose windows coincide share one
pass), and the final time is the same ordered vote with the re-centred window's answer added:
it is the window that sees the boundary best, but it is one answer, and a confused one alone
would decide. With `fill_in`, a window half a hop over from each coarse estimate votes too,
before the re-centring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import permutations
from typing import Any

import numpy as np
from transformers import ProcessorMixin

from audiolora.data.sessions import BOUNDARIES, PHASE_ORDER, SessionRecord, boundary_order
from audiolora.data.windows import Window, coarse_windows, window_words
from audiolora.evaluation.temporal_metrics import boundary_error, localization_metrics
from audiolora.models.heads.regression import OffsetRegressor
from audiolora.models.shared_prefix import can_share_prefix
from audiolora.tasks.temporal.windows import (
    WindowDataset,
    predict_offsets,
    predict_offsets_shared,
)


def locate_boundaries(
    model: OffsetRegressor,
    processor: ProcessorMixin,
    session: SessionRecord,
    boundaries: Sequence[str],
    *,
    window_s: float,
    hop_s: float,
    sampling_rate: int = 16000,
    transcript: bool = True,
    audio: bool = True,
    batch_size: int = 4,
    progress: bool = False,
    share_prefix: bool = True,
    question_last: bool = False,
    min_phase_s: float = 0.0,
    any_order: bool = False,
    workers: int = 1,
    fill_in: bool = False,
    coarse: Sequence[float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Boundary times in a whole recording: coarse pass, then a re-centred refining pass.

    `share_prefix` runs each coarse window's audio and common prompt beginning once for all its
    boundary questions, where the family allows (same numbers, several times faster); False
    gives the one-prompt-at-a-time path. `question_last`: the run's prompt order
    (`temporal.question_last`). A phase whose found start and end lie less than `min_phase_s`
    apart is reported absent: `time_s` None for both. `any_order`: the phases may come in any
    order (the best of the six orders; each phase's start still before its end), and every
    boundary's entry says the `phase_order` found. `workers`: processes the shared coarse
    pass's windows are spread over (`parallel.spread`; same numbers). `fill_in`: see
    `search_session`. `coarse`: that pass's
    answers, computed already (`coarse_pass_windows`, e.g. for several recordings at once).
    Returns boundary -> {"time_s", "coarse_s", "window_start_s" (the re-centred window's),
    "refined_offset" (its answer), "coarse_pass": [[start, said offset], ...]} and, with
    `any_order`, "phase_order".
    Recordings shorter than the window are seen as one shorter window.
    """
    boundaries = sorted(boundaries, key=BOUNDARIES.index)  # time order, for the ordered search
    length, starts = coarse_grid(session.duration, window_s, hop_s)

    prompts = {
        "sampling_rate": sampling_rate,
        "transcript": transcript,
        "audio": audio,
        "question_last": question_last,
    }

    def windows_at(pairs: list[tuple[str, float]]) -> WindowDataset:
        return session_windows(model, processor, session, pairs, length, **prompts)

    shared = share_prefix and can_share_prefix(model.family, model.backbone)
    if coarse is not None and (not shared or len(coarse) != len(starts) * len(boundaries)):
        raise ValueError(
            f"coarse: {len(coarse)} answers given for a shared pass of {len(starts)} windows x "
            f"{len(boundaries)} boundaries (shared: {shared})"
        )
    if shared:
        # Window by window, all boundary questions over one pass of the window's audio.
        if coarse is None:
            asked = coarse_pass_windows(
                model, processor, session, boundaries, window_s=window_s, hop_s=hop_s, **prompts
            )
            coarse = predict_offsets_shared(
                model,
                asked,
                group=len(boundaries),
                desc="coarse pass",
                progress=progress,
                workers=workers,
            )
        said = np.asarray(coarse, dtype=np.float64).reshape(len(starts), len(boundaries)).T
    else:
        pairs = [(name, start) for name in boundaries for start in starts]
        coarse = predict_offsets(
            model, windows_at(pairs), batch_size=batch_size, desc="coarse pass", progress=progress
        )
        said = np.asarray(coarse, dtype=np.float64).reshape(len(boundaries), len(starts))

    def ask(fresh: list[tuple[str, float]]) -> list[float]:
        """The refining windows that are not coarse ones: windows that start together share
        one pass (the same window, the same answers)."""
        answers: dict[tuple[str, float], float] = {}
        if shared:
            for start in sorted({start for _, start in fresh}):
                group = [pair for pair in fresh if pair[1] == start]
                said_here = predict_offsets_shared(
                    model, windows_at(group), group=len(group), desc="refine", progress=False
                )
                answers.update(zip(group, said_here, strict=True))
        elif fresh:
            said_fresh = predict_offsets(
                model, windows_at(fresh), batch_size=batch_size, desc="refine", progress=progress
            )
            answers.update(zip(fresh, said_fresh, strict=True))
        return [answers[pair] for pair in fresh]

    return search_session(
        session.duration,
        boundaries,
        starts,
        length,
        said,
        ask,
        min_phase_s=min_phase_s,
        any_order=any_order,
        fill_in=fill_in,
    )


def search_session(
    duration: float,
    boundaries: Sequence[str],
    starts: Sequence[float],
    length: float,
    said: np.ndarray,
    ask: Callable[[list[tuple[str, float]]], Sequence[float]],
    *,
    min_phase_s: float = 0.0,
    any_order: bool = False,
    revote: bool = True,
    fill_in: bool = False,
) -> dict[str, dict[str, Any]]:
    """The search of `locate_boundaries` on the coarse pass's answers, without the model.

    `boundaries` in time order; `said[b, w]`: the offset window `starts[w]` said for boundary
    b; `ask(pairs)`: the offsets of (boundary, window start) refining windows the coarse pass
    did not have. `revote`: the final times are the ordered vote of every window, the
    re-centred ones included (False: each boundary's re-centred window alone, the search
    before issue 16; `benchmarks/search_hop.py` compares them). `fill_in`: between the coarse
    vote and the re-centring, ask for each estimate the window half a hop over that holds it
    and vote again: a second vote where a boundary is, for up to one window per boundary
    (`temporal.fill_in`). Every vote keeps the phase order the coarse pass chose. Apart from
    the model so that the search itself can be studied on simulated or recorded answers.
    """
    # Every boundary's voters: window start -> what it said (matched to the microsecond: a
    # start computed as t - length / 2 can miss an equal coarse start by a rounding error).
    voters = [
        {round(s, 6): (s, float(p)) for s, p in zip(starts, row, strict=True)} for row in said
    ]

    def ask_missing(pairs: list[tuple[str, float]]) -> None:
        missing = [(n, s) for n, s in pairs if round(s, 6) not in voters[boundaries.index(n)]]
        if missing:
            for (name, start), p in zip(missing, ask(missing), strict=True):
                voters[boundaries.index(name)][round(start, 6)] = (start, float(p))

    def disagreements() -> tuple[np.ndarray, np.ndarray]:
        """Every time where some voter's disagreement bends, and each boundary's summed
        disagreement at those times."""
        columns = [np.array(list(v.values())).T for v in voters]  # (starts, said) per boundary
        grid = np.unique(
            np.concatenate([candidate_times(st, length, sd, duration) for st, sd in columns])
        )
        return grid, np.stack([disagreement(grid, st, length, sd) for st, sd in columns])

    def vote(grid: np.ndarray, costs: np.ndarray) -> dict[str, float]:
        """The ordered vote of the windows those disagreements count, boundary -> time."""
        times = np.empty(len(boundaries))
        times[in_time] = grid[ordered_argmin(costs[in_time])]
        return dict(zip(boundaries, times.tolist(), strict=True))

    grid, costs = disagreements()
    order, in_time = best_phase_order(costs, boundaries, any_order)
    estimates = vote(grid, costs)
    coarse = dict(estimates)
    if fill_in:
        # Windows that touch give a boundary one inside vote: ask, for each estimate, the
        # window between two coarse ones (starting halfway between their starts) that holds
        # it, the one centred nearest, and vote again.
        between = (np.asarray(starts[:-1]) + np.asarray(starts[1:])) / 2
        pairs = []
        for name, t in estimates.items():
            holding = between[(between <= t) & (t <= between + length)]
            if len(holding):
                pairs.append((name, float(holding[np.argmin(np.abs(holding + length / 2 - t))])))
        ask_missing(pairs)
        estimates = vote(*disagreements())
    refine_pairs = [
        (name, min(max(t - length / 2, 0.0), duration - length)) for name, t in estimates.items()
    ]
    # A refining window that was asked already (a coarse one, say) is not asked again;
    # refining windows that start together share one pass.
    ask_missing(refine_pairs)
    answers = {
        name: voters[boundaries.index(name)][round(start, 6)][1] for name, start in refine_pairs
    }
    if revote:
        # The re-centred window joins the other windows' vote, so one confused answer of it
        # cannot decide a boundary alone.
        found = vote(*disagreements())
    else:
        # Each boundary is refined in its own window, so a weak head can undo the coarse
        # pass's phase order (P2_end before P2_start); a running maximum (in the order found)
        # restores it.
        raw = np.array([start + answers[name] * length for name, start in refine_pairs])
        times = np.empty_like(raw)
        times[in_time] = np.maximum.accumulate(raw[in_time])
        found = dict(zip(boundaries, times.tolist(), strict=True))
    absent = {
        name
        for phase in ("P1", "P2", "P3")
        if f"{phase}_start" in found
        and f"{phase}_end" in found
        and found[f"{phase}_end"] - found[f"{phase}_start"] < min_phase_s
        for name in (f"{phase}_start", f"{phase}_end")
    }
    return {
        name: {
            "time_s": None if name in absent else float(found[name]),
            "coarse_s": coarse[name],
            **({"filled_s": estimates[name]} if fill_in else {}),
            **({"phase_order": list(order)} if any_order else {}),
            "window_start_s": start,
            "refined_offset": answers[name],
            "coarse_pass": [[round(s, 2), float(q)] for s, q in zip(starts, row, strict=True)],
        }
        for (name, start), row in zip(refine_pairs, said, strict=True)
    }


def session_windows(
    model: OffsetRegressor,
    processor: ProcessorMixin,
    session: SessionRecord,
    pairs: Sequence[tuple[str, float]],
    length: float,
    sampling_rate: int,
    transcript: bool,
    audio: bool,
    question_last: bool,
) -> WindowDataset:
    """The (boundary question, window start) `pairs` of one recording as prompts."""
    windows = [
        Window(0, name, start, length, 0.0, window_words(session.words, start, length))
        for name, start in pairs
    ]
    # The head's output order, not the search's time order, indexes the answers.
    return WindowDataset(
        model.family,
        [session],
        windows,
        processor,
        sampling_rate,
        transcript,
        audio,
        model.boundaries,
        question_last,
    )


def coarse_grid(duration: float, window_s: float, hop_s: float) -> tuple[float, list[float]]:
    """The coarse pass's window length and starts over a recording of `duration` seconds; a
    recording shorter than the window is one shorter window."""
    length = min(window_s, duration)
    return length, coarse_windows(duration, length, min(hop_s, length))


def coarse_pass_windows(
    model: OffsetRegressor,
    processor: ProcessorMixin,
    session: SessionRecord,
    boundaries: Sequence[str],
    *,
    window_s: float,
    hop_s: float,
    sampling_rate: int = 16000,
    transcript: bool = True,
    audio: bool = True,
    question_last: bool = False,
) -> WindowDataset:
    """The shared coarse pass of `locate_boundaries` as prompts: window by window, each
    boundary's question in time order. Built apart so the answers of several recordings can be
    computed at once (`predict_offsets_shared_many`) and handed to it as `coarse`."""
    boundaries = sorted(boundaries, key=BOUNDARIES.index)
    length, starts = coarse_grid(session.duration, window_s, hop_s)
    pairs = [(name, start) for start in starts for name in boundaries]
    return session_windows(
        model, processor, session, pairs, length, sampling_rate, transcript, audio, question_last
    )


def best_phase_order(
    costs: np.ndarray, boundaries: Sequence[str], any_order: bool
) -> tuple[tuple[str, ...], list[int]]:
    """The phase order whose ordered search costs least (the usual one unless `any_order`),
    and the rows of `costs` (one per boundary, in `boundaries` order) in that time order."""
    orders = list(permutations(PHASE_ORDER)) if any_order else [PHASE_ORDER]
    best: tuple[float, tuple[str, ...], list[int]] | None = None
    for order in orders:
        in_time = [boundaries.index(b) for b in boundary_order(order) if b in boundaries]
        picks = ordered_argmin(costs[in_time])
        total = float(costs[in_time, picks].sum())
        if best is None or total < best[0] - 1e-9:
            best = (total, order, in_time)
    assert best is not None
    return best[1], best[2]


def candidate_times(
    starts: np.ndarray, length: float, said: np.ndarray, duration: float
) -> np.ndarray:
    """Every time where some window's disagreement bends: its start, its end and the time its
    offset names. Disagreements are piecewise linear in t, so the (ordered) best lies on one."""
    named = (starts[None, :] + said * length).ravel()
    times = np.concatenate([starts, starts + length, named, [0.0, duration]])
    return np.unique(np.clip(times, 0.0, duration))


def disagreement(
    grid: np.ndarray, starts: np.ndarray, length: float, said: np.ndarray
) -> np.ndarray:
    """For a boundary at each grid time: sum over windows of |implied offset - said offset|."""
    implied = np.clip((grid[:, None] - starts[None, :]) / length, 0.0, 1.0)
    return np.abs(implied - said[None, :]).sum(axis=1)


def ordered_argmin(costs: np.ndarray) -> np.ndarray:
    """Grid indices i_0 <= i_1 <= ... (one per row, rows in time order) minimising the summed
    cost: boundaries of a session come in phase order, so a search may not swap them."""
    n_rows, n_grid = costs.shape
    total = costs[0].copy()
    came_from = np.zeros((n_rows, n_grid), dtype=np.int64)
    for row in range(1, n_rows):
        best_before = np.minimum.accumulate(total)  # best total with the previous index <= here
        came_from[row] = _running_argmin(total)
        total = costs[row] + best_before
    picks = np.zeros(n_rows, dtype=np.int64)
    picks[-1] = int(np.argmin(total))
    for row in range(n_rows - 1, 0, -1):
        picks[row - 1] = came_from[row][picks[row]]
    return picks


def _running_argmin(values: np.ndarray) -> np.ndarray:
    """out[i] = index of the smallest of values[: i + 1] (the first one on ties)."""
    out = np.zeros(len(values), dtype=np.int64)
    for i in range(1, len(values)):
        out[i] = i if values[i] < values[out[i - 1]] else out[i - 1]
    return out


def phase_prior(sessions: Sequence[SessionRecord], boundaries: Sequence[str]) -> dict[str, float]:
    """Each boundary's mean position as a fraction of the recording, over `sessions`.

    Why: placing every boundary at its usual share of a new recording needs no model at all;
    on recordings with regular phase lengths it is hard to beat, so a session-level result is
    only worth its gap to this reference.
    """
    return {
        name: float(np.mean(fractions))
        for name in boundaries
        if (
            fractions := [s.boundaries[name] / s.duration for s in sessions if name in s.boundaries]
        )
    }


def session_errors(
    predicted: dict[str, dict[str, Any]], session: SessionRecord
) -> dict[str, float | str]:
    """Per boundary the session annotates: |predicted - annotated| in seconds where both are
    times, "missed" for a present phase reported absent, "invented" for an absent phase
    (null in the manifest) given a time."""
    errors: dict[str, float | str] = {}
    for name, found in predicted.items():
        if name in session.boundaries or name in session.absent:
            error = boundary_error(session.boundaries.get(name), found["time_s"])
            if error is not None:
                errors[name] = error
    return errors


def session_metrics(errors: list[dict[str, float | str]]) -> dict[str, float]:
    """Session-level MAE over all (session, boundary) pairs with both times, per boundary type
    too; presence mistakes (`missed`, `invented`) are counted apart, since a phase reported
    absent has no time to be wrong by."""
    flat = [(name, e) for per_session in errors for name, e in per_session.items()]
    timed = [(n, e) for n, e in flat if not isinstance(e, str)]
    presence = {kind: sum(e == kind for _, e in flat) for kind in ("missed", "invented")}
    if not timed:
        return {**presence} if any(presence.values()) else {}
    names = [n for n, _ in timed]
    values = [float(e) for _, e in timed]
    # Offsets 0 vs error/1 with unit "windows" give errors in seconds directly.
    metrics = localization_metrics(values, [0.0] * len(values), [1.0] * len(values), names)
    return {**metrics, **presence}
