"""Audio-LM training step on the embedded model: 30 s tower input vs the batch's real frames.

    python benchmarks/speed_audio_lm.py [--recipe slu-qwen2-audio-smollm2] [--steps 8]

Trains the same LoRA (the recipe's adapter settings) on the same batches of `builtin:speech`
clips (audio + "Transcribe the audio." -> transcript) twice from the same start: once with every
segment padded to 30 s of mel frames as the processor gives them, once with the collator cutting
them to the batch's longest real segment (the model's pre-hook, what audiolora does). Prints
step time, model FLOPs per step (torch's flop counter), achieved FLOP/s and MFU against this
machine's measured matmul peak, and the loss of every step on both sides (the cut is exact, so
the curves must agree to rounding). Results go to `benchmarks/results/speed_audio_lm.json`.
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
from audiolora.models.lalm import (  # noqa: E402
    STT_INSTRUCTION,
    LalmCollator,
    encode_example,
    trimmed_width,
)
from audiolora.models.loading import load_model  # noqa: E402
from audiolora.precision import compute_precision, resolve_precision  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "speed_audio_lm.json"


def tower_width(batch: dict[str, torch.Tensor]) -> int:
    """Mel frames the tower gets for `batch` once the model's pre-hook has cut it."""
    real = int(batch["feature_attention_mask"].sum(-1).max())
    return min(int(batch["input_features"].shape[-1]), trimmed_width(real))


def train_steps(
    config: Any, batches: list[dict[str, torch.Tensor]], trim: bool, precision: str
) -> dict[str, Any]:
    """Fresh model and adapter (same seed), one optimizer step per batch; times all but the
    first and counts the FLOPs of the second."""
    torch.manual_seed(config.training.seed)
    model, processor, family, _ = load_model(config.model)
    model = attach_adapters(model, config.adapter, family, len(batches))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.training.learning_rate)
    losses, times, flops = [], [], None
    for step, batch in enumerate(batches):
        counter = FlopCounterMode(display=False) if step == 1 else None
        start = time.perf_counter()
        with compute_precision(precision), counter or torch.enable_grad():
            loss = model(**batch).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        elapsed = time.perf_counter() - start
        if counter is not None:
            flops = counter.get_total_flops()
        elif step:
            times.append(elapsed)
        losses.append(loss.item())
        side = "trimmed" if trim else "30 s"
        print(f"  {side} step {step}: loss {losses[-1]:.4f}, {elapsed:.2f} s")
    latency = sum(times) / len(times)
    peak = matmul_peak(precision)["flops_per_s"]
    return {
        "losses": losses,
        "step_s": latency,
        "frames": tower_width(batches[0]) if trim else int(batches[0]["input_features"].shape[-1]),
        "model_gflop_per_step": flops / 1e9,
        "model_gflops_per_s": flops / latency / 1e9,
        "mfu": flops / latency / peak,
        "matmul_peak_gflops_per_s": peak / 1e9,
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
    sides: dict[str, Any] = {}
    for trim in (False, True):
        type(family).trims_padded_frames = trim
        collate = LalmCollator(family, processor)
        batches = [
            collate(examples[i : i + args.batch_size])
            for i in range(0, len(examples), args.batch_size)
        ]
        sides["trimmed" if trim else "30 s"] = train_steps(config, batches, trim, precision)
    full, cut = sides["30 s"], sides["trimmed"]
    worst = max(abs(a - b) for a, b in zip(full["losses"], cut["losses"], strict=True))
    print(
        f"\nmodel {config.model.name}, recipe {args.recipe}, precision {precision}, "
        f"{args.steps} steps of {args.batch_size} clips ({len(rows)} builtin:speech clips)"
    )
    print(f"{'':34}{'30 s input':>12}{'trimmed':>12}{'ratio':>8}")
    for label, key, fmt in (
        ("tower input frames (1st batch)", "frames", "{:.0f}"),
        ("step time, s (1st, 2nd excluded)", "step_s", "{:.2f}"),
        ("model GFLOP per step", "model_gflop_per_step", "{:.0f}"),
        ("model GFLOP/s", "model_gflops_per_s", "{:.0f}"),
        ("MFU", "mfu", "{:.1%}"),
    ):
        ratio = cut[key] / full[key]
        print(f"{label:34}{fmt.format(full[key]):>12}{fmt.format(cut[key]):>12}{ratio:>8.2f}")
    print(f"largest loss difference over {args.steps} steps: {worst:.2e}")
    payload = {
        "command": ["python", "benchmarks/speed_audio_lm.py", *(argv or sys.argv[1:])],
        "recipe": args.recipe,
        "model": config.model.name,
        "precision": precision,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "sides": sides,
        "max_loss_difference": worst,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
