"""Contrastive temporal post-training of CLAP-style models (seed 002, TeminAL).

Stage A teaches the model to tell several sounds apart: single clips with their class, pairs
with "A and B". Stage B teaches order and overlap on the same combinations: pairs with "A, then
B" / "A while B", each batch also holding the temporally wrong captions of its pairs, which the
modified InfoNCE (`models.heads.contrastive`) weighs up. `contrastive.schedule` picks A, B, A
then B, or neither (one stage with `contrastive.captions` as set). Only the last layers and the
projections train (`tune: last_layers`), or LoRA plus the projections (`tune: lora`).
Evaluation is ZSTE and zero-shot retrieval on held-out clips (`evaluation.zste`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm
from transformers import ProcessorMixin

from audiolora.data.audio import load_audio
from audiolora.data.manifest import ManifestReport, apply_bad_input_policy
from audiolora.data.sound_events import (
    SoundEvent,
    caption,
    read_sound_event_manifest,
    temporal_negatives,
    to_event,
)
from audiolora.data.sources import resolve_sound_event_manifests
from audiolora.evaluation.zste import zste_metrics
from audiolora.models.adapters import attach_adapters
from audiolora.models.families import ContrastiveFamily, Family
from audiolora.models.heads.contrastive import (
    SAME,
    WRONG_ORDER,
    WRONG_OVERLAP,
    ContrastiveModel,
)
from audiolora.settings import Section, StageConfig
from audiolora.tasks.base import Metric, Task

if TYPE_CHECKING:
    from audiolora.config import RunConfig

Key = tuple[str, tuple[str, ...]]


class ContrastiveConfig(Section):
    """Contrastive temporal post-training (seed 002)."""

    schedule: Literal["ab", "a", "b", "none"] = "ab"
    """`ab`: stage A (tell sounds apart) then stage B (order and overlap); `a` or `b` alone;
    `none`: one stage with the `captions` below."""
    captions: Literal["events", "temporal", "all"] = "all"
    """What the (single) stage trains on: `events` single clips + pairs as "A and B"; `temporal`
    pairs with order/overlap captions; `all` both, with temporal captions for pairs."""
    tune: Literal["last_layers", "lora"] = "last_layers"
    """`last_layers`: the last audio block, the last text layer and both projections train in
    full; `lora`: LoRA on the family's targets (`adapter.*`), projections in full.
    `adapter.method: full` overrides both: every weight of both towers trains."""
    order_weight: float = Field(1.0, ge=0)
    """alpha_order: extra weight of a caption in the wrong order ("B, then A" for A then B)."""
    overlap_weight: float = Field(1.0, ge=0)
    """alpha_overlap: extra weight of overlap against sequence ("A while B" for A then B)."""
    symmetric: bool = True
    """Audio-to-text and text-to-audio InfoNCE averaged (False: audio-to-text only)."""
    stage_b_lr_scale: float = Field(0.5, gt=0)
    """Stage B's learning rate relative to stage A's in the `ab` schedule."""
    min_clips_per_class: int = Field(1, ge=1)
    """Held-out single clips every class needs (fewer: bad input)."""
    distractors: int = Field(9, ge=1)
    """Wrong pairs offered with the right one in `zste_pair`."""


def event_key(e: SoundEvent, temporal: bool) -> Key:
    """What a training caption means; without temporal captions a pair is just its two events."""
    if e.relation != "single" and not temporal:
        return ("and", tuple(sorted(e.labels)))
    return e.key


def temporal_kind(text_key: Key, audio_key: Key) -> int:
    """How a caption meaning is temporally wrong for a clip meaning (0: it is not)."""
    (tr, tl), (ar, al) = text_key, audio_key
    if set(tl) != set(al) or len(tl) != 2 or {tr, ar} - {"before", "while"}:
        return 0
    if tr == ar == "before" and tl != al:
        return WRONG_ORDER
    return WRONG_OVERLAP if tr != ar else 0


def kind_matrix(audio_keys: list[Key], text_keys: list[Key]) -> torch.Tensor:
    """(clips, captions) kinds: SAME for another caption meaning the clip's own, else the
    temporal kind; caption i is clip i's positive."""
    kinds = torch.zeros(len(audio_keys), len(text_keys), dtype=torch.long)
    for i, ak in enumerate(audio_keys):
        for j, tk in enumerate(text_keys):
            if j != i and tk == ak:
                kinds[i, j] = SAME
            else:
                kinds[i, j] = temporal_kind(tk, ak)
    return kinds


