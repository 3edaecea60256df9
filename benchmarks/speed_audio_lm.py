"""Audio-LM training step on the embedded model: 30 s tower input, real frames, cached tower.

    python benchmarks/speed_audio_lm.py [--recipe slu-qwen2-audio-smollm2] [--steps 8]

Trains the same LoRA (the recipe's adapter settings) on the same batches of `builtin:speech`
clips (audio + "Transcribe the audio." -> transcript) for two epochs, three times from the same
start: every segment padded to 30 s of mel frames as the processor gives them; cut to the
batch's longest real segment (the model's pre-hook, what audiolora does); and cut with the
frozen tower's outputs cached in epoch 1 and reused in epoch 2 (`training.audio_tower_cache_mb`);
and, on top, the vocabulary projection only at labelled positions (`models.answer_loss`), as
audiolora's training steps do.
Prints the second epoch's step time, model FLOPs per step (torch's flop counter, first step of
epoch 2), achieved FLOP/s and MFU against this machine's measured matmul peak, and how far the
loss curves differ (all four compute the same function, so only rounding may differ).
Results go to `benchmarks/results/speed_audio_lm.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from audiolora.cli import resolve_recipe  # noqa: E402
from audiolora.config import load_config  # noqa: E402
from audiolora.data.audio import load_audio  # noqa: E402
from audiolora.data.manifest import read_manifest  # noqa: E402
from audiolora.data.sources import resolve_manifests  # noqa: E402
from audiolora.evaluation.efficiency import matmul_peak  # noqa: E402
from audiolora.models.adapters import attach_adapters  # noqa: E402
from audiolora.models.answer_loss import labelled_positions_loss  # noqa: E402
from audiolora.models.lalm import (  # noqa: E402
    STT_INSTRUCTION,
    LalmCollator,
    encode_example,
    trimmed_width,
)
from audiolora.models.loading import load_model  # noqa: E402
from audiolora.precision import compute_precision, resolve_precision  # noqa: E402

SIDES = ("30 s", "real frames", "cached tower", "+ answer logits")
RESULTS = Path(__file__).resolve().parent / "results" / "speed_audio_lm.json"


def tower_width(batch: dict[str, torch.Tensor]) -> int:
    """Mel frames the tower gets for `batch` once the model's pre-hook has cut it."""
    real = int(batch["feature_attention_mask"].sum(-1).max())
    return min(int(batch["input_features"].shape[-1]), trimmed_width(real))


def train_steps(
    config: Any, batches: list[dict[str, torch.Tensor]], side: str, precision: str
) -> dict[str, Any]:
    """Fresh model and adapter (same seed), one optimizer step per batch, two epochs; times
    the second epoch (its first step is counted for FLOPs instead)."""
    torch.manual_seed(config.training.seed)
    model, processor, family, _ = load_model(config.model)
    type(family).trims_padded_frames = side != "30 s"
    model = attach_adapters(model, config.adapter, family, 2 * len(batches))
    cache = family.cache_tower(model, 4096) if side in SIDES[2:] else None
    answer_only = side == "+ answer logits"
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.training.learning_rate)
    losses, times, flops = [], [], None
    for step, batch in enumerate(batches + batches):
        counter = FlopCounterMode(display=False) if step == len(batches) else None
        start = time.perf_counter()
        with compute_precision(precision), counter or torch.enable_grad():
            loss = labelled_positions_loss(model, batch) if answer_only else model(**batch).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        elapsed = time.perf_counter() - start
        if counter is not None:
            flops = counter.get_total_flops()
        elif step > len(batches):
            times.append(elapsed)
        losses.append(loss.item())
        print(f"  {side} step {step}: loss {losses[-1]:.4f}, {elapsed:.2f} s", flush=True)
    latency = sum(times) / len(times)
    peak = matmul_peak(precision)["flops_per_s"]
    return {
        "losses": losses,
        "step_s": latency,
        "frames": tower_width(batches[0])
        if side != "30 s"
        else int(batches[0]["input_features"].shape[-1]),
        "model_gflop_per_step": flops / 1e9,
        "model_gflops_per_s": flops / latency / 1e9,
        "mfu": flops / latency / peak,
        "matmul_peak_gflops_per_s": peak / 1e9,
        **(cache.summary() if cache else {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="slu-qwen2-audio-smollm2")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per side (>= 3)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    config = load_config(resolve_recipe(args.recipe), [])
    precision = resolve_precision(config.training.precision)
    _, processor, family, _ = load_model(config.model)
    rows = read_manifest(resolve_manifests("builtin:speech", None)["train"]).rows
    rows = rows[: args.steps * args.batch_size]
    examples = [
        encode_example(family, processor, [load_audio(r.audio, 16000)], STT_INSTRUCTION, r.text)
        for r in rows
    ]
    collate = LalmCollator(family, processor)
    batches = [
        collate(examples[i : i + args.batch_size]) for i in range(0, len(examples), args.batch_size)
    ]
    sides = {side: train_steps(config, batches, side, precision) for side in SIDES}
    full = sides["30 s"]
    worst = {
        side: max(abs(a - b) for a, b in zip(full["losses"], r["losses"], strict=True))
        for side, r in sides.items()
    }
    print(
        f"\nmodel {config.model.name}, recipe {args.recipe}, precision {precision}, "
        f"2 epochs of {args.steps} steps of {args.batch_size} clips ({len(rows)} clips)"
    )
    print(f"{'':36}" + "".join(f"{side:>17}" for side in SIDES))
    for label, key, fmt in (
        ("tower input frames (1st batch)", "frames", "{:.0f}"),
        ("step time, s (epoch 2)", "step_s", "{:.2f}"),
        ("  ratio to 30 s", None, "{:.2f}"),
        ("model GFLOP per step", "model_gflop_per_step", "{:.0f}"),
        ("model GFLOP/s", "model_gflops_per_s", "{:.0f}"),
        ("MFU", "mfu", "{:.1%}"),
    ):
        cells = [r[key] if key else r["step_s"] / full["step_s"] for r in sides.values()]
        print(f"{label:36}" + "".join(f"{fmt.format(c):>17}" for c in cells))
    print(
        "largest loss difference to the 30 s side over both epochs: "
        + ", ".join(f"{side} {d:.1e}" for side, d in worst.items() if side != "30 s")
    )
    payload = {
        "command": ["python", "benchmarks/speed_audio_lm.py", *(argv or sys.argv[1:])],
        "recipe": args.recipe,
        "model": config.model.name,
        "precision": precision,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "sides": sides,
        "max_loss_difference_to_30s": worst,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
