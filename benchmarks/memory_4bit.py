"""Peak training memory of NF4 (double-quant) QLoRA and int8 LoRA against bf16 LoRA on the
embedded audio LM.

    python benchmarks/memory_4bit.py [--recipe slu-qwen2-audio-smollm2] [--steps 4] [--scaled]
        [--malloc-mmap-threshold BYTES]

Each side runs in its own process (peak memory is per process) and trains the recipe's LoRA for
a few steps on batches of `builtin:speech` clips in bf16 autocast, loaded by audiolora's own
`load_model` (which hands memory freed while loading back to the OS and, after a 4- or 8-bit
load, keeps no view of the checkpoint file): the base in bf16, or
quantized to NF4 with double quantization, or to int8 (LLM.int8) (bitsandbytes; the tower,
projector, lm_head and input embeddings stay in full precision as the family says), or NF4 with
the lm_head quantized too (`model.quantize_lm_head`), or NF4 with the lm_head and the input
embeddings (`model.quantize_embeddings`) quantized too. Every side runs twice: as is, and with
its activations recomputed in the backward (`training.gradient_checkpointing`, which QLoRA
recipes use).

A sampler thread reads two figures every 5 ms. Resident memory is what the OS sees: library
code and memory glibc keeps after a free count too. Live heap is what malloc has handed out and
not had back (glibc's `mallinfo2`): tensors and objects, the CPU counterpart of
`torch.cuda.max_memory_allocated`; it is counted from a baseline taken with every library
imported. Per side: the base's weight bytes and bits per parameter (all of it, and the
quantized layers alone: packed weights plus their quantization constants), optimizer state,
what loading leaves and what training adds, the tensors alive at the highest point of one
profiled step of the longest batch by what they are for (weights and batch, saved for the
backward, temporaries such as dequantized weights, gradients and optimizer state), the mean
step time (with the sampler thread running, so slower than a plain run), and the base's loss
on the 48 held-out clips with the adapters off (what quantization costs the model itself).

`--scaled` measures the same on a larger model of the same layout instead: the embedded
model's tower, projector and tokenizer with a TinyLlama-1.1B-shaped language model (2048 wide,
22 layers), random weights (built once into the model cache; no such checkpoint can be
downloaded here). It shows how the ratios move once the weights outweigh the rest; its
held-out loss is not measured (random weights).
Results: `benchmarks/results/memory_4bit.json` (`--scaled`: `memory_4bit_scaled.json`); an
interrupted run, rerun alike, keeps the sides it finished.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results" / "memory_4bit.json"
SCALED_RESULTS = RESULTS.with_name("memory_4bit_scaled.json")
SCALED_LM = {  # TinyLlama-1.1B's language-model shape
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 64,
}
SIDES = ("bf16", "int8", "nf4", "nf4-head", "nf4-all")
LABELS = ("bf16 LoRA", "int8 LoRA", "NF4 QLoRA", "+lm_head", "+embeds")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


def _heap_reader() -> Any:
    """glibc's `mallinfo2` as a function returning the bytes malloc has handed out and not had
    back (heap chunks in use + mmapped chunks), or None off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None

    def in_use() -> int:
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd

    return in_use


class MemorySampler:
    """Highest resident set size and highest malloc'd-and-live bytes since the last `reset()`,
    sampled every few ms. Resident memory is what the OS sees (library code and memory glibc
    keeps after a free included); live heap bytes are what tensors and objects hold, the CPU
    counterpart of `torch.cuda.max_memory_allocated`."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s = every_s
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._heap = _heap_reader()
        self.reset()
        threading.Thread(target=self._run, daemon=True).start()

    def now(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def heap(self) -> int | None:
        """Live heap bytes now; None where glibc's mallinfo2 is missing (musl, glibc < 2.33)."""
        return self._heap() if self._heap else None

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.now())
            self.heap_peak = max(self.heap_peak, self.heap() or 0)
            time.sleep(self.every_s)

    def reset(self) -> None:
        self.peak, self.heap_peak = self.now(), self.heap() or 0


