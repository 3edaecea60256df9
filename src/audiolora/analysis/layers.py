"""Where does an audio LM carry *who* speaks, and where *what* is said? (seed 004's analyses)

Each clip's hidden states are taken at every language-model layer, either mean-pooled over its
audio positions (`pool="audio"`: what the LM holds where it sees the speech) or at the prompt's
last token (`pool="last"`: what it has gathered by the time it answers); then, per layer:
- **probe accuracy**: a cross-validated logistic-regression probe for each attribute category
  (folds keep a query's clips together, so a probe cannot lean on the words) and for the content
  (the query's intent; folds keep each phrasing's clips together, so the probe must recognise
  the intent of a phrasing it has not seen, not the sound of a sentence it has: an intent needs
  two phrasings or more);
- **cross-voice similarity**: mean cosine between the same query in different voices, minus the
  mean cosine between different queries (how far a layer has stopped hearing the voice);
- **separability**: the Fisher ratio of each attribute's classes (between-class over
  within-class scatter, on standardised features).
The suggested split: the *transition* is the first layer from which the content probe (above
chance, scaled to [0, 1]) stays at or above the mean attribute probe; layers before it are
paralinguistic, layers from it up to the last where the content probe keeps 90 % of its best
are semantic. A model whose content probe never gets there is split where its layers stop
telling voices apart (`suggest_split`). The seed reports layers 0-6 / 7-14 on a 28-layer model.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiolora.atomic import atomic_target
from audiolora.data.paralinguistic import ParaExample


@dataclass
class LayerStack:
    """Pooled states (layers, clips, width) with each clip's labels."""

    states: np.ndarray
    """Mean over the audio positions."""
    last: np.ndarray
    """The prompt's last token."""
    categories: list[str]
    values: list[str]
    intents: list[str]
    groups: list[str]
    """Clips of one group are the same query in different voices."""
    texts: list[str]
    """The query's words (its phrasing)."""

    def save(self, path: Path, source: dict[str, Any]) -> None:
        """Cache the pooled states so the analysis reruns without the model."""
        labels = {k: getattr(self, k) for k in ("categories", "values", "intents", "groups",
                                                "texts")}  # fmt: skip
        with atomic_target(path) as tmp:  # a killed first run leaves no half cache
            np.savez_compressed(tmp, states=self.states.astype(np.float32),
                                last=self.last.astype(np.float32),
                                meta=json.dumps({"source": source, **labels}))  # fmt: skip

    @classmethod
    def load(cls, path: Path, source: dict[str, Any]) -> LayerStack | None:
        """The cached stack, or None when it was made from another model or data."""
        if not path.is_file():
            return None
        try:
            with np.load(path) as cached:
                meta = json.loads(str(cached["meta"]))
                if meta.pop("source") != source or "last" not in cached:
                    return None
                return cls(states=cached["states"], last=cached["last"], **meta)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # unreadable (an older writer cut short): computed again


def probe_accuracy(features: np.ndarray, labels: Sequence[str], groups: Sequence[str] | None,
                   folds: int = 5, seed: int = 0) -> float:  # fmt: skip
    """Mean held-out accuracy of a linear probe; `groups` keeps a group's rows in one fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        return float("nan")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.5))
    if groups is not None and len(set(groups)) >= 2:
        splitter: Any = GroupKFold(n_splits=min(folds, len(set(groups))))
        scores = cross_val_score(probe, features, y, groups=np.asarray(groups), cv=splitter)
    else:
        splitter = StratifiedKFold(min(folds, int(counts.min())), shuffle=True, random_state=seed)
        scores = cross_val_score(probe, features, y, cv=splitter)
    return float(np.mean(scores))


def fisher_ratio(features: np.ndarray, labels: Sequence[str]) -> float:
    """Between-class over within-class scatter (traces), features standardised first."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-8)
    y = np.asarray(labels)
    between = within = 0.0
    for label in np.unique(y):
        part = x[y == label]
        between += len(part) * float(np.sum(part.mean(0) ** 2))
        within += float(np.sum((part - part.mean(0)) ** 2))
    return between / max(within, 1e-12)


def cross_voice_similarity(features: np.ndarray, groups: Sequence[str]) -> float:
    """Mean cosine within groups (same query, other voice) minus mean cosine across groups."""
    x = features - features.mean(0)
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)
    sims = x @ x.T
    g = np.asarray(groups)
    same = (g[:, None] == g[None, :]) & ~np.eye(len(g), dtype=bool)
    other = g[:, None] != g[None, :]
    if not same.any() or not other.any():
        return float("nan")
    return float(sims[same].mean() - sims[other].mean())


