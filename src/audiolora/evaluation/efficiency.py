"""Efficiency figures of a training run: throughput, step latency, peak memory, energy, size.

Peak memory is the CUDA allocator's maximum on GPU and the peak resident set size on CPU, both
counted from the start of training to its end (reset at the start, so the runs of a sweep in one
process each get their own). Energy is read from the RAPL (CPU package) or NVML (GPU) counters
where the machine exposes them, and reported as unavailable otherwise rather than estimated.

Model FLOPs are counted by `torch.utils.flop_counter` on every `flop_every`-th step (those steps
are left out of the timing, since counting slows them); MFU divides the achieved model FLOP/s by
the machine's matmul peak in the run's compute dtype, measured once per machine and cached.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import resource
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from audiolora.atomic import atomic_write_text
from audiolora.cache import cache_dir

log = logging.getLogger(__name__)

RAPL_ENERGY = Path("/sys/class/powercap/intel-rapl:0/energy_uj")


PROC_STATUS = Path("/proc/self/status")


def reset_peak_memory() -> bool:
    """Start the peak-memory counter afresh; False where it cannot be reset (`peak_memory_mb`
    then covers the whole process).

    Why: a sweep trains its runs one after the other in one process, and on CPU the process's
    peak would otherwise carry an earlier run's peak into every later one. Linux resets the
    peak resident set size (VmHWM) when "5" is written to /proc/self/clear_refs."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory_mb() -> float:
    """The CUDA allocator's peak on GPU; on CPU the peak resident set size (VmHWM, which
    `reset_peak_memory` resets), or the process's ru_maxrss where /proc is not there."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class EnergyCounter:
    """Joules since `start()`, from RAPL or NVML; `None` where no counter can be read."""

    def __init__(self) -> None:
        self._start: float | None = None
        self.source = "unavailable"
        self._read = self._pick_reader()

    def _pick_reader(self):  # noqa: ANN202 - returns a zero-argument callable or None
        if torch.cuda.is_available():
            try:
                import pynvml

                pynvml.nvmlInit()
                handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
                pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                self.source = "nvml"
                return lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0
            except Exception:  # noqa: BLE001 - any NVML failure means "no counter"
                pass
        try:
            float(RAPL_ENERGY.read_text())
            self.source = "rapl"
            return lambda: float(RAPL_ENERGY.read_text()) / 1e6
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        self._start = self._read() if self._read else None

    def joules(self) -> float | None:
        if self._read is None or self._start is None:
            return None
        return self._read() - self._start


def machine_name() -> str:
    """What a matmul peak belongs to: the GPU's name, or the CPU model and thread count."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} x{torch.get_num_threads()} threads"


def measure_matmul_peak(dtype: torch.dtype, size: int | None = None, seconds: float = 1.0) -> float:
    """FLOP/s of square matmuls in `dtype` on this device (2n^3 FLOPs each), best of a few."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = size or (8192 if device == "cuda" else 2048)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = 0.0
    deadline = time.perf_counter() + seconds
    for i in range(50):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if i:  # the first one pays for allocation and kernel choice
            best = max(best, 2 * n**3 / elapsed)
        if i >= 3 and time.perf_counter() > deadline:
            break
    return best


def matmul_peak(precision: str, measure: bool = True) -> dict[str, Any]:
    """{"flops_per_s", "machine", "dtype", "measurements"} for a compute precision on this
    machine: the best of every measurement so far (one short one per call with `measure`),
    kept under the cache (`peak/*.json`). A measurement taken while other work shares the
    machine reads low; keeping the best lets later ones correct it."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    machine = machine_name()
    key = "".join(c if c.isalnum() else "-" for c in f"{machine}-{precision}")
    path = cache_dir() / "peak" / f"{key}.json"
    peak = {"flops_per_s": 0.0, "machine": machine, "dtype": precision, "measurements": 0}
    if path.is_file():
        peak.update(json.loads(path.read_text()))
    if measure or not peak["flops_per_s"]:
        peak["flops_per_s"] = max(peak["flops_per_s"], measure_matmul_peak(dtype))
        peak["measurements"] = int(peak.get("measurements", 0)) + 1
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(peak) + "\n")
    return peak


