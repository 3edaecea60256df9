"""Session manifests across splits: a recording may not be in both training and held-out data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from audiolora.data.sessions import check_no_shared_recordings, check_sessions


def reports(root: Path) -> dict:
    return check_sessions(
        {"train": root / "train.jsonl", "eval": root / "eval.jsonl"},
        window_s=20,
        boundaries=(),
        on_bad_input="stop",
        rejected_path=None,
    )


def test_separate_recordings_pass(tiny_sessions: Path) -> None:
    check_no_shared_recordings(reports(tiny_sessions))


def test_a_recording_in_both_splits_is_named_with_both_lines(
    tiny_sessions: Path, tmp_path: Path
) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(tiny_sessions, root)
    held_out = (root / "eval.jsonl").read_text()
    with (root / "train.jsonl").open("a") as f:
        f.write(held_out)
    with pytest.raises(ValueError, match="1 recording") as caught:
        check_no_shared_recordings(reports(root))
    message = str(caught.value)
    assert "s2.wav" in message and "line 3" in message and "line 1" in message
    assert "keep each recording in one split" in message


def test_a_copy_under_another_name_is_the_same_recording(
    tiny_sessions: Path, tmp_path: Path
) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(tiny_sessions, root)
    row = json.loads((root / "eval.jsonl").read_text())
    copy = Path(row["audio"]).with_name("renamed.wav")
    shutil.copy(root / row["audio"], root / copy)
    with (root / "train.jsonl").open("a") as f:
        f.write(json.dumps({**row, "audio": str(copy)}) + "\n")
    with pytest.raises(ValueError, match="the same audio as"):
        check_no_shared_recordings(reports(root))
