"""The embedded default end to end: real recorded sounds cut from Debian packages, the offline
dual encoder (aiSFX + MiniLM, warmed up on them), a short stage A -> stage B run, ZSTE before
and after, a reload, and `predict --audio --captions`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import audiolora
from audiolora.cli import app
from audiolora.config import load_config
from audiolora.training.run import run_training

RECIPE = Path(audiolora.__file__).parent / "recipes" / "contrastive-dual-encoder.yaml"


@pytest.fixture(scope="session")
def sound_events(cache_root: Path) -> Path:
    if shutil.which("apt-get") is None and os.environ.get("CI") != "true":
        pytest.skip("the sound-event set is cut from Debian packages (apt-get download)")
    from audiolora.builtin.synth.sound_events import synth_sound_event_dataset

    out = cache_root / "sound-events-small"
    synth_sound_event_dataset(out, train_combos=10, eval_combos=6)
    return out


@pytest.fixture(scope="session")
def dual_encoder(sound_events: Path, cache_root: Path) -> Path:
    if os.environ.get("CI") != "true":  # under CI a missing tower is a broken setup: fail
        pytest.importorskip("aisfx")
    from audiolora.builtin.dual_encoder import build_dual_encoder

    out = cache_root / "dual-encoder-small"
    summary = build_dual_encoder(out, sound_events, steps=60)
    # 60 steps of warm-up already name held-out sounds far above chance (1/49).
    assert summary["held_out_zero_shot_accuracy"] > 5 * summary["chance"]
    return out


def test_sound_event_set(sound_events: Path) -> None:
    summary = json.loads((sound_events / "dataset.json").read_text())
    assert summary["classes"] >= 40
    classes = json.loads((sound_events / "classes.json").read_text())
    assert all(c["eval"] >= 1 and c["train"] >= 1 for c in classes.values())
    rows = [json.loads(line) for line in (sound_events / "eval.jsonl").read_text().splitlines()]
    assert {r["relation"] for r in rows} == {"single", "before", "while"}
    assert all(r["license"] and r["caption"] for r in rows)
    train_sources = {
        s for line in (sound_events / "train.jsonl").read_text().splitlines()
        for s in json.loads(line)["source"]
    }  # fmt: skip
    assert not train_sources & {s for r in rows for s in r["source"]}  # held-out recordings


def test_two_stage_run_on_the_embedded_default(
    dual_encoder: Path, sound_events: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = load_config(RECIPE, [
        f"output_dir={out}", f"model.name={dual_encoder}",
        f"data.train={sound_events / 'train.jsonl'}", f"data.eval={sound_events / 'eval.jsonl'}",
        "training.max_steps=2", "training.batch_size=8",
    ])  # fmt: skip
    metrics = run_training(config)
    assert [s["name"] for s in metrics["stages"]] == ["A", "B"]
    for side in ("base", "final"):
        for key in ("zste_single", "zste_pair", "zste_order", "zste_overlap", "a2t_r@1"):
            assert 0.0 <= metrics[side][key] <= 1.0
    assert metrics["stages"][0]["eval"]["zste_mean"] is not None
    ratio = metrics["efficiency"]["trainable_ratio"]
    assert 0.05 < ratio < 0.15  # the last layers + projections: about a tenth

    clip = next(iter(sorted((sound_events / "clips" / "eval").glob("*before*.flac"))))
    result = CliRunner().invoke(
        app, ["predict", str(out), "--audio", str(clip), "--captions", "a dog, then a door",
              "a door, then a dog"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "a dog, then a door" in result.output and "%" in result.output


def test_full_finetuning_trains_both_towers_and_reloads(
    dual_encoder: Path, sound_events: Path, tmp_path: Path
) -> None:
    out = tmp_path / "full"
    config = load_config(RECIPE, [
        f"output_dir={out}", f"model.name={dual_encoder}",
        f"data.train={sound_events / 'train.jsonl'}", f"data.eval={sound_events / 'eval.jsonl'}",
        "contrastive.schedule=a", "adapter.method=full", "training.max_steps=1",
        "training.batch_size=8", "training.warmup_ratio=0",
    ])  # fmt: skip
    metrics = run_training(config)
    assert metrics["efficiency"]["trainable_ratio"] == 1.0
    result = CliRunner().invoke(
        app, ["eval", str(out), "--json", "--data", str(sound_events / "eval.jsonl")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["zste_mean"] == pytest.approx(metrics["final"]["zste_mean"])
