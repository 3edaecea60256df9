"""Efficiency figures of a training run: throughput, step latency, peak memory, energy, size.

Peak memory is the CUDA allocator's maximum on GPU and the process's peak resident set size on
CPU. Energy is read from the RAPL (CPU package) or NVML (GPU) counters where the machine exposes
them, and reported as unavailable otherwise rather than estimated.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

RAPL_ENERGY = Path("/sys/class/powercap/intel-rapl:0/energy_uj")


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


class EfficiencyMeter(TrainerCallback):
    """Times optimizer steps and counts samples; the first step is excluded as warm-up.

    One meter serves every stage of a run (each stage is its own `trainer.train()`): energy and
    the peak-memory counter start at the first stage, and train time adds up over all of them,
    so the figures cover the same steps as `optimizer_steps`.
    """

    def __init__(self, samples_per_step: int) -> None:
        self.samples_per_step = samples_per_step
        self.step_times: list[float] = []
        self._step_start = 0.0
        self.energy = EnergyCounter()
        self.train_seconds = 0.0
        self._train_start = 0.0
        self._started = False

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self._started:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            self.energy.start()
            self._started = True
        self._train_start = time.perf_counter()

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._step_start = time.perf_counter()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.step_times.append(time.perf_counter() - self._step_start)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.train_seconds += time.perf_counter() - self._train_start

    def summary(self) -> dict[str, Any]:
        timed = self.step_times[1:] or self.step_times
        latency = sum(timed) / len(timed) if timed else float("nan")
        joules = self.energy.joules()
        steps = len(self.step_times)
        return {
            "optimizer_steps": steps,
            "samples_per_second": self.samples_per_step / latency if timed else float("nan"),
            "step_latency_s": latency,
            "train_seconds": self.train_seconds,
            "peak_memory_mb": peak_memory_mb(),
            "energy_joules": joules,
            "energy_joules_per_step": joules / steps if joules is not None and steps else None,
            "energy_source": self.energy.source,
        }


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
