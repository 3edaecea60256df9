"""Which audio tower for the offline dual encoder: aiSFX's sound-effects CNN or Whisper's encoder?

    python benchmarks/contrastive_towers.py [--seeds 3] [--steps 400]

Both towers stay frozen; each gets fresh projections and exactly the builtin's contrastive
warm-up (`builtin.dual_encoder.warm_up_projections`) on the builtin sound-event set's
single-event training clips, with all-MiniLM-L6-v2 as the text tower, and is scored by
zero-shot classification of the held-out clips (other recordings of the 49 classes). Both
towers pool the same way (global max + early half + late half). Prints both sides and the
tower's time per clip; writes benchmarks/results/contrastive_towers.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from audiolora.builtin.ct2_import import builtin_model_path
from audiolora.builtin.dual_encoder import (
    assemble,
    class_captions,
    tower_outputs,
    warm_up_projections,
)
from audiolora.data.audio import load_audio
from audiolora.data.sound_events import SoundEvent, read_sound_event_manifest
from audiolora.data.sources import builtin_sound_events_dir
from audiolora.models.dual_encoder import projection, segment_pool


@torch.no_grad()
def whisper_outputs(events: list[SoundEvent], segments: int) -> torch.Tensor:
    """Whisper tiny.en's encoder over each clip (padded to its 30 s input, as it demands), only
    the frames of the real audio kept, pooled like the sound CNN's."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    path = builtin_model_path("whisper-tiny.en")
    encoder = WhisperModel.from_pretrained(path).get_encoder().eval()
    fe = WhisperFeatureExtractor.from_pretrained(path)
    out = []
    for i in tqdm(range(0, len(events), 8), desc="whisper encoder", unit="batch"):
        audios = [load_audio(e.audio, 16000) for e in events[i : i + 8]]
        feats = fe(audios, sampling_rate=16000, return_tensors="pt").input_features
        hidden = encoder(feats).last_hidden_state  # (B, 1500, d), 20 ms a frame
        for h, a in zip(hidden, audios, strict=True):
            real = max(1, int(np.ceil(len(a) / 16000 / 0.02)))
            out.append(segment_pool(h[:real].T.unsqueeze(0), segments))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()

    data = builtin_sound_events_dir()
    model, processor = assemble(0)
    splits = {}
    for split in ("train", "eval"):
        events, _ = read_sound_event_manifest(
            data / f"{split}.jsonl", sampling_rate=processor.sampling_rate
        )
        splits[split] = [e for e in events if e.relation == "single"]
    classes = sorted({e.labels[0] for e in splits["train"]})
    labels = {s: [classes.index(e.labels[0]) for e in ev] for s, ev in splits.items()}
    text_x = class_captions(model, processor, classes)
    segments = model.config.time_segments

    towers = {}
    start = time.perf_counter()
    towers["aisfx-cnn"] = (
        tower_outputs(model, processor, splits["train"]),
        tower_outputs(model, processor, splits["eval"]),
        time.perf_counter() - start,
    )
    start = time.perf_counter()
    towers["whisper-tiny.en-encoder"] = (
        whisper_outputs(splits["train"], segments),
        whisper_outputs(splits["eval"], segments),
        time.perf_counter() - start,
    )
    n_clips = len(splits["train"]) + len(splits["eval"])
    results = {}
    for name, (train_x, held_x, seconds) in towers.items():
        accuracies = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            audio_proj = projection(train_x.shape[1], 256)
            text_proj = projection(text_x.shape[2], 256)
            scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
            summary = warm_up_projections(train_x, labels["train"], held_x, labels["eval"],
                                          text_x, audio_proj, text_proj, scale,
                                          steps=args.steps, seed=seed)  # fmt: skip
            accuracies.append(summary["held_out_zero_shot_accuracy"])
        results[name] = {
            "accuracy_mean": statistics.mean(accuracies),
            "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "accuracies": accuracies,
            "tower_seconds_per_clip": seconds / n_clips,
            "feature_dim": train_x.shape[1],
        }
    chance = 1 / len(classes)
    print(
        f"held-out zero-shot accuracy, {len(classes)} classes (chance {chance:.1%}), "
        f"{len(splits['eval'])} clips, {args.seeds} seeds, {args.steps} warm-up steps"
    )
    print(f"{'tower':<26} {'accuracy':>16} {'s / clip':>9}")
    for name, r in results.items():
        acc = f"{r['accuracy_mean']:.1%} ± {r['accuracy_std']:.1%}"
        print(f"{name:<26} {acc:>16} {r['tower_seconds_per_clip']:>9.3f}")
    out = Path(__file__).parent / "results" / "contrastive_towers.json"
    out.write_text(json.dumps({"classes": len(classes), "steps": args.steps, **results}, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