class SoundEventDataset(Dataset):
    """Clips with a caption each; in temporal mode also each pair's temporally wrong captions.
    Phrasings rotate with every visit of a row."""

    def __init__(self, events: list[SoundEvent], sampling_rate: int, captions: str) -> None:
        self.captions = captions
        temporal = captions in ("temporal", "all")
        if captions == "temporal":
            events = [e for e in events if e.relation != "single"]
        self.rows = events
        self.temporal = temporal
        self.sampling_rate = sampling_rate
        self.visits: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        e = self.rows[i]
        phrasing = i + self.visits[i]
        self.visits[i] += 1
        audio = load_audio(e.audio, self.sampling_rate)
        ordered = self.temporal or e.relation == "single"
        negatives = temporal_negatives(e.labels, e.relation, phrasing) if self.temporal else []
        return {
            "audio": audio,
            "caption": caption(e.labels, e.relation, phrasing, order=ordered),
            "key": event_key(e, self.temporal),
            "negatives": [(text, key) for text, _, key in negatives],
        }


class ContrastiveCollator:
    def __init__(self, family: ContrastiveFamily, processor: Any) -> None:
        self.family = family
        self.processor = processor

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        texts = [it["caption"] for it in items]
        text_keys = [it["key"] for it in items]
        for it in items:
            for text, key in it["negatives"]:
                texts.append(text)
                text_keys.append(key)
        return {
            "audio": self.family.audio_inputs(self.processor, [it["audio"] for it in items]),
            "text": self.family.text_inputs(self.processor, texts),
            "kinds": kind_matrix([it["key"] for it in items], text_keys),
        }


class EvalEvents(Dataset):
    """Held-out clips for ZSTE (scored as a whole, never batched by the Trainer)."""

    def __init__(self, events: list[SoundEvent], classes: list[str], sampling_rate: int) -> None:
        self.rows = events
        self.classes = classes
        self.sampling_rate = sampling_rate

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> SoundEvent:
        return self.rows[i]