def weight_figures(model: Any) -> dict[str, float]:
    """Bytes and bits per parameter of the base weights; the 4-bit linears on their own."""
    import bitsandbytes as bnb

    total_bytes, total_params = 0, 0
    q_bytes, q_params = 0, 0
    seen: set[int] = set()
    for module in model.modules():
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            size = tensor.numel() * tensor.element_size()
            state = getattr(tensor, "quant_state", None)
            if isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Embedding4bit)) and state is not None:
                params = state.shape.numel()
                extra = state.absmax.numel() * state.absmax.element_size()
                if state.nested:
                    nested = state.state2
                    extra += nested.absmax.numel() * nested.absmax.element_size()
                    extra += nested.code.numel() * nested.code.element_size()
                q_bytes += size + extra
                q_params += params
                total_bytes += size + extra
                total_params += params
            elif (
                isinstance(module, (bnb.nn.Linear8bitLt, bnb.nn.Embedding8bit))
                and tensor is module.weight
            ):
                scales = getattr(tensor, "SCB", None)  # one fp32 scale per output row
                extra = scales.numel() * scales.element_size() if scales is not None else 0
                q_bytes += size + extra
                q_params += tensor.numel()
                total_bytes += size + extra
                total_params += tensor.numel()
            else:
                total_bytes += size
                total_params += tensor.numel()
    return {
        "weight_mb": total_bytes / 2**20,
        "params": total_params,
        "bits_per_param": 8 * total_bytes / total_params,
        "quantized_params": q_params,
        "quantized_bits_per_param": 8 * q_bytes / q_params if q_params else None,
    }


def scaled_model() -> Path:
    """A random-weight audio LM: the embedded model's tower, projector and processor with a
    `SCALED_LM`-shaped language model, saved in bf16 once (the seed fixed)."""
    import torch
    from transformers import AutoConfig, AutoProcessor, Qwen2AudioForConditionalGeneration

    from audiolora.models.loading import resolve_model_path

    embedded = resolve_model_path("builtin:qwen2-audio-smollm2-aligned")
    folder = Path(embedded).parent / "random-audio-lm-1b"
    if (folder / "config.json").exists():
        return folder
    config = AutoConfig.from_pretrained(embedded)
    for key, value in SCALED_LM.items():
        setattr(config.text_config, key, value)
    torch.manual_seed(0)
    model = Qwen2AudioForConditionalGeneration(config).to(torch.bfloat16)
    partial = folder.with_name(folder.name + ".partial")
    model.save_pretrained(partial)
    AutoProcessor.from_pretrained(embedded).save_pretrained(partial)
    partial.rename(folder)
    return folder