class EfficiencyMeter(TrainerCallback):
    """Times optimizer steps and counts samples; the first step is excluded as warm-up.

    One meter serves every stage of a run (each stage is its own `trainer.train()`): energy and
    the peak-memory counter start at the first stage, and train time adds up over all of them,
    so the figures cover the same steps as `optimizer_steps`.
    """

    def __init__(self, samples_per_step: int, flop_every: int = 10) -> None:
        self.samples_per_step = samples_per_step
        self.flop_every = flop_every
        self.step_flops: dict[int, int] = {}
        """Model FLOPs of the counted steps, by step index; these steps are not timed."""
        self._counter: FlopCounterMode | None = None
        self.step_times: list[float] = []
        self._step_start = 0.0
        self.energy = EnergyCounter()
        self.train_seconds = 0.0
        self._train_start = 0.0
        self._started = False
        self.peak_reset = False
        self.training_peak_mb: float | None = None
        """Peak memory from the first stage's start to the last stage's end: training alone,
        not the evaluations after it."""

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self._started:
            self.peak_reset = reset_peak_memory()
            self.energy.start()
            self._started = True
        self._train_start = time.perf_counter()

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.flop_every and len(self.step_times) % self.flop_every == 0:
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        self._step_start = time.perf_counter()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.step_flops[len(self.step_times)] = self._counter.get_total_flops()
            self._counter = None
        self.step_times.append(time.perf_counter() - self._step_start)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.stop_counting()
        self.train_seconds += time.perf_counter() - self._train_start
        self.training_peak_mb = max(self.training_peak_mb or 0.0, peak_memory_mb())

    def stop_counting(self) -> None:
        """Leave a FLOP-counted step that never ended (an error inside it): the counter is a
        process-wide dispatch mode and would slow and count everything after it."""
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self._counter = None

    def summary(self, precision: str = "fp32") -> dict[str, Any]:
        timed = [t for i, t in enumerate(self.step_times) if i and i not in self.step_flops]
        timed = timed or self.step_times[1:] or self.step_times
        latency = sum(timed) / len(timed) if timed else float("nan")
        joules = self.energy.joules()
        steps = len(self.step_times)
        return {
            **self.flop_figures(latency, precision),
            "optimizer_steps": steps,
            "samples_per_second": self.samples_per_step / latency if timed else float("nan"),
            "step_latency_s": latency,
            "train_seconds": self.train_seconds,
            "peak_memory_mb": self.training_peak_mb
            if self.training_peak_mb is not None
            else peak_memory_mb(),
            "peak_memory_scope": "training" if self.peak_reset else "process",
            "energy_joules": joules,
            "energy_joules_per_step": joules / steps if joules is not None and steps else None,
            "energy_source": self.energy.source,
        }

    def flop_figures(self, latency: float, precision: str) -> dict[str, Any]:
        """Model FLOPs per step (mean of the counted steps), achieved FLOP/s, MFU."""
        if not self.step_flops or math.isnan(latency):
            return {"model_flops_per_step": None, "model_flops_per_s": None, "mfu": None}
        per_step = sum(self.step_flops.values()) / len(self.step_flops)
        achieved = per_step / latency
        figures = {
            "model_flops_per_step": per_step,
            "model_flops_per_s": achieved,
            "mfu": None,
            "flop_counted_steps": len(self.step_flops),
        }
        try:  # a failed calibration costs the MFU figure, never the run's metrics
            peak = matmul_peak(precision)
        except (OSError, RuntimeError, ValueError) as error:
            log.warning("matmul peak not measured (%s): no MFU figure", error)
            return figures
        if peak["flops_per_s"]:
            figures["mfu"] = achieved / peak["flops_per_s"]
        figures["matmul_peak_flops_per_s"] = peak["flops_per_s"]
        figures["matmul_peak_machine"] = peak["machine"]
        return figures


def size_figures(trainable: int, total: int, adapter_bytes: int, base_bytes: int) -> dict[str, Any]:
    """Trainable ratio and the seed's compression ratios (parameters and bytes)."""
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_ratio": trainable / total if total else float("nan"),
        "compression_ratio_params": total / trainable if trainable else float("nan"),
        "adapter_mb": adapter_bytes / 2**20,
        "base_model_mb": base_bytes / 2**20,
        "compression_ratio_size": base_bytes / adapter_bytes if adapter_bytes else float("nan"),
    }


def folder_bytes(folder: Path, pattern: str = "*.safetensors") -> int:
    return sum(p.stat().st_size for p in Path(folder).glob(pattern))
