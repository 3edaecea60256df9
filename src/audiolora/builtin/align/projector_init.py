"""A least-squares start for the projector: audio frames mapped near the words they carry.

Why: a fresh projector sends every clip to the same region of the LM's embedding space, and
gradient descent through 30 LM layers takes many CPU steps to find its way out. A ridge
regression from tower frames to the input embeddings of the transcript's tokens gives it a
start in one linear solve. Which frame carries which token is unknown, so the first fit spreads
the tokens evenly over the clip's frames; then each clip's frames are re-assigned to its tokens
by the monotonic path that agrees best with the first fit's projections (a DTW over frames x
tokens), and the regression is solved again on that assignment.
"""

from __future__ import annotations

import numpy as np
import torch

from audiolora.builtin.align.features import AlignExample


def even_assignment(frames: int, tokens: int) -> np.ndarray:
    """Token index of each frame when `tokens` tokens share `frames` frames evenly in order."""
    return np.minimum((np.arange(frames) * tokens) // max(frames, 1), tokens - 1)


def monotonic_assignment(similarity: np.ndarray) -> np.ndarray:
    """Token index per frame on the in-order path of highest total similarity.

    `similarity` is (frames, tokens). Frame 0 takes token 0, the last frame the last token, and
    each next frame keeps its token or moves on to the next one (every token gets a frame when
    there are at least as many frames as tokens)."""
    frames, tokens = similarity.shape
    if tokens == 1 or frames < tokens:
        return even_assignment(frames, tokens)
    score = np.full((frames, tokens), -np.inf)
    came_from_previous = np.zeros((frames, tokens), dtype=bool)
    score[0, 0] = similarity[0, 0]
    for j in range(1, frames):
        stay = score[j - 1]
        advance = np.concatenate([[-np.inf], score[j - 1, :-1]])
        came_from_previous[j] = advance > stay
        score[j] = np.maximum(stay, advance) + similarity[j]
    path = np.empty(frames, dtype=np.int64)
    k = tokens - 1
    for j in range(frames - 1, -1, -1):
        path[j] = k
        if j and came_from_previous[j, k]:
            k -= 1
    return path


def _ridge(x: np.ndarray, y: np.ndarray, strength: float) -> np.ndarray:
    """(d+1, out) weights with the bias as last row; the bias is not shrunk."""
    xb = np.hstack([x, np.ones((len(x), 1), dtype=x.dtype)]).astype(np.float64)
    gram = xb.T @ xb
    penalty = strength * np.trace(gram[:-1, :-1]) / (gram.shape[0] - 1)
    gram[np.arange(gram.shape[0] - 1), np.arange(gram.shape[0] - 1)] += penalty
    return np.linalg.solve(gram, xb.T @ y.astype(np.float64))


def _answer_tokens(example: AlignExample) -> torch.Tensor:
    """The transcript's tokens (the answer without the end-of-turn token)."""
    return example.input_ids[example.answer_start : -1]


def fit_projector(
    examples: list[AlignExample],
    embeddings: torch.Tensor,
    strength: float = 1e-3,
    realign: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(weight (out, d), bias (out,), fit summary) of the projector that maps tower frames onto
    the token embeddings they are assigned to; `realign` re-assignment passes after the first.

    `strength` scales the ridge penalty by the mean variance of the frames."""
    usable = [e for e in examples if len(_answer_tokens(e)) > 0]
    if not usable:
        raise ValueError("no example has transcript tokens to fit the projector on")
    table = embeddings.detach().float().numpy()
    x = np.concatenate([e.audio.float().numpy() for e in usable])
    token_rows = [table[_answer_tokens(e).numpy()] for e in usable]
    assignments = [
        even_assignment(len(e.audio), len(t)) for e, t in zip(usable, token_rows, strict=True)
    ]
    summary: dict[str, float] = {}
    for round_ in range(realign + 1):
        y = np.concatenate([t[a] for t, a in zip(token_rows, assignments, strict=True)])
        weights = _ridge(x, y, strength)
        predicted = np.hstack([x, np.ones((len(x), 1))]) @ weights
        cosine = _row_cosine(predicted, y)
        summary[f"cosine_round_{round_}"] = float(cosine.mean())
        if round_ == realign:
            break
        offset = 0
        new_assignments = []
        for e, tokens in zip(usable, token_rows, strict=True):
            frames = predicted[offset : offset + len(e.audio)]
            offset += len(e.audio)
            new_assignments.append(monotonic_assignment(_cosine_matrix(frames, tokens)))
        assignments = new_assignments
    weight = torch.tensor(weights[:-1].T, dtype=torch.float32)
    bias = torch.tensor(weights[-1], dtype=torch.float32)
    return weight, bias, summary


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-8)


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (_unit(a) * _unit(b)).sum(-1)


def _cosine_matrix(frames: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    return _unit(frames) @ _unit(tokens).T
