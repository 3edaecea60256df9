"""Where audiolora keeps what it builds once and reuses: imported models, builtin datasets."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$AUDIOLORA_CACHE`, else `~/.cache/audiolora`."""
    return Path(os.environ.get("AUDIOLORA_CACHE") or Path.home() / ".cache" / "audiolora")
