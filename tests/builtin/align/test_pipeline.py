"""`align_assembled` end to end on a tiny random Qwen2-Audio: a run folder that `audiolora eval`
and `model.merge_adapter` accept, and a killed run that resumes to the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from audiolora.builtin.align import AlignRecipe, align_assembled
from audiolora.builtin.align.loop import CachedAudioLM, LoopSettings
from audiolora.inference import evaluate_run


def recipe(model: Path, data: Path) -> AlignRecipe:
    return AlignRecipe(
        base=str(model),
        train=str(data / "train.jsonl"),
        held_out=str(data / "eval.jsonl"),
        loop=LoopSettings(
            steps=4,
            batch_size=4,
            eval_every=2,
            save_every=2,
            warmup_steps=1,
            max_new_tokens=4,
            precision="fp32",
        ),
    )


def test_alignment_writes_a_run_folder_that_eval_reopens(
    tiny_qwen2_audio_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "align"
    summary = align_assembled(out, recipe(tiny_qwen2_audio_dir, speech_dataset), progress=False)
    assert summary["train_clips"] == 12 and summary["held_out_clips"] == 6
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "align.png").stat().st_size > 0
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert any("multi_modal_projector" in k for k in weights)  # the trained projector ships
    assert any("lora_A" in k for k in weights)
    metrics = evaluate_run(out, speech_dataset / "eval.jsonl")
    assert metrics["n"] == 6
    # The standard path (whole tower, run folder reloaded) scores what the loop's cached-tower
    # evaluation scored at its last step.
    assert metrics["wer"] == pytest.approx(summary["after"]["wer"], abs=1e-6)
    log = json.loads((out / "align-log.json").read_text())
    loop_said = {e["reference"]: e["hypothesis"] for e in log[-1]["examples"]}
    eval_said = {e["reference"]: e["hypothesis"] for e in metrics["examples"]}
    assert loop_said and all(eval_said[ref] == hyp for ref, hyp in loop_said.items())


def test_killed_alignment_resumes_to_the_same_weights(
    tiny_qwen2_audio_dir: Path,
    speech_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = recipe(tiny_qwen2_audio_dir, speech_dataset)
    align_assembled(tmp_path / "straight", r, progress=False)

    calls = {"n": 0}
    real_loss = CachedAudioLM.loss

    def dying_loss(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:  # after the checkpoint at step 2
            raise KeyboardInterrupt
        return real_loss(self, batch)

    monkeypatch.setattr(CachedAudioLM, "loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        align_assembled(tmp_path / "killed", r, progress=False)
    assert not (tmp_path / "killed" / "adapter").exists()
    monkeypatch.setattr(CachedAudioLM, "loss", real_loss)
    align_assembled(tmp_path / "killed", r, progress=False)

    a = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "killed" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