def run_side(
    side: str,
    recipe: str,
    steps: int,
    batch_size: int,
    checkpointing: bool = False,
    model_path: Path | None = None,
) -> dict[str, Any]:
    sampler = MemorySampler()
    import bitsandbytes  # noqa: F401  (imported before the baseline: library code, not model)
    import peft  # noqa: F401
    import torch
    from transformers import Qwen2AudioForConditionalGeneration  # noqa: F401

    from audiolora.cli import resolve_recipe
    from audiolora.config import load_config
    from audiolora.data.audio import load_audio
    from audiolora.data.manifest import read_manifest
    from audiolora.data.sources import resolve_manifests
    from audiolora.models.adapters import attach_adapters
    from audiolora.models.answer_loss import labelled_positions_loss
    from audiolora.models.lalm import STT_INSTRUCTION, LalmCollator, encode_example
    from audiolora.models.loading import load_model
    from audiolora.precision import compute_precision
    from audiolora.training.run import recompute_activations

    torch.set_num_threads(os.cpu_count() or 1)
    overrides = ["model.dtype=bfloat16", "training.precision=bf16"]
    if side == "int8":
        overrides = [
            "model.dtype=bfloat16",
            "model.quantization=int8",
            "training.precision=bf16",
        ]
    if side.startswith("nf4"):
        overrides = [
            "model.dtype=bfloat16",
            "model.quantization=nf4",
            "model.double_quant=true",
            "model.compute_dtype=bfloat16",
            "training.precision=bf16",
        ]
    if side in ("nf4-head", "nf4-all"):
        overrides.append("model.quantize_lm_head=true")
    if side == "nf4-all":
        overrides.append("model.quantize_embeddings=true")
    if model_path is not None:
        overrides.append(f"model.name={model_path}")
    config = load_config(resolve_recipe(recipe), overrides)
    manifests = resolve_manifests("builtin:speech", None)
    rows = read_manifest(manifests["train"]).rows
    held_out = read_manifest(manifests["eval"]).rows
    rss_start, heap_start = sampler.now(), sampler.heap()
    sampler.reset()
    model, processor, family, _ = load_model(config.model)
    load_peak = sampler.peak
    weights = weight_figures(model)
    base = model
    model = attach_adapters(model, config.adapter, family, steps)
    if checkpointing:  # what `training.gradient_checkpointing: true` does
        recompute_activations(base)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.training.learning_rate)
    collate = LalmCollator(family, processor)

    def batch_of(chunk: list[Any]) -> dict[str, Any]:
        return collate(
            [
                encode_example(
                    family, processor, [load_audio(r.audio, 16000)], STT_INSTRUCTION, r.text
                )
                for r in chunk
            ]
        )

    batches = [batch_of(rows[i * batch_size : (i + 1) * batch_size]) for i in range(steps)]
    import gc

    gc.collect()
    rss_loaded, heap_loaded = sampler.now(), sampler.heap()
    sampler.reset()
    losses = []
    began = time.perf_counter()
    for batch in batches:
        losses.append(train_step(model, optimizer, batch))
    step_s = (time.perf_counter() - began) / len(batches)
    time.sleep(0.05)
    train_peak, heap_peak = sampler.peak, sampler.heap_peak
    longest = max(batches, key=lambda b: b["input_ids"].numel())
    tensors = tensor_peak_by_kind(lambda: train_step(model, optimizer, longest))
    # What quantization costs the base itself: its loss on held-out clips, adapters off
    # (not for random weights, whose loss says nothing).
    model.eval()
    held_out_losses = []
    if model_path is None:
        with torch.no_grad(), model.disable_adapter(), compute_precision("bf16"):
            for i in range(0, len(held_out), batch_size):
                batch = batch_of(held_out[i : i + batch_size])
                held_out_losses.append(float(labelled_positions_loss(model, batch)))
    state_bytes = sum(
        t.numel() * t.element_size()
        for s in optimizer.state.values()
        for t in s.values()
        if torch.is_tensor(t)
    )
    mb = 2**-20

    def heap_mb(now: int, then: int | None) -> float | None:
        """MB of live heap between two readings; None where the heap cannot be read."""
        return None if then is None else (now - then) * mb

    return {
        "side": side,
        "overrides": overrides,
        "gradient_checkpointing": checkpointing,
        **weights,
        "rss_before_load_mb": rss_start * mb,
        "load_peak_mb": load_peak * mb,
        "rss_loaded_mb": rss_loaded * mb,
        "train_peak_mb": train_peak * mb,
        "train_added_mb": (train_peak - rss_loaded) * mb,
        "heap_loaded_mb": heap_mb(heap_loaded, heap_start),
        "heap_peak_mb": heap_mb(heap_peak, heap_start),
        "heap_train_added_mb": heap_mb(heap_peak, heap_loaded),
        "optimizer_state_mb": state_bytes * mb,
        "trainable_params": sum(p.numel() for p in params),
        "losses": losses,
        "base_held_out_loss": (
            sum(held_out_losses) / len(held_out_losses) if held_out_losses else None
        ),
        "step_s": step_s,
        "tensor_peak_mb": tensors,
    }


