"""The least-squares projector start recovers a linear map hidden in synthetic frames."""

from __future__ import annotations

import numpy as np
import torch

from audiolora.builtin.align.features import AlignExample
from audiolora.builtin.align.projector_init import (
    even_assignment,
    fit_projector,
    monotonic_assignment,
)


def test_even_assignment_spreads_tokens_in_order() -> None:
    assert even_assignment(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert even_assignment(4, 1).tolist() == [0, 0, 0, 0]


def test_monotonic_assignment_follows_the_best_in_order_path() -> None:
    # Token 1 is clearly in frames 1-3, token 0 in frame 0, token 2 in frame 4.
    similarity = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    assert monotonic_assignment(similarity).tolist() == [0, 1, 1, 1, 2]
    # Never goes back, even where a later frame resembles an earlier token.
    similarity[4] = [1, 0, 0.5]
    assert monotonic_assignment(similarity).tolist() == [0, 1, 1, 1, 2]


def test_fit_recovers_a_hidden_linear_map_from_uneven_frames() -> None:
    rng = np.random.default_rng(0)
    vocab, width, audio_width = 50, 12, 16
    table = torch.tensor(rng.normal(size=(vocab, width)), dtype=torch.float32)
    hidden = rng.normal(size=(width, audio_width))  # audio frames = embedding @ hidden
    examples = []
    for _ in range(60):
        tokens = rng.integers(0, vocab, size=rng.integers(3, 7))
        repeats = rng.integers(1, 5, size=len(tokens))  # uneven: even spreading is wrong
        frames = np.repeat(table.numpy()[tokens], repeats, axis=0) @ hidden
        ids = torch.tensor([0, *tokens.tolist(), 1])  # one prompt token, answer, end of turn
        examples.append(AlignExample(torch.tensor(frames, dtype=torch.float16), ids, 1, ""))
    _, _, fit = fit_projector(examples, table, strength=1e-4, realign=1)
    assert fit["cosine_round_1"] > fit["cosine_round_0"]
    assert fit["cosine_round_1"] > 0.95
