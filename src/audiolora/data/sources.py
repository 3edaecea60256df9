"""Where a recipe's `data.train` / `data.eval` come from: a JSONL manifest, a saved HF dataset,
or `builtin:speech`, the TTS dataset audiolora synthesizes offline once and caches.

Saved HF datasets (`datasets.save_to_disk`) are exported to a JSONL manifest next to them so the
same validation and loading path serves both; audio columns are read with `decode=False`
because the datasets audio decoder needs torchcodec, which does not import on CPU-only torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from audiolora.atomic import atomic_target
from audiolora.cache import cache_dir

BUILTIN_SPEECH = "builtin:speech"
BUILTIN_SESSIONS = "builtin:sessions"
BUILTIN_SLU = "builtin:slu"
BUILTIN_SPEECH_RETENTION = "builtin:speech-retention"
BUILTIN_PARALINGUISTIC = "builtin:paralinguistic"
BUILTIN_SOUND_EVENTS = "builtin:sound-events"


def builtin_speech_dir() -> Path:
    """Synthesize the builtin TTS speech dataset on first use; later calls reuse it."""
    out = cache_dir() / "data" / "speech-v1"
    if not (out / "dataset.json").exists():
        from audiolora.builtin.synth.speech import synth_speech_dataset

        synth_speech_dataset(out)
    return out


def builtin_retention_dir() -> Path:
    """Synthesize the out-of-domain retention set (Festival voices, prose) on first use."""
    out = cache_dir() / "data" / "speech-retention-v1"
    if not (out / "dataset.json").exists():
        from audiolora.builtin.synth.retention import synth_retention_dataset

        synth_retention_dataset(out)
    return out


def builtin_sessions_dir() -> Path:
    """Synthesize the builtin three-phase sessions (8 train, 4 eval) on first use."""
    # v2: small talk before P1 and after P3, so that P1_start and P3_end are real boundaries.
    out = cache_dir() / "data" / "sessions-v2"
    if not (out / "dataset.json").exists():
        from audiolora.builtin.synth.sessions import synth_sessions_dataset

        synth_sessions_dataset(out, n_sessions=12, n_eval=4)
    return out


def builtin_paralinguistic_dir() -> Path:
    """Synthesize the paired-voice paralinguistic set (seed 004) on first use."""
    out = cache_dir() / "data" / "paralinguistic-v1"
    if not (out / "dataset.json").exists():
        from audiolora.builtin.synth.paralinguistic import synth_paralinguistic_dataset

        synth_paralinguistic_dataset(out)
    return out


def resolve_paralinguistic_manifests(train: str | None, eval_: str | None) -> dict[str, Path]:
    """Paralinguistic manifests by split; `builtin:paralinguistic` gives both builtin splits
    (the held-out one with its child-safety rows)."""
    if train is None:
        raise ValueError("data.train is not set: give a paralinguistic manifest or "
                         f"{BUILTIN_PARALINGUISTIC}")  # fmt: skip
    out: dict[str, Path] = {}
    for split, entry in (("train", train), ("eval", eval_ if eval_ is not None else train)):
        if entry == BUILTIN_PARALINGUISTIC:
            out[split] = builtin_paralinguistic_dir() / f"{split}.jsonl"
        elif not (split == "eval" and eval_ is None):
            out[split] = Path(entry).expanduser()
    return out


def builtin_sound_events_dir() -> Path:
    """Cut the real recorded sound events from Debian packages and compose pairs on first use."""
    out = cache_dir() / "data" / "sound-events-v1"
    if not (out / "dataset.json").exists():
        from audiolora.builtin.synth.sound_events import synth_sound_event_dataset

        synth_sound_event_dataset(out)
    return out


def resolve_sound_event_manifests(train: str | None, eval_: str | None) -> dict[str, Path]:
    """Sound-event manifests by split; `builtin:sound-events` gives both builtin splits."""
    if train is None:
        raise ValueError(
            f"data.train is not set: give a sound-event manifest or {BUILTIN_SOUND_EVENTS}"
        )
    out: dict[str, Path] = {}
    for split, entry in (("train", train), ("eval", eval_ if eval_ is not None else train)):
        if entry == BUILTIN_SOUND_EVENTS:
            out[split] = builtin_sound_events_dir() / f"{split}.jsonl"
        elif not (split == "eval" and eval_ is None):
            out[split] = Path(entry).expanduser()
    return out


BUILTIN_SLU_SETS = {"builtin:slu": ("en",), "builtin:slu-en-de": ("en", "de")}
"""Builtin SLU sets: English; English + German (240 training utterances per language)."""


def builtin_slu_dir(name: str = BUILTIN_SLU) -> Path:
    """Synthesize a builtin SLU set (text and TTS speech) on first use."""
    languages = BUILTIN_SLU_SETS[name]
    folder = "slu-v1" if languages == ("en",) else f"slu-{'-'.join(languages)}-v1"
    out = cache_dir() / "data" / folder
    if not (out / "summary.json").exists():
        from audiolora.builtin.synth.slu import synth_slu_dataset

        n = len(languages)
        synth_slu_dataset(
            out, train_utterances=240 * n, eval_utterances=60 * n, languages=languages
        )
    return out


def resolve_slu_manifests(
    train: str | None, eval_: str | None, text_train: str | None
) -> dict[str, Path]:
    """SLU manifests: "train" (speech pool), "train_text" (text rows) and "eval".

    `builtin:slu` as `data.train` gives all three from the builtin set unless the recipe names
    its own text or eval manifest.
    """
    out: dict[str, Path] = {}
    builtin = train if train in BUILTIN_SLU_SETS else None
    for name, entry, builtin_file in (
        ("train", train, "train_speech.jsonl"),
        ("train_text", text_train, "train_text.jsonl"),
        ("eval", eval_, "eval.jsonl"),
    ):
        if entry in BUILTIN_SLU_SETS:
            out[name] = builtin_slu_dir(entry) / builtin_file
        elif entry is None and builtin:
            out[name] = builtin_slu_dir(builtin) / builtin_file
        elif entry is not None:
            out[name] = Path(entry).expanduser()
    return out


def resolve_session_manifests(train: str | None, eval_: str | None) -> dict[str, Path]:
    """Session manifests by split; `builtin:sessions` gives both splits of the builtin set."""
    out: dict[str, Path] = {}
    for split, entry in (("train", train), ("eval", eval_ if eval_ is not None else train)):
        if entry == BUILTIN_SESSIONS:
            out[split] = builtin_sessions_dir() / f"{split}.jsonl"
        elif entry is not None and not (split == "eval" and eval_ is None):
            out[split] = Path(entry).expanduser()
    return out


SPLIT_NAMES = {"train": ("train",), "eval": ("eval", "validation", "test")}
"""The names a saved dataset may give each split of a recipe."""


def export_hf_dataset(folder: Path, split: str | None = None) -> Path:
    """Write a saved HF dataset (audio + text columns) as a JSONL manifest beside it."""
    from datasets import Audio, DatasetDict, load_from_disk

    ds = load_from_disk(str(folder))
    if isinstance(ds, DatasetDict):
        names = list(ds)
        wanted = SPLIT_NAMES.get(split or "", (split,))
        found = [n for n in wanted if n in ds]
        if not found and len(names) > 1:  # never score held-out figures on the training split
            raise ValueError(
                f"{folder}: a saved dataset with splits {names} has none named "
                f"{' / '.join(str(n) for n in wanted)}; save the split you mean on its own, or "
                "rename it"
            )
        ds = ds[found[0] if found else names[0]]
    if "audio" in ds.column_names and isinstance(ds.features["audio"], Audio):
        ds = ds.cast_column("audio", Audio(decode=False))
    manifest = folder / f"audiolora-{split or 'data'}.jsonl"
    audio_dir = folder / "audiolora-audio"
    audio_dir.mkdir(exist_ok=True)
    with atomic_target(manifest) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i, row in enumerate(ds):
            audio = row.get("audio")
            if isinstance(audio, dict):
                if audio.get("bytes"):
                    path = (
                        audio_dir
                        / f"{split or 'data'}-{i:06d}{Path(audio.get('path') or 'a.wav').suffix}"
                    )
                    path.write_bytes(audio["bytes"])
                    audio = str(path.relative_to(folder))
                else:
                    audio = audio.get("path")
            record = {k: v for k, v in row.items() if k != "audio"}
            record["audio"] = audio
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return manifest


def resolve_manifests(train: str | None, eval_: str | None) -> dict[str, Path]:
    """Map the recipe's data entries to manifest paths, by split name."""
    out: dict[str, Path] = {}
    if train == BUILTIN_SPEECH:
        root = builtin_speech_dir()
        out["train"] = root / "train.jsonl"
        if eval_ is None or eval_ == BUILTIN_SPEECH:
            out["eval"] = root / "eval.jsonl"
    for split, entry in (("train", train), ("eval", eval_)):
        if entry is None or split in out:
            continue
        if entry == BUILTIN_SPEECH:
            out[split] = builtin_speech_dir() / f"{split}.jsonl"
            continue
        if entry == BUILTIN_SPEECH_RETENTION:
            out[split] = builtin_retention_dir() / "retention.jsonl"
            continue
        path = Path(entry).expanduser()
        is_saved_dataset = (path / "dataset_dict.json").exists() or (path / "state.json").exists()
        if path.is_dir() and is_saved_dataset:
            out[split] = export_hf_dataset(path, split)
        else:
            out[split] = path
    return out
