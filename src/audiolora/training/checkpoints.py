"""Crash-safe checkpoints on top of the Trainer's own `checkpoint-N` folders.

The Trainer writes a checkpoint file by file, so a process killed mid-save leaves a folder that
looks like a checkpoint but is not. After the Trainer finishes a save, a `COMPLETE` marker is
written atomically (temp file + rename). Resume only ever picks a folder with the marker, and
folders without it are removed first. Output files (adapter, metrics, report) are written the
same way: to a temporary name, then renamed into place.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from audiolora.atomic import atomic_write_text

MARKER = "COMPLETE"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match else None


def latest_complete_checkpoint(checkpoint_dir: Path, clean_incomplete: bool = True) -> Path | None:
    """Newest `checkpoint-N` holding the marker; incomplete ones are deleted when asked."""
    if not checkpoint_dir.is_dir():
        return None
    complete: list[tuple[int, Path]] = []
    for child in checkpoint_dir.iterdir():
        step = checkpoint_step(child)
        if step is None or not child.is_dir():
            continue
        if (child / MARKER).exists():
            complete.append((step, child))
        elif clean_incomplete:
            shutil.rmtree(child, ignore_errors=True)
    return max(complete)[1] if complete else None


class CompleteMarkerCallback(TrainerCallback):
    """Marks each checkpoint complete right after the Trainer has written all of it."""

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir() and args.should_save:
            atomic_write_text(folder / MARKER, f"{state.global_step}\n")
