"""The `temporal:` section of a recipe (seed 000): windows, boundaries, head and loss."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from audiolora.data.sessions import BOUNDARIES
from audiolora.settings import Section


class TemporalConfig(Section):
    """Temporal localization (seed 000): windows around phase boundaries, a regression head."""

    window_s: float = Field(30.0, gt=0)
    """Window length in seconds (the seed compares 30, 60 and 120)."""
    windows_per_boundary: int = Field(2, ge=1)
    """Training windows drawn around each boundary of each session, per epoch of data."""
    eval_windows_per_boundary: int = Field(1, ge=1)
    boundaries: list[str] = ["P1_start", "P1_end", "P2_start", "P2_end", "P3_start", "P3_end"]
    outside_fraction: float = Field(0.25, ge=0, lt=1)
    """Share of extra training windows that do not contain the boundary; their target is 0
    (boundary before the window) or 1 (after). They teach the head to say "not here", which the
    session-level coarse pass needs. 0 reproduces the seed's inside-only training."""
    transcript: bool = True
    """Put the window's transcript words in the prompt after the audio."""
    question_last: bool = False
    """Put the task sentence after the transcript instead of before it. The six questions of a
    window then differ only in their last ~25 tokens, which the session search shares
    (`models.shared_prefix`) instead of running the transcript six times. It changes what the
    model is trained on, so it is off unless a recipe asks (the temporal recipe does; runs
    keep the prompt they were trained with)."""
    audio: bool = True
    """Put the window's audio in the prompt. `false` with `transcript: true` is the text-only
    ablation (the seed's open question: what does audio add to the transcript?); it needs no
    audio encoder pass, so it also runs several times faster."""
    head_only: bool = False
    """Baseline: frozen backbone, only the regression head trains (no LoRA)."""
    loss: Literal["l1", "smooth_l1", "mse"] = "l1"
    """Loss on the normalized offset; L1 is the seed's MAE objective."""
    head_learning_rate: float | None = Field(None, gt=0)
    """Learning rate of the head (None: training.learning_rate)."""
    hop_s: float | None = Field(None, gt=0)
    """Session-level inference: hop of the coarse pass (None: half a window)."""
    fill_in: bool = False
    """Session-level inference: after the coarse vote, ask for each estimate the window half a
    hop over that holds it (a window between two coarse ones), and vote again before
    re-centring. A few windows more (up to one per boundary) for a second coarse vote where it
    counts; most useful with windows that touch (`hop_s` = `window_s`), see the README's
    Benchmark section."""
    any_phase_order: bool = False
    """Session-level inference: the phases may come in any order (the search tries all six and
    keeps the one the windows agree with best); off: always P1, P2, P3."""
    min_phase_s: float = Field(0.0, ge=0)
    """Session-level inference: a phase found shorter than this is reported absent (its start
    and end null) instead of forced into the recording. 0 (default) forces every phase: the
    head is not trained on absent phases, and a weak head squeezes present phases too (a
    random one does), so this is a rule to set for recordings where phases may be missing."""
    eval_seed: int = 1234
    """Seed of the held-out windows: fixed, so runs with different training seeds are scored on
    the same windows."""

    @field_validator("boundaries")
    @classmethod
    def _known_boundaries(cls, value: list[str]) -> list[str]:
        unknown = [b for b in value if b not in BOUNDARIES]
        if unknown or not value:
            raise ValueError(
                f"unknown boundary {unknown or '(none given)'}; choose from {list(BOUNDARIES)}"
            )
        return value

    @model_validator(mode="after")
    def _some_input(self) -> TemporalConfig:
        if not (self.audio or self.transcript):
            raise ValueError(
                "temporal.audio and temporal.transcript are both false: the window would hold "
                "nothing to localize from; keep at least one true"
            )
        return self
