from pathlib import Path

from audiolora.training.checkpoints import MARKER, latest_complete_checkpoint


def make_checkpoint(root: Path, step: int, complete: bool) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        (folder / MARKER).write_text(str(step))
    return folder


def test_newest_complete_checkpoint_wins_and_partial_ones_go(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, 5, complete=True)
    ten = make_checkpoint(tmp_path, 10, complete=True)
    partial = make_checkpoint(tmp_path, 15, complete=False)
    (tmp_path / "unrelated").mkdir()
    assert latest_complete_checkpoint(tmp_path) == ten
    assert not partial.exists()
    assert (tmp_path / "unrelated").exists()


def test_no_checkpoint_folder_means_none(tmp_path: Path) -> None:
    assert latest_complete_checkpoint(tmp_path / "missing") is None
