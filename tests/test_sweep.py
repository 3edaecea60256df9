"""`audiolora sweep`: grid expansion, one run per point and seed, mean ± std, resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from audiolora.cli import app
from audiolora.config import ConfigError, RunConfig
from audiolora.sweep import parse_grid, run_sweep, sweep_rows


def test_grid_is_the_cartesian_product() -> None:
    points = parse_grid(["adapter.r=2,4", "training.learning_rate=1e-3,3e-4,1e-4"])
    assert len(points) == 6
    assert points[0].overrides() == ["adapter.r=2", "training.learning_rate=1e-3"]
    assert points[-1].name == "adapter.r=4,training.learning_rate=1e-4"


def test_bad_axis_is_rejected() -> None:
    with pytest.raises(ConfigError, match="key.path=v1,v2"):
        parse_grid(["adapter.r"])


def test_variants_are_one_more_axis_of_setting_bundles() -> None:
    # The seed's comparison: per window, a head-only arm and LoRA arms at several ranks.
    points = parse_grid(
        ["temporal.window_s=30,60"],
        ["temporal.head_only=true", "adapter.r=2", "adapter.r=4 adapter.alpha=8"],
    )
    assert [p.name for p in points] == [
        "temporal.window_s=30,temporal.head_only=true",
        "temporal.window_s=30,adapter.r=2",
        "temporal.window_s=30,adapter.r=4,adapter.alpha=8",
        "temporal.window_s=60,temporal.head_only=true",
        "temporal.window_s=60,adapter.r=2",
        "temporal.window_s=60,adapter.r=4,adapter.alpha=8",
    ]
    assert points[2].overrides() == ["temporal.window_s=30", "adapter.r=4", "adapter.alpha=8"]
    assert [p.name for p in parse_grid([], ["adapter.r=2", "adapter.r=8"])] == [
        "adapter.r=2",
        "adapter.r=8",
    ]


@pytest.mark.parametrize(
    ("axes", "variants", "message"),
    [
        ([], ["adapter.r"], "'adapter.r' must look like key.path=value"),
        ([], [], "at least one --grid axis or --variant"),
        (["adapter.r=2,4"], ["adapter.r=8"], "sets a key twice"),
    ],
)
def test_bad_variants_are_rejected(axes: list[str], variants: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grid(axes, variants)


def test_sweep_runs_each_point_and_seed_once(tmp_path: Path) -> None:
    calls: list[RunConfig] = []

    def fake_train(config: RunConfig) -> dict[str, Any]:
        calls.append(config)
        wer = 0.1 * config.adapter.r + 0.01 * (config.training.seed - 42)
        out = Path(config.output_dir)
        out.mkdir(parents=True)
        metrics = {"final": {"wer": wer, "cer": wer / 2, "bleu": 50.0, "perplexity": 2.0}}
        (out / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    summary = run_sweep(None, ["adapter.r=1,2"], seeds=2, out_dir=tmp_path, train=fake_train)
    # Seed-major: every point has run once before any point runs twice.
    assert [(c.adapter.r, c.training.seed) for c in calls] == [(1, 42), (2, 42), (1, 43), (2, 43)]
    wer = {p["name"]: p["summary"]["wer"] for p in summary["points"]}
    assert wer["adapter.r=1"]["mean"] == pytest.approx(0.105)
    assert wer["adapter.r=1"]["std"] == pytest.approx(0.00707107, rel=1e-4)
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert "10.50 ± 0.71" in (tmp_path / "sweep.md").read_text()

    calls.clear()
    again = run_sweep(
        None,
        ["adapter.r=1,2"],
        seeds=2,
        out_dir=tmp_path,
        train=fake_train,
        relative_to="adapter.r=2",
    )
    assert calls == [], "finished runs are not trained again"
    header, rows = sweep_rows(again)
    assert header[-1] == "wer / reference"
    assert [r[-1] for r in rows] == ["51%", "100%"]  # 0.105 / 0.205
    with pytest.raises(ConfigError, match="not a grid point"):
        run_sweep(None, ["adapter.r=1,2"], 1, tmp_path, train=fake_train, relative_to="r=3")


def test_an_interrupted_sweep_has_already_written_its_table(tmp_path: Path) -> None:
    def train_twice(config: RunConfig) -> dict[str, Any]:
        if config.training.seed > 42:
            raise KeyboardInterrupt  # the user stops the sweep during the second seed
        metrics = {
            "base": {"wer": 0.5},
            "final": {"wer": 0.1 * config.adapter.r, "cer": 0.0, "bleu": 0.0, "perplexity": 1.0},
            "efficiency": {"wall_seconds": 12.5},
        }
        Path(config.output_dir).mkdir(parents=True)
        (Path(config.output_dir) / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    with pytest.raises(KeyboardInterrupt):
        run_sweep(None, ["adapter.r=1,2"], seeds=3, out_dir=tmp_path, train=train_twice)
    table = (tmp_path / "sweep.md").read_text()
    assert "| grid point | runs | wer (%) | wer before training (%) |" in table
    assert "| adapter.r=1 | 1 | 10.00 | 50.00 |" in table and "| adapter.r=2 | 1 | 20.00 |" in table
    assert "wall_s" in table and "12.50" in table


def test_per_type_columns_read_start_before_end(tmp_path: Path) -> None:
    def fake_train(config: RunConfig) -> dict[str, Any]:
        metrics = {
            "base": {"mae_s": 9.0},
            "final": {"mae_s": 4.0 + config.adapter.r},
            "final_details": {"P2_end/mae_s": 3.0, "P1_end/mae_s": 2.0, "P1_start/mae_s": 1.0},
        }
        Path(config.output_dir).mkdir(parents=True)
        (Path(config.output_dir) / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    overrides = ["task=temporal", "model.name=builtin:qwen2-audio-smollm2-tiny"]
    run_sweep(None, [], 1, tmp_path, overrides, train=fake_train, variants=["adapter.r=2"])
    table = (tmp_path / "sweep.md").read_text()
    assert "| mae_s | mae_s before training |" in table
    assert table.index("P1_start/mae_s") < table.index("P1_end/mae_s") < table.index("P2_end")
    assert "| adapter.r=2 | 1 | 6.00 | 9.00 |" in table
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_sweep_cli_on_tiny_whisper(
    tiny_random_whisper_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    args = [
        "sweep",
        "whisper-tiny-en-lora",
        "--variant",
        "adapter.r=1",
        "--variant",
        "adapter.r=2 adapter.alpha=4",
        "--seeds",
        "1",
        "--output-dir",
        str(tmp_path / "sweep"),
    ]
    for o in [
        f"model.name={tiny_random_whisper_dir}",
        f"data.train={speech_dataset / 'train.jsonl'}",
        f"data.eval={speech_dataset / 'eval.jsonl'}",
        "training.max_steps=1",
        "training.batch_size=4",
        "training.max_new_tokens=4",
        "training.eval_steps=100",
        "training.save_steps=100",
    ]:
        args += ["--set", o]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "adapter.r=1" in result.output  # the console folds long names; sweep.md keeps them
    assert "| adapter.r=2,adapter.alpha=4 | 1 |" in (tmp_path / "sweep" / "sweep.md").read_text()
    # The default recipe scores the out-of-domain retention set: its columns join the table.
    table = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "wer on builtin:speech-retention (%)" in table
    assert "wer on builtin:speech-retention before training (%)" in table
    run = tmp_path / "sweep" / "adapter.r=2,adapter.alpha=4" / "seed-0"
    assert (run / "adapter").is_dir()
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["lora_alpha"] == 4


def test_arms_with_the_same_base_share_one_base_measurement(tmp_path: Path) -> None:
    """Two adapter placements on the same model and data: the base is measured once, the second
    arm starts from a copy of it (as a resumed run), and each seed measures its own."""
    measured: list[str] = []

    def fake_train(config: RunConfig, resume: bool = False) -> dict[str, Any]:
        out = Path(config.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("base_metrics.json", "base_retention.json"):
            if not (resume and (out / name).exists()):
                measured.append(f"{out.parent.name}/{out.name}")
                (out / name).write_text("{}")
        metrics = {"final": {"wer": 0.1, "cer": 0.05, "bleu": 50.0, "perplexity": 2.0}}
        (out / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    variants = ["adapter.layers=null", "adapter.layers=[0]"]
    run_sweep(None, [], 2, tmp_path, train=fake_train, variants=variants)
    assert sorted(set(measured)) == ["adapter.layers=null/seed-0", "adapter.layers=null/seed-1"]
    copied = tmp_path / "adapter.layers=[0]" / "seed-1" / "base_metrics.json"
    assert copied.exists()