def train_step(model: Any, optimizer: Any, batch: dict[str, Any]) -> float:
    """One LoRA step with the loss audiolora's training steps compute, in bf16 autocast."""
    from audiolora.models.answer_loss import labelled_positions_loss
    from audiolora.precision import compute_precision

    with compute_precision("bf16"):
        loss = labelled_positions_loss(model, batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.item())


TENSOR_KINDS = {
    "PARAMETER": "weights",  # bitsandbytes' packed 4/8-bit data is counted as an input
    "INPUT": "weights",
    "OPTIMIZER_STATE": "optimizer state",
    "GRADIENT": "gradients",
    "ACTIVATION": "saved for backward",
    "AUTOGRAD_DETAIL": "saved for backward",
    "TEMPORARY": "temporaries",
    None: "temporaries",
}


def tensor_peak_by_kind(step: Callable[[], float]) -> dict[str, float]:
    """MB of live CPU tensors at the step's highest point, by what they are for: weights (and
    the batch), optimizer state, gradients, tensors saved for the backward, temporaries
    (dequantized weights, attention scores, recomputed layers). From one profiled step (the
    profiler's memory timeline; the profiler's own records are not tensors)."""
    import tempfile

    import torch
    from torch.profiler._memory_profiler import _CATEGORY_TO_INDEX  # the timeline's columns

    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU],
        profile_memory=True,
        record_shapes=True,
        with_stack=True,
    ) as profiler:
        step()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "timeline.json"
        profiler.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    peak = max(sizes, key=sum)
    kinds: dict[str, float] = {}
    for category, index in _CATEGORY_TO_INDEX.items():
        kind = TENSOR_KINDS[category.name if category else None]
        kinds[kind] = kinds.get(kind, 0.0) + peak[index + 1] / 2**20
    return {"total": sum(peak) / 2**20, **kinds}


ROWS = (
    ("base weights (MB)", "weight_mb", "{:.0f}"),
    ("bits per base parameter (all)", "bits_per_param", "{:.2f}"),
    ("bits per parameter, quantized layers only", "quantized_bits_per_param", "{:.3f}"),
    ("resident before loading: torch, libraries (MB)", "rss_before_load_mb", "{:.0f}"),
    ("resident after loading (MB)", "rss_loaded_mb", "{:.0f}"),
    ("peak while loading (MB)", "load_peak_mb", "{:.0f}"),
    ("optimizer state (MB)", "optimizer_state_mb", "{:.1f}"),
    ("resident training peak (MB)", "train_peak_mb", "{:.0f}"),
    ("  added by training over loaded (MB)", "train_added_mb", "{:.0f}"),
    ("live heap after loading, over baseline (MB)", "heap_loaded_mb", "{:.0f}"),
    ("live heap training peak, over baseline (MB)", "heap_peak_mb", "{:.0f}"),
    ("  added by training over loaded (MB)", "heap_train_added_mb", "{:.0f}"),
    ("tensors at the peak of one step (MB)", "tensor_peak_mb.total", "{:.0f}"),
    ("  weights and batch", "tensor_peak_mb.weights", "{:.0f}"),
    ("  saved for backward", "tensor_peak_mb.saved for backward", "{:.1f}"),
    ("  temporaries", "tensor_peak_mb.temporaries", "{:.1f}"),
    ("  gradients + optimizer state", "tensor_peak_mb.trainable", "{:.1f}"),
    ("training step (s; the first one included)", "step_s", "{:.2f}"),
    ("base's loss on 48 held-out clips, adapters off", "base_held_out_loss", "{:.4f}"),
)


def figure(result: dict[str, Any], key: str) -> float | None:
    """A row's value: a field, or `tensor_peak_mb.KIND` from the peak's breakdown."""
    if not key.startswith("tensor_peak_mb."):
        return result.get(key)
    kinds = result.get("tensor_peak_mb") or {}
    kind = key.split(".", 1)[1]
    if kind == "trainable":
        return kinds.get("gradients", 0.0) + kinds.get("optimizer state", 0.0)
    return kinds.get(kind)


