"""`builtin:qwen2-audio-smollm2-aligned`: the assembled model with its shipped alignment merged.

Why shipped weights rather than a build on first use: the alignment takes about half an hour of
two CPU cores (`audiolora models align`), far too long to make a user wait on the first run of
any audio-LM recipe, while its result is a 4.6 MB PEFT adapter (LoRA on the LM's attention + the
projector). So the adapter ships inside the package with the exact command, seed and checksum
that produced it (`weights/<name>/provenance.json`); on first use it is merged into the
assembled model (seconds) and the merged folder is cached. A shipped adapter whose checksum does
not match its provenance is refused, and a cached folder built from other weights is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from audiolora.atomic import atomic_copy, atomic_write_json, fresh_work_dir
from audiolora.builtin.assemble import ASSEMBLY_FILE, assembled_model_path
from audiolora.builtin.ct2_import import move_into_place
from audiolora.cache import cache_dir as default_cache_dir

ALIGNED_MODELS = {"qwen2-audio-smollm2-aligned": "qwen2-audio-smollm2-tiny"}
"""Aligned name -> the assembled model its shipped adapter is merged into."""

WEIGHTS_DIR = Path(__file__).parent / "weights"
ADAPTER_FILE = "adapter_model.safetensors"
PROVENANCE_FILE = "provenance.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_alignment(name: str, weights_dir: Path = WEIGHTS_DIR) -> tuple[Path, dict]:
    """The shipped adapter folder of `name` and its provenance, after a checksum check."""
    folder = weights_dir / name
    provenance_file = folder / PROVENANCE_FILE
    if not (folder / ADAPTER_FILE).is_file() or not provenance_file.is_file():
        raise FileNotFoundError(
            f"no shipped alignment for '{name}' in {folder}; build one with "
            f"`audiolora models align --ship` (about 30 min on 2 CPU cores)"
        )
    provenance = json.loads(provenance_file.read_text())
    actual = sha256(folder / ADAPTER_FILE)
    if actual != provenance["sha256"]:
        raise ValueError(
            f"{folder / ADAPTER_FILE}: checksum {actual[:12]}… does not match "
            f"{PROVENANCE_FILE} ({provenance['sha256'][:12]}…); reinstall audiolora"
        )
    return folder, provenance


def ship_alignment(
    run_dir: Path, name: str, provenance: dict, weights_dir: Path = WEIGHTS_DIR
) -> Path:
    """Copy a finished alignment run's adapter into the package as `name`'s shipped weights."""
    source = Path(run_dir) / "adapter"
    folder = weights_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    for file in ("adapter_config.json", ADAPTER_FILE):
        atomic_copy(source / file, folder / file)
    record = {**provenance, "sha256": sha256(folder / ADAPTER_FILE)}
    atomic_write_json(folder / PROVENANCE_FILE, record)
    return folder


def _built_from(folder: Path) -> str | None:
    try:
        return json.loads((folder / ASSEMBLY_FILE).read_text())["alignment"]["sha256"]
    except (OSError, ValueError, KeyError):
        return None


def aligned_model_path(
    name: str = "qwen2-audio-smollm2-aligned",
    cache_dir: Path | None = None,
    weights_dir: Path = WEIGHTS_DIR,
) -> Path:
    """Path of the aligned transformers folder `name`, merging the shipped adapter on first use.

    Built beside its cache entry and renamed into place, so an interrupted build never leaves a
    half-written model."""
    import torch
    from peft import PeftModel
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    if name not in ALIGNED_MODELS:
        raise KeyError(f"unknown aligned model '{name}'; known: {sorted(ALIGNED_MODELS)}")
    weights, provenance = shipped_alignment(name, weights_dir)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dst = root / "models" / name
    if (dst / "config.json").is_file() and _built_from(dst) == provenance["sha256"]:
        return dst
    base = assembled_model_path(ALIGNED_MODELS[name], cache_dir=root)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, weights).merge_and_unload()
    work_dir = fresh_work_dir(dst)
    try:
        model.save_pretrained(work_dir)
        AutoProcessor.from_pretrained(base).save_pretrained(work_dir)
        for file in work_dir.glob("*.safetensors"):
            file.chmod((work_dir / "config.json").stat().st_mode & 0o777)
        assembly = json.loads((base / ASSEMBLY_FILE).read_text())
        assembly["multi_modal_projector"] = {"pretrained": True, "note": "trained by alignment"}
        assembly["alignment"] = provenance
        (work_dir / ASSEMBLY_FILE).write_text(json.dumps(assembly, indent=2) + "\n")
        move_into_place(work_dir, dst, lambda d: _built_from(d) == provenance["sha256"])
    finally:
        if work_dir.exists():
            shutil.rmtree(work_dir, ignore_errors=True)
    return dst
