"""The checks a lent GPU machine runs in one call: bf16 LoRA, NF4 (double-quant) QLoRA, int8,
paged optimizers and recomputed activations, each through `audiolora train`, with peak memory
against bf16 LoRA; and two processes.

    python benchmarks/cuda_checks.py [--size 1b] [--steps 20] [--out DIR] [--sides a,b,...]

That machine has no network and none of the embedded model's pip packages, so everything is
built in a scratch folder: a random-weight Qwen2-Audio-class model (`builtin.random_model`;
`--size 1b`: TinyLlama-1.1B's language-model shape, 2048 wide and 22 layers, under a Whisper
tiny.en-sized tower; `small`: 512 wide, 4 layers; `tiny`: the test suite's) and a transcription
set of tone clips (eight pitches, each named by its text), so the loss has something to learn.
Each side is one `audiolora train` process with the same data, steps, batch and seed, and reads
back RUN/metrics.json: the device, peak memory (on a GPU the allocator's peak during training,
`torch.cuda.max_memory_allocated`; on a CPU resident memory), its ratio to bf16 LoRA, the first
and last logged training loss, seconds a step and MFU. A side that cannot run here (paged
optimizers without CUDA) is listed as skipped, with the reason; a side that fails or runs past
`--side-timeout` keeps its error and log and the other sides go on; a side's earlier run folder
is replaced. `two processes` runs `--nproc 2`: NCCL over two GPUs, gloo on a machine without
one; skipped on a machine with one GPU.
Results: OUT/cuda_checks.json (default `runs/cuda-checks`), written again after every side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZES = {
    "tiny": (None, None),
    "small": (
        {
            "hidden_size": 512,
            "intermediate_size": 1408,
            "num_hidden_layers": 4,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
        },
        None,
    ),
    "1b": (
        {
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "num_hidden_layers": 22,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
        },
        {
            "d_model": 384,
            "encoder_layers": 4,
            "encoder_attention_heads": 6,
            "encoder_ffn_dim": 1536,
        },
    ),
}
BF16 = ["model.dtype=bfloat16", "training.precision=bf16"]
NF4 = [*BF16, "model.quantization=nf4", "model.double_quant=true", "model.compute_dtype=bfloat16"]
SIDES: dict[str, tuple[list[str], str | None]] = {
    # name: (overrides, what it needs beyond a CPU)
    "bf16 LoRA": ([*BF16, "training.optimizer=adamw_torch"], None),
    "NF4 QLoRA": ([*NF4, "training.optimizer=adamw_torch"], None),
    "int8 LoRA": (
        [*BF16, "model.quantization=int8", "training.optimizer=adamw_torch"],
        None,
    ),
    "NF4 + paged 8-bit AdamW": ([*NF4, "training.optimizer=paged_adamw_8bit"], "cuda"),
    "NF4 + paged 32-bit AdamW": ([*NF4, "training.optimizer=paged_adamw_32bit"], "cuda"),
    "bf16 LoRA recomputed": (
        [*BF16, "training.optimizer=adamw_torch", "training.gradient_checkpointing=true"],
        None,
    ),
    "NF4 QLoRA recomputed": (
        [*NF4, "training.optimizer=adamw_torch", "training.gradient_checkpointing=true"],
        None,
    ),
    "two processes": ([*BF16, "training.optimizer=adamw_torch"], "nproc"),
}


def tone_set(folder: Path, train: int = 64, held_out: int = 8, seed: int = 0) -> dict[str, Path]:
    """Manifests of 1-3 s sine clips at eight pitches, each clip's text naming its pitch."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    words = ["do", "re", "mi", "fa", "sol", "la", "ti", "high do"]
    manifests = {}
    for split, count in (("train", train), ("eval", held_out)):
        rows = []
        for i in range(count):
            k = int(rng.integers(len(words)))
            seconds = float(rng.uniform(1.0, 3.0))
            t = np.arange(int(16000 * seconds)) / 16000
            wave = 0.3 * np.sin(2 * np.pi * 220 * 2 ** (k / 8) * t)
            wave += 0.01 * rng.standard_normal(len(t))
            path = folder / "clips" / f"{split}-{i:03d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wave.astype(np.float32), 16000)
            rows.append({"audio": str(path.relative_to(folder)), "text": f"tone {words[k]}"})
        manifests[split] = folder / f"{split}.jsonl"
        manifests[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifests


def recipe(folder: Path, model: Path, manifests: dict[str, Path], steps: int) -> Path:
    """Transcription with LoRA on the language model, no evaluation before the last step."""
    text = f"""task: stt
model: {{name: {model}, quantization: none}}
adapter: {{method: lora, r: 8, alpha: 16, dropout: 0.0, train_projector: false}}
data:
  train: {manifests["train"]}
  eval: {manifests["eval"]}
  spec_augment: {{enabled: false}}
training:
  max_steps: {steps}
  learning_rate: 1.0e-3
  batch_size: 8
  eval_batch_size: 8
  logging_steps: 1
  eval_steps: {steps + 1}
  save_steps: {steps}
  max_new_tokens: 8
  seed: 0
"""
    path = folder / "recipe.yaml"
    path.write_text(text)
    return path


def cannot_run(needs: str | None) -> str | None:
    """Why a side needing `needs` cannot run on this machine, or None."""
    import torch

    if needs == "cuda" and not torch.cuda.is_available():
        return "paged optimizers need a CUDA GPU"
    if needs == "nproc" and torch.cuda.device_count() == 1:
        return "one GPU: two NCCL processes need two (gloo on the CPU is in the test suite)"
    return None


def run_side(
    name: str,
    recipe_path: Path,
    overrides: list[str],
    needs: str | None,
    out: Path,
    timeout_s: float = 240,
) -> dict:
    """One `audiolora train` process; its metrics, or why it did not run or failed."""

    why = cannot_run(needs)
    if why:
        return {"side": name, "skipped": why}
    run_dir = out / "-".join(name.replace("+", "").lower().split())
    command = [
        sys.executable,
        "-m",
        "audiolora",
        "train",
        str(recipe_path),
        "--output-dir",
        str(run_dir),
    ]
    for item in overrides:
        command += ["--set", item]
    if needs == "nproc":
        command += ["--nproc", "2"]
    shutil.rmtree(run_dir, ignore_errors=True)  # a side run before would ask for --resume
    log = out / f"{run_dir.name}.log"
    began = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        log.write_text(f"{e.stdout or ''}{e.stderr or ''}")
        return {
            "side": name,
            "failed": "timeout",
            "error": [f"over {timeout_s} s"],
            "log": str(log),
        }
    wall = time.perf_counter() - began
    log.write_text(done.stdout + done.stderr)
    metrics_path = run_dir / "metrics.json"
    if done.returncode != 0 or not metrics_path.exists():
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        return {"side": name, "failed": done.returncode, "error": tail, "log": str(log)}
    metrics = json.loads(metrics_path.read_text())
    efficiency = metrics["efficiency"]
    losses = [h["loss"] for h in metrics.get("history", []) if "loss" in h]
    return {
        "side": name,
        "overrides": overrides,
        "device": efficiency.get("device"),
        "peak_memory_mb": efficiency.get("peak_memory_mb"),
        "peak_memory_scope": efficiency.get("peak_memory_scope"),
        "step_s": efficiency.get("step_latency_s"),
        "mfu": efficiency.get("mfu"),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "final": metrics.get("final"),
        "wall_s": wall,
    }


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    versions = {}
    for name in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "datasets"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "versions": versions,
        "gpus": gpus,
        "bf16_on_gpu": bool(gpus) and torch.cuda.is_bf16_supported(),
        "python": sys.version.split()[0],
    }


