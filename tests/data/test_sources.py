import json
from pathlib import Path

from audiolora.data.manifest import read_manifest
from audiolora.data.sources import resolve_manifests


def test_plain_manifests_pass_through(tmp_path: Path) -> None:
    out = resolve_manifests(str(tmp_path / "t.jsonl"), str(tmp_path / "e.jsonl"))
    assert out == {"train": tmp_path / "t.jsonl", "eval": tmp_path / "e.jsonl"}


def test_saved_hf_dataset_becomes_a_valid_manifest(speech_dataset: Path, tmp_path: Path) -> None:
    import datasets

    rows = [json.loads(line) for line in (speech_dataset / "train.jsonl").read_text().splitlines()]
    table = {
        "audio": [str(speech_dataset / r["audio"]) for r in rows],
        "text": [r["text"] for r in rows],
    }
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
