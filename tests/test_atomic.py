from pathlib import Path

from audiolora.atomic import atomic_write_json, replace_dir


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