def chance(labels: Sequence[str]) -> float:
    """Accuracy of always answering the most common label."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(counts.max() / counts.sum())


def scaled(accuracy: float, base: float) -> float:
    """Probe accuracy above chance, scaled so chance is 0 and perfect is 1."""
    return float(max(accuracy - base, 0.0) / max(1 - base, 1e-8))


def suggest_split(attribute: Sequence[float], content: Sequence[float],
                  voice_invariance: Sequence[float] | None = None) -> dict[str, Any]:  # fmt: skip
    """Paralinguistic layers, semantic layers and the transition layer.

    By content: the transition is the first layer from which the (scaled) content probe stays
    at or above the mean attribute probe. When the content probe never gets there (a model that
    does not form paraphrase-invariant meaning), by voice: the first layer whose cross-voice
    similarity is past half-way between its lowest and highest value, if that range is 0.1 or
    more (the layers before it still hear who speaks; the layers from it no longer do).
    """
    layers = len(content)
    after = [
        t for t in range(layers)
        if all(content[k] >= attribute[k] for k in range(t, layers))
    ]  # fmt: skip
    if after and max(content) > 0:
        transition = after[0]
        best = max(content)
        last = max(k for k in range(transition, layers) if content[k] >= 0.9 * best)
        return {
            "rule": "content",
            "transition": transition,
            "paralinguistic": list(range(transition)),
            "semantic": list(range(transition, last + 1)),
        }
    sims = list(voice_invariance or [])
    if sims and max(sims) - min(sims) >= 0.1:
        half = min(sims) + 0.5 * (max(sims) - min(sims))
        transition = next(k for k, v in enumerate(sims) if v >= half)
        return {
            "rule": "voice",
            "transition": transition,
            "paralinguistic": list(range(transition)),
            "semantic": list(range(transition, layers)),
            "note": "the content probe never overtakes the attribute probes; split where the "
            "layers stop telling voices apart",
        }
    return {"rule": None, "transition": None, "paralinguistic": list(range(layers)),
            "semantic": [], "note": "the content probe never overtakes the attribute probes, "
            "and similarity across voices hardly changes with depth"}  # fmt: skip


def analyze(stack: LayerStack, folds: int = 5, pool: str = "audio") -> dict[str, Any]:
    """Every curve per layer, and the suggested split, on the `pool` states."""
    if pool not in ("audio", "last"):
        raise ValueError(f"pool must be 'audio' or 'last', got {pool!r}")
    states = stack.states if pool == "audio" else stack.last
    cats = np.asarray(stack.categories)
    layers = states.shape[0]
    result: dict[str, Any] = {"layers": layers, "pool": pool, "probe": {}, "chance": {},
                              "separability": {}}  # fmt: skip
    content_labels = stack.intents
    result["chance"]["content"] = chance(content_labels)
    result["probe"]["content"] = [
        probe_accuracy(states[k], content_labels, stack.texts, folds) for k in range(layers)
    ]
    for category in sorted(set(stack.categories)):
        rows = np.flatnonzero(cats == category)
        labels = [stack.values[i] for i in rows]
        groups = [stack.groups[i] for i in rows]
        result["chance"][category] = chance(labels)
        result["probe"][category] = [
            probe_accuracy(states[k][rows], labels, groups, folds) for k in range(layers)
        ]
        result["separability"][category] = [
            fisher_ratio(states[k][rows], labels) for k in range(layers)
        ]
    result["cross_voice_similarity"] = [
        cross_voice_similarity(states[k], stack.groups) for k in range(layers)
    ]
    attributes = [c for c in result["probe"] if c != "content"]
    attribute_curve = [
        float(np.mean([scaled(result["probe"][c][k], result["chance"][c]) for c in attributes]))
        for k in range(layers)
    ]
    content_curve = [
        scaled(result["probe"]["content"][k], result["chance"]["content"]) for k in range(layers)
    ]
    result["scaled"] = {"attributes": attribute_curve, "content": content_curve}
    result["split"] = suggest_split(
        attribute_curve, content_curve, result["cross_voice_similarity"]
    )
    return result


def plot(result: dict[str, Any], out: Path, title: str) -> None:
    """One figure: probe accuracies, cross-voice similarity and separability against layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = np.arange(result["layers"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, curve in result["probe"].items():
        style = "k-" if name == "content" else "-"
        axes[0].plot(layers, curve, style, marker=".", label=f"{name} (chance "
                     f"{result['chance'][name]:.2f})")  # fmt: skip
    axes[0].set_title("Linear-probe accuracy (held-out folds)")
    axes[0].set_ylim(0, 1.02)
    axes[1].plot(layers, result["cross_voice_similarity"], "m-", marker=".")
    axes[1].set_title("Same query, other voice: cosine minus other-query cosine")
    for name, curve in result["separability"].items():
        axes[2].plot(layers, curve, marker=".", label=name)
    axes[2].set_title("Attribute separability (Fisher ratio)")
    transition = result["split"].get("transition")
    for ax in axes:
        ax.set_xlabel("LM layer")
        if transition is not None:
            ax.axvline(transition - 0.5, color="grey", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def collect_states(model: Any, processor: Any, family: Any, rows: Sequence[ParaExample],
                   instruction: str, sampling_rate: int = 16000, batch_size: int = 8,
                   progress: bool = True) -> LayerStack:  # fmt: skip
    """Pool every LM layer's output over each clip's audio positions (prompt only, no answer)."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from audiolora.models.heads.dual_level import audio_pooled
    from audiolora.models.heads.regression import last_token_states
    from audiolora.models.lalm import LalmCollator
    from audiolora.tasks.paralinguistic import ParaDataset, ParalinguisticConfig

    cfg = ParalinguisticConfig(instruction=instruction)
    dataset = ParaDataset(family, rows, processor, cfg, sampling_rate).prompts_only()
    collator = LalmCollator(family, processor, padding_side="right")
    audio_token_id = family.audio_token_id(processor)
    pooled: list[np.ndarray] = []
    last: list[np.ndarray] = []
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collator)
    with torch.no_grad():
        for batch in tqdm(loader, desc="hidden states", disable=not progress):
            out = family.hidden_states(model, batch, output_hidden_states=True)
            per_layer = [
                audio_pooled(
                    h.float(), batch["input_ids"], batch["attention_mask"], audio_token_id
                ).numpy()  # fmt: skip
                for h in out.hidden_states[1:]
            ]
            pooled.append(np.stack(per_layer))
            last.append(np.stack([
                last_token_states(h.float(), batch["attention_mask"]).numpy()
                for h in out.hidden_states[1:]
            ]))  # fmt: skip
    return LayerStack(
        states=np.concatenate(pooled, axis=1),
        last=np.concatenate(last, axis=1),
        categories=[r.category for r in rows],
        values=[r.value for r in rows],
        intents=[r.intent for r in rows],
        groups=[f"{r.intent}|{r.text}|{r.category}" for r in rows],
        texts=[r.text for r in rows],
    )


def layer_states(model_or_run: str, data: Path, output: Path, batch_size: int = 8,
                 max_rows: int | None = None) -> LayerStack:  # fmt: skip
    """The pooled states of a model (or a finished run, adapter applied) on a manifest, cached
    in `output/states.npz` so a rerun of the analysis needs no model."""
    from audiolora.config import ModelConfig
    from audiolora.data.manifest import BadInputError
    from audiolora.data.paralinguistic import read_paralinguistic_manifest
    from audiolora.inference import load_run_with_family
    from audiolora.models.loading import load_model
    from audiolora.tasks.paralinguistic import ParalinguisticConfig

    source = {"model": model_or_run, "data": str(Path(data).resolve()), "max_rows": max_rows}
    cache = output / "states.npz"
    stack = LayerStack.load(cache, source)
    if stack is not None:
        return stack
    cfg = ParalinguisticConfig()
    if Path(model_or_run, "config.yaml").exists():
        model, processor, config, family = load_run_with_family(Path(model_or_run))
        if config.task == "paralinguistic":
            cfg = config.paralinguistic
    else:
        model, processor, family, _ = load_model(ModelConfig(name=model_or_run))
        model.eval()
    rows, report = read_paralinguistic_manifest(data, cfg.categories)
    if report.problems:
        raise BadInputError([report])
    rows = rows[:max_rows] if max_rows else rows
    stack = collect_states(model, processor, family, rows, cfg.instruction, batch_size=batch_size)
    output.mkdir(parents=True, exist_ok=True)
    stack.save(cache, source)
    return stack


def write_analysis(result: dict[str, Any], out_dir: Path, title: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "layers.json", "plot": out_dir / "layers.png"}
    paths["json"].write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(result, paths["plot"], title)
    return paths
