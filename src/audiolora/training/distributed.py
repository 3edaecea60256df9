"""One run in several processes (`torchrun --nproc_per_node N -m audiolora train ...`).

Why: under torch.distributed every process runs the whole command. The Trainer already shards
the batches and averages the gradients (DDP, gloo on CPU, NCCL on CUDA); everything around the
training loop -- checking the data, measuring the base model, evaluating, writing the run
folder -- must happen once. `once` runs such a step on rank 0 alone and hands its result (or
its error) to every rank, so no rank waits forever on one that failed.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


WAIT = timedelta(hours=6)
"""How long the other ranks wait for rank 0 (which may evaluate a base model for a long time
alone); NCCL's default of 10 minutes would abort them."""


def join_process_group() -> None:
    """Join the group torchrun describes in the environment (once); nothing for one process."""
    if world_size() == 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl", timeout=WAIT)
    else:
        dist.init_process_group("gloo", timeout=WAIT)


class RankFailed(RuntimeError):
    """Rank 0 failed in a step run `once`; its message, for the other ranks."""


def once(step: Callable[[], T]) -> T:
    """`step()` on rank 0 alone; every rank returns its result or raises its error."""
    if world_size() == 1:
        return step()
    join_process_group()
    box: list[Any] = [None]
    error: BaseException | None = None
    if is_main():
        try:
            box[0] = ("ok", step())
        except Exception as e:  # every rank must hear of it, or they wait for ever
            error = e
            box[0] = ("error", e if picklable(e) else RankFailed(f"{type(e).__name__}: {e}"))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if error is not None:
        raise error
    if kind == "error":
        raise value
    return value


def picklable(value: Any) -> bool:
    """Whether `value` survives the trip to another rank (some exceptions pickle but cannot be
    rebuilt from their arguments)."""
    try:
        pickle.loads(pickle.dumps(value))
    except Exception:
        return False
    return True


def strategy_problem(
    strategy: str, quantization: str, cuda: bool, deepspeed_installed: bool
) -> str | None:
    """Why `training.strategy` cannot work here, or None. Checked before the model loads."""
    if strategy == "ddp":
        return None
    if strategy == "zero3" and quantization != "none":
        return (
            f"training.strategy=zero3 shards every weight across processes, and bitsandbytes "
            f"{quantization} weights cannot be sharded: use training.strategy=zero2 (shards "
            "optimizer state and gradients) or ddp with a 4-bit base"
        )
    if strategy in ("zero3", "fsdp"):
        return (
            f"training.strategy={strategy} shards the weights themselves, and audiolora "
            "evaluates on rank 0 alone, which would then wait for the other ranks' shards: not "
            "supported yet. Use training.strategy=zero2 (optimizer state and gradients sharded, "
            "weights whole on every GPU) or ddp"
        )
    if not cuda:
        return (
            f"training.strategy={strategy} shards across GPUs and needs CUDA; on CPU use "
            "training.strategy=ddp (`audiolora train --nproc N`, gloo)"
        )
    if strategy.startswith("zero") and not deepspeed_installed:
        return f"training.strategy={strategy} needs DeepSpeed: pip install deepspeed"
    return None


def strategy_arguments(strategy: str) -> dict[str, Any]:
    """TrainingArguments for a strategy: the shipped DeepSpeed config for zero2."""
    if strategy.startswith("zero"):
        from importlib import resources

        config = resources.files("audiolora") / "recipes" / "distributed" / f"{strategy}.json"
        return {"deepspeed": str(config)}
    return {}
