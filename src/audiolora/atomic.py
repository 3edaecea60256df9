"""Write files and folders so that a reader (or a resumed run) never sees half of one: write to
a temporary name beside the target, then rename into place."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` (same suffix, for writers such as `np.savez` that add
    one) for a writer that takes a file name: renamed into place when the block ends without
    an error, removed when it does not."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_target(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def atomic_save_torch(obj: Any, path: Path) -> None:
    """`torch.save` to a temporary name, then rename: a reader sees the old file or the new."""
    import torch

    with atomic_target(path) as tmp:
        torch.save(obj, tmp)


def atomic_copy(source: Path, target: Path) -> None:
    """`shutil.copy2`, but a reader of `target` never sees half of it."""
    with atomic_target(target) as tmp:
        shutil.copy2(source, tmp)


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written folder into place, replacing an older version of it.

    Raises OSError if another process put a folder at `final_dir` in the meantime.
    """
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fresh_work_dir(final_dir: Path) -> Path:
    """An empty temporary folder beside `final_dir` to build it in before `replace_dir`."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    work_dir = final_dir.parent / f"{final_dir.name}.tmp-{os.getpid()}"
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir()
    return work_dir
