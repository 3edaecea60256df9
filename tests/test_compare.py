"""`audiolora compare` on two run folders and a sweep folder: one table, mean ± std over a
sweep point's seeds, a refusal to mix tasks."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from audiolora.cli import app
from audiolora.compare import collect, table


def fake_run(folder: Path, wer: float, params: int, task: str = "stt") -> Path:
    folder.mkdir(parents=True)
    metrics = {
        "task": task,
        "final": {"wer": wer, "cer": wer / 2, "bleu": 50.0, "perplexity": 3.0},
        "efficiency": {"trainable_params": params, "trainable_ratio": params / 1e6,
                       "adapter_mb": params * 4 / 1e6, "samples_per_second": 10.0,
                       "peak_memory_mb": 900.0, "wall_seconds": 60.0},
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_runs_and_sweep_points_in_one_table(tmp_path: Path) -> None:
    uniform = fake_run(tmp_path / "uniform", 0.20, 1000)
    full = fake_run(tmp_path / "full", 0.10, 1_000_000)
    sweep = tmp_path / "sweep"
    for seed, wer in enumerate((0.30, 0.40)):
        fake_run(sweep / "adapter.r=4" / f"seed-{seed}", wer, 500)
    (sweep / "sweep.json").write_text(json.dumps({"points": [{"name": "adapter.r=4"}]}))

    task, entries = collect([uniform, full, sweep])
    assert task == "stt" and [e.name for e in entries] == ["uniform", "full", "sweep: adapter.r=4"]
    header, rows = table(task, entries)
    wer = header.index("WER (↓)")
    assert rows[0][wer] == "20.0%" and rows[2][wer] == "35.0% ± 7.1%"
    assert rows[1][header.index("trainable params")] == "1,000,000"

    out = tmp_path / "page"
    result = CliRunner().invoke(app, ["compare", str(uniform), str(full), str(sweep),
                                      "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "35.0% ± 7.1%" in (out / "compare.md").read_text()
    assert (out / "compare.png").stat().st_size > 0
    assert "<table>" in (out / "compare.html").read_text()


def test_mixing_tasks_is_refused(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "a", 0.2, 10)
    b = fake_run(tmp_path / "b", 0.2, 10, task="temporal")
    result = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert result.exit_code != 0 and "temporal" in result.output