def embed_clips(
    family: ContrastiveFamily,
    model: nn.Module,
    processor: Any,
    paths: list[Path],
    sampling_rate: int,
    batch_size: int,
    desc: str,
    progress: bool = True,
) -> torch.Tensor:
    out = []
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, disable=not progress):
        audios = [load_audio(p, sampling_rate) for p in paths[start : start + batch_size]]
        out.append(family.embed_audio(model, family.audio_inputs(processor, audios)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def text_embedder(
    family: ContrastiveFamily, model: nn.Module, processor: Any, batch_size: int
) -> Callable[[list[str]], torch.Tensor]:
    """Captions -> unit-length embeddings, a few batches' worth at a time (captions are short)."""
    step = 4 * batch_size

    def embed(texts: list[str]) -> torch.Tensor:
        chunks = [
            family.embed_text(model, family.text_inputs(processor, texts[i : i + step])).float()
            for i in range(0, len(texts), step)
        ]
        return torch.cat(chunks).cpu()

    return embed


class Contrastive(Task):
    """`task: contrastive` -- TeminAL on a CLAP-style dual encoder."""

    name = "contrastive"
    section = ContrastiveConfig
    contrastive = True
    full_finetuning = True
    metrics = (
        Metric("zste_mean", "ZSTE mean", "{:.1%}", higher_is_better=True, percent=True, curve=True),
        Metric("zste_single", "ZSTE single (zero-shot class.)", "{:.1%}", higher_is_better=True,
               percent=True),
        Metric("zste_pair", "ZSTE pair", "{:.1%}", higher_is_better=True, percent=True),
        Metric("zste_order", "ZSTE order", "{:.1%}", higher_is_better=True, percent=True),
        Metric("zste_overlap", "ZSTE overlap", "{:.1%}", higher_is_better=True, percent=True),
        Metric("a2t_r@1", "audio→text R@1", "{:.1%}", higher_is_better=True, percent=True),
        Metric("t2a_r@1", "text→audio R@1", "{:.1%}", higher_is_better=True, percent=True),
        Metric("a2t_r@5", "audio→text R@5", "{:.1%}", higher_is_better=True, percent=True,
               headline=False),
        Metric("t2a_r@5", "text→audio R@5", "{:.1%}", higher_is_better=True, percent=True,
               headline=False),
        Metric("a2t_r@10", "audio→text R@10", "{:.1%}", higher_is_better=True, percent=True,
               headline=False),
        Metric("t2a_r@10", "text→audio R@10", "{:.1%}", higher_is_better=True, percent=True,
               headline=False),
    )  # fmt: skip

    def stages(self, config: RunConfig) -> list[StageConfig]:
        schedule = config.contrastive.schedule
        lr = config.training.learning_rate
        a = StageConfig(name="A", set={"contrastive.captions": "events"})
        b = StageConfig(name="B", set={"contrastive.captions": "temporal"})
        if schedule == "ab":
            b_lr = lr * config.contrastive.stage_b_lr_scale
            b = b.model_copy(update={"set": {**b.set, "training.learning_rate": b_lr}})
            return [a, b]
        return {"a": [a], "b": [b]}.get(schedule, [])

    def check_data(self, config: RunConfig, run_dir: Path | None) -> dict[str, ManifestReport]:
        cfg = config.contrastive
        paths = resolve_sound_event_manifests(config.data.train, config.data.eval)
        sr = config.data.sampling_rate
        train_events, train = read_sound_event_manifest(
            paths["train"], sampling_rate=sr, max_duration_s=config.data.max_duration_s
        )
        reports = {"train": train}
        classes = {label for e in train_events for label in e.labels}
        if "eval" in paths:
            _, reports["eval"] = read_sound_event_manifest(
                paths["eval"], sampling_rate=sr, classes=classes or None,
                min_clips_per_class=cfg.min_clips_per_class,
                max_duration_s=config.data.max_duration_s,
            )  # fmt: skip
        return apply_bad_input_policy(
            reports, config.data.on_bad_input, run_dir / "rejected.jsonl" if run_dir else None
        )

    def build_datasets(
        self, config: RunConfig, reports: dict[str, ManifestReport], processor: ProcessorMixin,
        family: Family,
    ) -> dict[str, Dataset]:  # fmt: skip
        assert isinstance(family, ContrastiveFamily)
        sr = family.sampling_rate(processor)
        events = {split: [to_event(r) for r in rep.rows] for split, rep in reports.items()}
        datasets: dict[str, Dataset] = {}
        if "train" in events:
            datasets["train"] = SoundEventDataset(events["train"], sr, config.contrastive.captions)
        if "eval" in events:
            rows = events["eval"][: config.data.max_eval_samples or None]
            classes = sorted({x for split in events.values() for e in split for x in e.labels})
            datasets["eval"] = EvalEvents(rows, classes, sr)
        return datasets

    def prepare_model(
        self, model: nn.Module, config: RunConfig, family: Family, total_steps: int,
        train_data: Dataset,
    ) -> nn.Module:  # fmt: skip
        assert isinstance(family, ContrastiveFamily)
        cfg = config.contrastive
        for p in model.parameters():
            p.requires_grad_(False)
        if config.adapter.method == "full":  # every weight, whatever `tune` says
            trained = [n for n, _ in model.named_children()]
            trained += [n for n, _ in model.named_parameters(recurse=False)]  # logit scale
            for p in model.parameters():
                p.requires_grad_(True)
            backbone = model
        elif cfg.tune == "lora":
            backbone = attach_adapters(model, config.adapter, family, total_steps)
            trained = []
        else:
            trained = list(family.last_layer_names(model))
            for name in trained:
                for p in model.get_submodule(name).parameters():
                    p.requires_grad_(True)
            backbone = model
        return ContrastiveModel(backbone, family, cfg.order_weight, cfg.overlap_weight,
                                cfg.symmetric, trained)  # fmt: skip

    def collator(self, processor: ProcessorMixin, family: Family) -> Any:
        assert isinstance(family, ContrastiveFamily)
        return ContrastiveCollator(family, processor)

    def calibration_forward(self, model: nn.Module, batch: dict[str, Any], family: Family) -> Any:
        assert isinstance(family, ContrastiveFamily)
        return family.embed_audio(model, batch["audio"]), family.embed_text(model, batch["text"])

    def evaluate(
        self, model: nn.Module, processor: ProcessorMixin, dataset: Dataset, **options: Any
    ) -> dict[str, Any]:
        assert isinstance(dataset, EvalEvents)
        family = options["family"]
        backbone = model.backbone if isinstance(model, ContrastiveModel) else model
        was_training = backbone.training
        backbone.eval()
        batch = options.get("batch_size", 8)
        with torch.no_grad():
            clips = embed_clips(family, backbone, processor, [e.audio for e in dataset.rows],
                                dataset.sampling_rate, batch, options.get("desc", "eval"),
                                options.get("progress", True))  # fmt: skip
            metrics = zste_metrics(clips, dataset.rows, dataset.classes,
                                   text_embedder(family, backbone, processor, batch))  # fmt: skip
            metrics["examples"] = self.examples(family, backbone, processor, dataset, clips)
        if was_training:
            backbone.train()
        return metrics

    def examples(
        self, family: ContrastiveFamily, model: nn.Module, processor: Any, dataset: EvalEvents,
        clips: torch.Tensor,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The order question on the first sequence clips: which caption the model prefers."""
        out = []
        for i, e in enumerate(dataset.rows):
            if e.relation != "before" or len(out) >= 10:
                continue
            a, b = e.labels
            options = [caption((a, b), "before", 0), caption((b, a), "before", 0)]
            scores = text_embedder(family, model, processor, 8)(options) @ clips[i]
            out.append({"audio": str(e.audio), "reference": options[0],
                        "hypothesis": options[int(torch.argmax(scores))]})  # fmt: skip
        return out

    def load(self, base: nn.Module, adapter_dir: Path, family: Family) -> nn.Module:
        return ContrastiveModel.from_pretrained(base, adapter_dir, family)

    def rank_captions(
        self, model: nn.Module, processor: Any, family: Family, clip: Path, captions: list[str]
    ) -> list[tuple[str, float, float]]:
        """(caption, cosine similarity, softmax probability at the model's scale), best first:
        what `audiolora predict RUN --audio CLIP --captions ...` prints."""
        assert isinstance(family, ContrastiveFamily)
        backbone = model.backbone if isinstance(model, ContrastiveModel) else model
        backbone.eval()
        with torch.no_grad():
            audio = load_audio(clip, family.sampling_rate(processor))
            a = family.embed_audio(backbone, family.audio_inputs(processor, [audio]))[0]
            t = family.embed_text(backbone, family.text_inputs(processor, captions))
            sims = t @ a
            probs = torch.softmax(family.logit_scale(backbone) * sims, dim=0)
        ranked = sorted(zip(captions, sims.tolist(), probs.tolist(), strict=True),
                        key=lambda x: -x[1])  # fmt: skip
        return ranked
