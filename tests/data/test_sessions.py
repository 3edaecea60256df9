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


def rewrite_first_row(root: Path, change) -> Path:  # noqa: ANN001 - a function of the row
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    change(rows[0])
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "train.jsonl"


def read(manifest: Path, wanted: tuple[str, ...] = ("P1_start", "P1_end", "P2_start")):  # noqa: ANN201
    from audiolora.data.sessions import read_sessions

    return read_sessions(manifest, window_s=10, boundaries=wanted)


def test_a_phase_marked_null_is_absent_not_missing(tiny_sessions: Path, tmp_path: Path) -> None:
    root = tmp_path / "s"
    shutil.copytree(tiny_sessions, root)
    manifest = rewrite_first_row(
        root, lambda r: r["boundaries"].update({"P1_start": None, "P1_end": None})
    )
    sessions, problems = read(manifest)
    assert not problems
    assert sessions[0].absent == {"P1_start", "P1_end"} and "P1_start" not in sessions[0].boundaries


def test_half_a_phase_marked_null_is_a_problem(tiny_sessions: Path, tmp_path: Path) -> None:
    root = tmp_path / "s"
    shutil.copytree(tiny_sessions, root)
    manifest = rewrite_first_row(root, lambda r: r["boundaries"].update({"P1_start": None}))
    _, problems = read(manifest)
    assert [(p.line, p.field) for p in problems] == [(1, "boundaries.P1")]
    assert "set both to null or give both times" in problems[0].reason


def test_reordered_phases_need_the_rows_phase_order(tiny_sessions: Path, tmp_path: Path) -> None:
    root = tmp_path / "s"
    shutil.copytree(tiny_sessions, root)

    def swap_p1_p2(row: dict) -> None:  # P2, then P1, then P3 (from 34 s)
        row["boundaries"].update(
            {"P2_start": 0.5, "P2_end": 24.0, "P1_start": 24.5, "P1_end": 33.5}
        )

    manifest = rewrite_first_row(root, swap_p1_p2)
    _, problems = read(manifest)
    assert problems and "phases out of order" in problems[0].reason
    assert "give the row a phase_order" in problems[0].reason
    manifest = rewrite_first_row(root, lambda r: r.update({"phase_order": ["P2", "P1", "P3"]}))
    sessions, problems = read(manifest)
    assert not problems and sessions[0].phase_order == ("P2", "P1", "P3")
    manifest = rewrite_first_row(root, lambda r: r.update({"phase_order": ["P2", "P1"]}))
    _, problems = read(manifest)
    assert (
        problems[0].field == "phase_order"
        and "each of ['P1', 'P2', 'P3'] once" in problems[0].reason
    )
