"""A short real fine-tune of pretrained Whisper tiny.en: the loss falls and the saved adapter,
reloaded with plain PEFT, gives the same logits as the model in memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import WhisperForConditionalGeneration

from audiolora.config import load_config
from audiolora.data.manifest import read_manifest
from audiolora.inference import load_run
from audiolora.models.families.whisper import SpeechCollator, SpeechTextDataset
from audiolora.training.run import run_training


@pytest.mark.slow
def test_real_tiny_en_learns_and_reloads(
    tiny_en_dir: Path, speech_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    overrides = [
        f"output_dir={out}",
        f"model.name={tiny_en_dir}",
        f"data.train={speech_dataset / 'train.jsonl'}",
        f"data.eval={speech_dataset / 'eval.jsonl'}",
        "adapter.train_audio_encoder=false",
        "adapter.dropout=0.0",
        "data.spec_augment.enabled=false",
        "training.max_steps=6",
        "training.batch_size=4",
        "training.learning_rate=0.002",
        "training.warmup_ratio=0.0",
        "training.lr_scheduler=constant_with_warmup",
        "training.logging_steps=1",
        "training.eval_steps=100",
        "training.save_steps=100",
        "training.max_new_tokens=40",
        "data.retention=[]",
    ]
    metrics = run_training(load_config(None, overrides))
    losses = [h["loss"] for h in metrics["history"] if "loss" in h]
    assert len(losses) == 6
    # 12 clips, batch 4: steps 1-3 and 4-6 are the same three batches in a new order.
    assert sum(losses[3:]) < sum(losses[:3])
    assert metrics["final"]["perplexity"] < metrics["base"]["perplexity"]
    assert metrics["base"]["wer"] < 0.6, "pretrained tiny.en should understand TTS speech"

    rows = read_manifest(speech_dataset / "eval.jsonl").rows[:2]
    adapted, processor, _ = load_run(out)
    batch = SpeechCollator(50257)([SpeechTextDataset(rows, processor)[i] for i in range(2)])
    plain = PeftModel.from_pretrained(
        WhisperForConditionalGeneration.from_pretrained(tiny_en_dir), str(out / "adapter")
    ).eval()
    bare = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir).eval()
    with torch.no_grad():
        ours = adapted(**batch).logits
        theirs = plain(**batch).logits
        untouched = bare(**batch).logits
    torch.testing.assert_close(ours, theirs)
    assert not torch.allclose(ours, untouched, atol=1e-3), "the adapter should change the model"