def print_table(results: dict[str, dict[str, Any]], checkpointing: bool) -> None:
    suffix = "+rc" if checkpointing else ""
    keys = [f"{side}{suffix}" for side in SIDES]
    print(f"\nactivations recomputed: {'yes' if checkpointing else 'no'}")
    ratio_heads = [f"{side}/bf16" for side in SIDES[1:]]
    print(f"{'':48}{''.join(f'{h:>11}' for h in (*LABELS, *ratio_heads))}")
    bf16 = results[keys[0]]
    for label, key, fmt in ROWS:
        values = [figure(results[k], key) for k in keys]
        cells = [fmt.format(v) if v is not None else "n/a" for v in values]
        a = figure(bf16, key)
        ratios = [f"{v / a:.2f}" if a and v else "" for v in values[1:]]
        print(f"{label:48}{''.join(f'{c:>11}' for c in (*cells, *ratios))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="slu-qwen2-audio-smollm2")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--scaled",
        action="store_true",
        help="a random-weight model with a 1.1 B language model instead of the embedded one",
    )
    parser.add_argument(
        "--malloc-mmap-threshold",
        type=int,
        default=None,
        metavar="BYTES",
        help="run each side with glibc's MALLOC_MMAP_THRESHOLD_ set: allocations this large are "
        "mapped and unmapped on their own instead of coming from (and staying in) the heap",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: results/memory_4bit*.json")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = args.out or (SCALED_RESULTS if args.scaled else RESULTS)
    if args.side:
        result = run_side(
            args.side, args.recipe, args.steps, args.batch_size, args.checkpointing, args.model_path
        )
        print("RESULT " + json.dumps(result))
        return 0
    model_path = scaled_model() if args.scaled else None
    # Sides finished by an earlier, interrupted run of the same command are not run again.
    partial = out.with_name(out.stem + ".partial.json")
    sides_of = [args.recipe, args.steps, args.batch_size, str(model_path)]
    sides_of.append(args.malloc_mmap_threshold)
    # A side measured by other code is measured again (the commit, where this is a checkout).
    here = Path(__file__).parent
    rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=here)
    sides_of.append(rev.stdout.strip())
    env = dict(os.environ)
    if args.malloc_mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    done = json.loads(partial.read_text()) if partial.exists() else {}
    results = done.get("results", {}) if done.get("sides_of") == sides_of else {}
    for checkpointing in (False, True):
        for side in SIDES:
            key = f"{side}+rc" if checkpointing else side
            if key in results:
                print(f"[memory] {key}: measured by an earlier run ({partial.name})", flush=True)
                continue
            cmd = [sys.executable, __file__, "--side", side, "--recipe", args.recipe]
            cmd += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
            cmd += ["--checkpointing"] if checkpointing else []
            cmd += ["--model-path", str(model_path)] if model_path else []
            print(f"[memory] {key} in its own process", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                return proc.returncode or 1
            results[key] = json.loads(line[len("RESULT ") :])
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"sides_of": sides_of, "results": results}))
    model = f"random-weight {model_path.name}" if model_path else "the embedded model"
    print(f"\n{args.recipe} on {model}: {args.steps} LoRA steps of {args.batch_size} clips")
    print_table(results, checkpointing=False)
    print_table(results, checkpointing=True)
    bf16 = results["bf16"]
    print("\nNF4 QLoRA with recomputed activations (the QLoRA recipe) / plain bf16 LoRA:")
    for side in ("nf4+rc", "nf4-head+rc", "nf4-all+rc"):
        for label, key in (("resident peak", "train_peak_mb"), ("live heap peak", "heap_peak_mb")):
            ours, theirs = results[side][key], bf16[key]
            if ours is not None and theirs:
                print(f"  {side:12} {label}: {ours:.0f} / {theirs:.0f} MB = {ours / theirs:.2f}")
    payload = {"command": ["python", "benchmarks/memory_4bit.py", *(argv or sys.argv[1:])]}
    payload.update(results=results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")
    partial.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
