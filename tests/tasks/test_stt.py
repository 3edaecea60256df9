from pathlib import Path

import numpy as np
import torch
from transformers import WhisperProcessor

from audiolora.data.manifest import read_manifest
from audiolora.models.families.whisper import IGNORE_INDEX, SpeechCollator, SpeechTextDataset


def test_collator_drops_start_token_and_pads_labels() -> None:
    start = 50257
    items = [
        {"input_features": np.zeros((80, 3000), np.float32), "labels": [start, 1, 2, 3]},
        {"input_features": np.ones((80, 3000), np.float32), "labels": [start, 7]},
    ]
    batch = SpeechCollator(start)(items)
    assert batch["input_features"].shape == (2, 80, 3000)
    assert batch["labels"].tolist() == [[1, 2, 3], [7, IGNORE_INDEX, IGNORE_INDEX]]


def test_dataset_items_carry_features_and_full_label_sequence(
    tiny_en_dir: Path, speech_dataset: Path
) -> None:
    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    report = read_manifest(speech_dataset / "train.jsonl")
    dataset = SpeechTextDataset(report.rows, processor)
    item = dataset[0]
    assert item["input_features"].shape == (80, 3000)
    ids = item["labels"]
    assert ids[:2] == [50257, 50362] and ids[-1] == 50256
    text = processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert text.strip() == report.rows[0].text
    assert dataset.lengths == [row.audio_seconds for row in report.rows]
    assert torch.tensor(item["input_features"]).abs().max() <= 2.0
