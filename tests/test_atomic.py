from pathlib import Path

import numpy as np
import pytest

from audiolora.atomic import atomic_copy, atomic_target, atomic_write_json, replace_dir


def test_atomic_json_leaves_no_temp_file(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "m.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_replace_dir_swaps_whole_folder(tmp_path: Path) -> None:
    final = tmp_path / "adapter"
    final.mkdir()
    (final / "old").write_text("old")
    tmp = tmp_path / ".adapter.tmp"
    tmp.mkdir()
    (tmp / "new").write_text("new")
    replace_dir(tmp, final)
    assert [p.name for p in final.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_atomic_target_renames_on_success_and_keeps_the_old_file_on_failure(
    tmp_path: Path,
) -> None:
    target = tmp_path / "states.npz"
    with atomic_target(target) as tmp:
        assert tmp.suffix == ".npz", "np.savez would otherwise add a second suffix"
        np.savez(tmp, a=np.arange(3))
    assert np.load(target)["a"].tolist() == [0, 1, 2]
    with pytest.raises(KeyboardInterrupt), atomic_target(target) as tmp:
        tmp.write_bytes(b"half a file")
        raise KeyboardInterrupt
    assert np.load(target)["a"].tolist() == [0, 1, 2], "the old file is intact"
    assert [p.name for p in tmp_path.iterdir()] == ["states.npz"], "no temporary file left"


def test_atomic_copy(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    atomic_copy(tmp_path / "a.json", tmp_path / "b.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]
    assert (tmp_path / "b.json").read_text() == "{}"
