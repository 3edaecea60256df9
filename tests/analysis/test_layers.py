"""The layer analysis finds a signal planted in some layers of a synthetic stack, nothing in
noise, and splits the stack where the planted content takes over from the planted attribute;
on a real (tiny) audio LM it runs end to end from the command line."""

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from audiolora.analysis.layers import LayerStack, analyze, probe_accuracy, suggest_split
from audiolora.cli import app


def planted_stack(seed: int = 0) -> LayerStack:
    """6 layers: the speaker's age is planted in layers 0-2, the query's intent in 3-5."""
    rng = np.random.default_rng(seed)
    intents = [f"intent{i}" for i in range(6)]
    rows = [(intent, value, rep) for intent in intents for value in ("adult", "child")
            for rep in range(4)]  # fmt: skip
    states = rng.normal(size=(6, len(rows), 16))
    age_direction, intent_directions = rng.normal(size=16), rng.normal(size=(6, 16))
    for n, (intent, value, _) in enumerate(rows):
        for layer in range(3):
            states[layer, n] += 2.5 * age_direction * (1 if value == "child" else -1)
        for layer in range(3, 6):
            states[layer, n] += 3.0 * intent_directions[intents.index(intent)]
    return LayerStack(
        states=states,
        last=states[:, :, ::-1].copy(),
        categories=["age"] * len(rows),
        values=[v for _, v, _ in rows],
        intents=[i for i, _, _ in rows],
        groups=[f"{i}-{r}" for i, _, r in rows],
        texts=[f"{i} phrasing {r % 2}" for i, _, r in rows],
    )


def test_planted_signal_is_found_and_the_split_falls_where_it_was_planted() -> None:
    result = analyze(planted_stack())
    age, content = result["probe"]["age"], result["probe"]["content"]
    assert min(age[:3]) > 0.9 and max(age[3:]) < 0.75
    assert min(content[3:]) > 0.9 and max(content[:3]) < 0.5
    assert result["split"]["transition"] == 3
    assert result["split"]["paralinguistic"] == [0, 1, 2]
    assert result["split"]["semantic"] == [3, 4, 5]
    assert min(result["separability"]["age"][:3]) > 3 * max(result["separability"]["age"][3:])


def test_without_content_the_split_falls_where_voices_stop_mattering() -> None:
    flat = [0.0] * 6
    split = suggest_split([0.5] * 6, flat, [0.3, 0.35, 0.4, 0.7, 0.8, 0.8])
    assert split["rule"] == "voice" and split["transition"] == 3
    assert split["paralinguistic"] == [0, 1, 2] and split["semantic"] == [3, 4, 5]
    assert suggest_split([0.5] * 6, flat, [0.5] * 6)["transition"] is None


def test_the_states_cache_is_reused_and_a_cut_short_one_is_a_miss(tmp_path: Path) -> None:
    stack, path, source = planted_stack(), tmp_path / "states.npz", {"model": "m", "rows": 48}
    stack.save(path, source)
    assert [p.name for p in tmp_path.iterdir()] == ["states.npz"]
    cached = LayerStack.load(path, source)
    assert cached is not None and np.allclose(cached.states, stack.states)
    assert LayerStack.load(path, {**source, "model": "other"}) is None
    path.write_bytes(path.read_bytes()[:200])  # a writer killed half-way
    assert LayerStack.load(path, source) is None


def test_noise_gives_chance() -> None:
    rng = np.random.default_rng(1)
    labels = ["a", "b"] * 40
    accuracy = probe_accuracy(rng.normal(size=(80, 16)), labels, None)
    assert 0.3 < accuracy < 0.7


def test_analyze_layers_command(tiny_qwen2_audio_dir: Path, paralinguistic_dataset: Path,
                               tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "analysis"
    result = CliRunner().invoke(app, [
        "analyze", "layers", str(tiny_qwen2_audio_dir),
        "--data", str(paralinguistic_dataset / "train.jsonl"), "--output", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    numbers = json.loads((out / "layers.json").read_text())
    assert numbers["layers"] == 2
    assert set(numbers["probe"]) == {"content", "age", "gender", "emotion"}
    assert (out / "layers.png").stat().st_size > 10_000
    assert "transition layer" in result.output
    # A rerun reads the cached states instead of running the model again.
    (out / "layers.json").unlink()
    again = CliRunner().invoke(app, [
        "analyze", "layers", "no-such-model",
        "--data", str(paralinguistic_dataset / "train.jsonl"), "--output", str(out),
    ])  # fmt: skip
    assert again.exit_code != 0  # another model: the cache is not used for it
    again = CliRunner().invoke(app, [
        "analyze", "layers", str(tiny_qwen2_audio_dir),
        "--data", str(paralinguistic_dataset / "train.jsonl"), "--output", str(out),
    ])  # fmt: skip
    assert again.exit_code == 0 and json.loads((out / "layers.json").read_text()) == numbers
    last = CliRunner().invoke(app, [
        "analyze", "layers", str(tiny_qwen2_audio_dir), "--pool", "last",
        "--data", str(paralinguistic_dataset / "train.jsonl"), "--output", str(out),
    ])  # fmt: skip
    assert last.exit_code == 0 and json.loads((out / "layers.json").read_text())["pool"] == "last"
