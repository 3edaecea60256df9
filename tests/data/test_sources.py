import json
from pathlib import Path

import pytest

from audiolora.data.manifest import read_manifest
from audiolora.data.sources import resolve_manifests


def test_plain_manifests_pass_through(tmp_path: Path) -> None:
    out = resolve_manifests(str(tmp_path / "t.jsonl"), str(tmp_path / "e.jsonl"))
    assert out == {"train": tmp_path / "t.jsonl", "eval": tmp_path / "e.jsonl"}


def saved_table(speech_dataset: Path) -> dict[str, list[str]]:
    rows = [json.loads(line) for line in (speech_dataset / "train.jsonl").read_text().splitlines()]
    return {
        "audio": [str(speech_dataset / r["audio"]) for r in rows],
        "text": [r["text"] for r in rows],
    }


def test_saved_hf_dataset_becomes_a_valid_manifest(speech_dataset: Path, tmp_path: Path) -> None:
    import datasets

    table = saved_table(speech_dataset)
    ds = datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio(decode=False))
    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": ds}).save_to_disk(str(folder))

    manifests = resolve_manifests(str(folder), None)
    report = read_manifest(manifests["train"])
    assert not report.problems
    assert [row.text for row in report.rows] == table["text"]
    # save_to_disk embeds the audio bytes; the export writes them back out as files.
    assert [row.audio.read_bytes() for row in report.rows] == [
        Path(p).read_bytes() for p in table["audio"]
    ]


def test_held_out_split_of_a_saved_dataset_is_never_its_training_split(
    speech_dataset: Path, tmp_path: Path
) -> None:
    import datasets

    table = saved_table(speech_dataset)
    ds = datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio(decode=False))
    first, rest = ds.select(range(2)), ds.select(range(2, len(ds)))
    named = tmp_path / "named"
    datasets.DatasetDict({"train": rest, "test": first}).save_to_disk(str(named))
    held_out = read_manifest(resolve_manifests(str(named), str(named))["eval"])
    assert [row.text for row in held_out.rows] == table["text"][:2], "'test' is the eval split"

    unnamed = tmp_path / "unnamed"
    datasets.DatasetDict({"train": rest, "other": first}).save_to_disk(str(unnamed))
    with pytest.raises(ValueError, match=r"splits \['train', 'other'\] has none named eval"):
        resolve_manifests(str(unnamed), str(unnamed))