def print_table(results: list[dict[str, Any]]) -> None:
    base = next((r for r in results if r["side"] == "bf16 LoRA" and "peak_memory_mb" in r), None)
    print(
        f"\n{'side':28}{'device':>8}{'peak MB':>10}{'x bf16':>8}{'loss first->last':>20}"
        f"{'s/step':>8}{'MFU':>7}"
    )
    for r in results:
        if "skipped" in r or "failed" in r:
            why = r.get("skipped") or f"FAILED (exit {r['failed']}): {r['error'][-1:]}"
            print(f"{r['side']:28}  {why}")
            continue
        ratio = (
            f"{r['peak_memory_mb'] / base['peak_memory_mb']:.2f}"
            if base and r["peak_memory_mb"] and r["device"] == base["device"]
            else "-"
        )
        loss = (
            f"{r['first_loss']:.3f} -> {r['last_loss']:.3f}" if r["first_loss"] is not None else "-"
        )
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") else "-"
        print(
            f"{r['side']:28}{r['device'] or '-':>8}{r['peak_memory_mb'] or 0:>10.0f}{ratio:>8}"
            f"{loss:>20}{r['step_s'] or 0:>8.3f}{mfu:>7}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/cuda-checks"))
    parser.add_argument(
        "--side-timeout", type=float, default=240, help="seconds a side may take (default 240)"
    )
    parser.add_argument(
        "--sides", default=",".join(SIDES), help=f"comma-separated, of: {', '.join(SIDES)}"
    )
    args = parser.parse_args(argv)
    from audiolora.builtin.random_model import save_random_qwen2_audio

    unknown = [s for s in args.sides.split(",") if s not in SIDES]
    if unknown:
        parser.error(f"--sides: unknown {unknown}; known: {', '.join(SIDES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(json.dumps(env))
    text, audio = SIZES[args.size]
    model = args.out / f"random-{args.size}"
    if not (model / "config.json").exists():
        save_random_qwen2_audio(model, text=text, audio=audio, dtype="bfloat16")
    manifests = tone_set(args.out / "tones")
    recipe_path = recipe(args.out, model, manifests, args.steps)
    results: list[dict[str, Any]] = []
    result = {"environment": env, "size": args.size, "steps": args.steps, "sides": results}
    for name in args.sides.split(","):
        overrides, needs = SIDES[name]
        print(f"{name} ...", flush=True)
        results.append(run_side(name, recipe_path, overrides, needs, args.out, args.side_timeout))
        # after every side: a call stopped at its limit keeps what finished
        (args.out / "cuda_checks.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {args.out / 'cuda_checks.json'}")
    return 0 if not any("failed" in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
