"""Fixed-length windows around phase boundaries: the training examples of temporal localization.

Why: a model cannot regress a boundary time over a whole hour-long session, but it can say where
in a short window (30 s in the paper) a phase begins or ends. So each example is a window of
`window_s` seconds placed around one annotated boundary, and the target is the boundary's
normalized position in it, `offset = (t_boundary - start) / length` in [0, 1]. The offset is
drawn uniformly, so the model cannot learn "the boundary is always in the middle"; near the
start or end of a recording the window is pushed back inside and the offset recomputed, so the
target stays exact to the window actually cut. Sessions come from `data.sessions`.

For session-level inference, `coarse_windows` tiles a whole recording with overlapping windows.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from audiolora.data.manifest import is_number
from audiolora.data.sessions import SessionRecord, Word, check_boundary_names, word_midpoint

_PHASE_WORDS = {
    "P1": "the orientation (P1)",
    "P2": "the imaginal exposure narrative (P2)",
    "P3": "the post-imaginal processing (P3)",
}
_EDGE_WORDS = {"start": "begin", "end": "end"}


@dataclass(frozen=True)
class Window:
    """One training example: `length` seconds of session `session` from `start`, and where in
    it `boundary` lies as `offset` in [0, 1]."""

    session: int
    """Index of the session in the list given to `sample_windows`."""
    boundary: str
    start: float
    length: float
    offset: float
    """Normalized target: (t_boundary - start) / length."""
    words: tuple[str, ...] = field(default=())
    """Transcript words whose midpoint lies in [start, start + length), in time order."""
    inside: bool = True
    """False for a window that misses its boundary (target 0 or 1 says on which side)."""

    @property
    def boundary_time(self) -> float:
        """The boundary in seconds from the start of the recording."""
        return self.start + self.offset * self.length


def window_words(words: Sequence[Word], start: float, length: float) -> tuple[str, ...]:
    """Texts of the words (sorted by midpoint) whose midpoint lies in [start, start + length).

    Half-open, so windows that tile a session (see `coarse_windows`) never share a word at
    their common edge.
    """
    lo = bisect.bisect_left(words, start, key=word_midpoint)
    hi = bisect.bisect_left(words, start + length, key=word_midpoint)
    return tuple(w.text for w in words[lo:hi])


def sample_windows(
    sessions: list[SessionRecord],
    window_s: float,
    per_boundary: int,
    boundaries: tuple[str, ...],
    rng: random.Random,
) -> list[Window]:
    """`per_boundary` windows of `window_s` s around each of `boundaries` in every session.

    The boundary's offset is drawn uniformly from [0, 1]; a window that would start before 0 or
    end after the recording is moved inside it and its offset recomputed from the moved start,
    so `start <= t_boundary <= start + length` and `start + offset * length == t_boundary`
    (to float rounding) always hold. Boundaries closer than `window_s` to an edge therefore get
    offsets skewed toward that edge, which is what the audio shows. The same `rng` state gives
    the same windows. Raises ValueError for a session the windows cannot fit (shorter than the
    window, boundary missing or outside the recording): `read_sessions` reports those as
    problems before this is called.
    """
    if not (is_number(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    if per_boundary < 0:
        raise ValueError(f"per_boundary must be >= 0, got {per_boundary}")
    check_boundary_names(boundaries)
    windows = []
    for index, session in enumerate(sessions):
        if session.duration < window_s:
            raise ValueError(
                f"session {index} ({session.audio}) is {session.duration} s long, shorter than "
                f"the {window_s} s window"
            )
        for name in boundaries:
            if name in session.absent:
                continue  # that phase is not in this recording: nothing to window around
            t = session.boundaries.get(name)
            if t is None or not 0 <= t <= session.duration:
                raise ValueError(
                    f"session {index} ({session.audio}): boundary {name} is {t!r}, not a time "
                    f"within the recording (0 to {session.duration} s)"
                )
            for _ in range(per_boundary):
                start = t - rng.uniform(0.0, 1.0) * window_s
                start = min(max(start, 0.0), session.duration - window_s)
                # Recomputed even when unclipped: the target must match the start actually used.
                offset = min(max((t - start) / window_s, 0.0), 1.0)
                words = window_words(session.words, start, window_s)
                windows.append(Window(index, name, start, window_s, offset, words))
    return windows


def coarse_windows(duration: float, window_s: float, hop_s: float) -> list[float]:
    """Start times of windows every `hop_s` s that cover [0, duration], the last one ending
    exactly at `duration` (so it may overlap its neighbour more than the others do).

    For session-level inference: every moment of the session is seen by at least one window.
    A session shorter than the window gets the single start 0.0 (the caller cuts it short).
    """
    if not (is_number(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    if not (is_number(hop_s) and 0 < hop_s <= window_s):
        raise ValueError(
            f"hop_s must be in (0, window_s={window_s}] so windows leave no gap, got {hop_s!r}"
        )
    if not (is_number(duration) and duration >= 0):
        raise ValueError(f"duration must be a non-negative number of seconds, got {duration!r}")
    last = duration - window_s
    if last <= 0:
        return [0.0]
    # k * hop rather than a running sum, so starts do not drift over an hour of hops.
    starts = []
    k = 0
    while k * hop_s < last - 1e-9:
        starts.append(k * hop_s)
        k += 1
    starts.append(last)
    return starts


def window_prompt(boundary: str, *, window_s: float | None = None) -> str:
    """The task instruction for one boundary type, e.g. "Where in this 30-second window does
    the imaginal exposure narrative (P2) begin? ...".

    One plain sentence per boundary, so the model is told which of the six it is looking for.
    """
    return (
        f"Where in {_span(window_s)} does {boundary_words(boundary)}? "
        "Answer with the position, from 0 (start of the window) to 1 (end)."
    )


def answer_format(window_s: float | None = None) -> str:
    """What `window_prompt` says of every boundary, said first: for prompts that ask
    `short_question` last (`temporal.question_last`)."""
    return f"Answer with a position in {_span(window_s)}, from 0 (start) to 1 (end)."


def short_question(boundary: str) -> str:
    """The boundary question alone, e.g. "Where does the orientation (P1) end?": prompts
    that ask it last differ in their last dozen tokens only."""
    return f"Where does {boundary_words(boundary)}?"


def boundary_words(boundary: str) -> str:
    """ "the orientation (P1) end" for "P1_end"."""
    check_boundary_names((boundary,))
    phase, _, edge = boundary.partition("_")
    return f"{_PHASE_WORDS[phase]} {_EDGE_WORDS[edge]}"


def _span(window_s: float | None) -> str:
    return "this window" if window_s is None else f"this {window_s:g}-second window"
