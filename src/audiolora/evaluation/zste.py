"""ZSTE, the zero-shot temporal evaluation of seed 002, plus zero-shot retrieval (retention).

Every question is answered by ranking captions by cosine similarity to the clip, none of them
seen as a training target in this form:
- `zste_single`: a single-event clip against every class ("the sound of C"): zero-shot
  classification;
- `zste_pair`: a two-event clip, "A and B" against `distractors` other pairs sharing at most one
  event with it;
- `zste_order`: a sequence clip, "A, then B" against "B, then A" (chance 50 %), averaged over
  the phrasings;
- `zste_overlap`: any two-event clip, "A, then B" against "A while B" (chance 50 %), averaged
  over the phrasings;
- `a2t_r@k` / `t2a_r@k`: retrieval among the held-out single-event clips and the class captions
  (a hit when a caption / clip of the right class is among the top k).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from audiolora.data.sound_events import (
    BEFORE_PHRASES,
    WHILE_PHRASES,
    SoundEvent,
    caption,
)

EmbedFn = Callable[[list[Any]], torch.Tensor]
RECALL_AT = (1, 5, 10)


def pair_candidates(
    labels: tuple[str, ...], classes: Sequence[str], n: int, rng: random.Random
) -> list[tuple[str, str]]:
    """The true pair first, then `n` distinct distractor pairs that share at most one event."""
    a, b = labels
    truth = frozenset(labels)
    seen = {truth}
    out = [(a, b)]
    others = [c for c in classes if c not in truth]
    tries = 0
    while len(out) < n + 1 and tries < 50 * (n + 1):
        tries += 1
        keep = rng.choice([a, b, None])
        x = keep if keep else rng.choice(others)
        y = rng.choice([c for c in classes if c != x])
        key = frozenset((x, y))
        if key not in seen and len(key) == 2:
            seen.add(key)
            out.append((x, y))
    return out


def zste_metrics(
    audio_embeddings: torch.Tensor,
    events: Sequence[SoundEvent],
    classes: Sequence[str],
    embed_texts: EmbedFn,
    *,
    distractors: int = 9,
    seed: int = 0,
) -> dict[str, Any]:
    """All ZSTE accuracies and retrieval recalls from unit-length clip embeddings (one row per
    event, in order) and a text embedder; a task with no clip gets None."""
    rng = random.Random(seed)
    texts: dict[str, int] = {}
    questions: list[tuple[str, int, list[str]]] = []  # (task, clip, candidates, truth first)

    def ask(task: str, clip: int, candidates: list[str]) -> None:
        for c in candidates:
            texts.setdefault(c, len(texts))
        questions.append((task, clip, candidates))

    class_captions = [caption((c,), "single", 1) for c in classes]
    for i, e in enumerate(events):
        if e.relation == "single":
            truth = classes.index(e.labels[0])
            ask(
                "single",
                i,
                [class_captions[truth]] + class_captions[:truth] + class_captions[truth + 1 :],
            )
            continue
        pairs = pair_candidates(e.labels, classes, distractors, rng)
        ask("pair", i, [caption(p, "before", 0, order=False) for p in pairs])
        a, b = e.labels
        if e.relation == "before":
            for p in range(len(BEFORE_PHRASES)):
                ask("order", i, [caption((a, b), "before", p), caption((b, a), "before", p)])
        for p in range(len(WHILE_PHRASES)):
            seq = caption((a, b), "before", p)
            both = caption((a, b), "while", p)
            ask("overlap", i, [both, seq] if e.relation == "while" else [seq, both])

    text_emb = embed_texts(list(texts)) if texts else torch.zeros(0)
    correct: dict[str, list[bool]] = {t: [] for t in ("single", "pair", "order", "overlap")}
    for task, clip, candidates in questions:
        scores = text_emb[[texts[c] for c in candidates]] @ audio_embeddings[clip]
        correct[task].append(int(torch.argmax(scores)) == 0)
    metrics: dict[str, Any] = {
        f"zste_{t}": float(np.mean(v)) if v else None for t, v in correct.items()
    }
    present = [v for v in metrics.values() if v is not None]
    metrics["zste_mean"] = float(np.mean(present)) if present else None
    metrics.update(retrieval(audio_embeddings, events, classes, text_emb, texts, class_captions))
    metrics["n"] = len(events)
    return metrics


def retrieval(
    audio_embeddings: torch.Tensor,
    events: Sequence[SoundEvent],
    classes: Sequence[str],
    text_emb: torch.Tensor,
    texts: dict[str, int],
    class_captions: list[str],
) -> dict[str, float | None]:
    singles = [i for i, e in enumerate(events) if e.relation == "single"]
    if not singles:
        return {f"{d}_r@{k}": None for d in ("a2t", "t2a") for k in RECALL_AT}
    labels = [classes.index(events[i].labels[0]) for i in singles]
    sims = (
        audio_embeddings[singles] @ text_emb[[texts[c] for c in class_captions]].T
    )  # clips x classes
    out: dict[str, float | None] = {}
    a2t_rank = (sims > sims[torch.arange(len(labels)), labels].unsqueeze(1)).sum(1)
    for k in RECALL_AT:
        out[f"a2t_r@{k}"] = float((a2t_rank < k).float().mean())
    # text -> audio: each class caption present among the clips ranks every clip.
    labels_t = torch.tensor(labels)
    hits = {k: [] for k in RECALL_AT}
    for c in sorted(set(labels)):
        order = torch.argsort(sims[:, c], descending=True)
        first = int(torch.nonzero(labels_t[order] == c)[0])
        for k in RECALL_AT:
            hits[k].append(first < k)
    for k in RECALL_AT:
        out[f"t2a_r@{k}"] = float(np.mean(hits[k]))
    return out
