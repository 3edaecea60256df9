"""Whisper's encoder fed the batch's real length: what changes and what must not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from audiolora.data.manifest import read_manifest
from audiolora.evaluation.metrics import transcription_metrics
from audiolora.models.encoder_context import accept_any_width, context_frames
from audiolora.models.families.whisper import (
    SpeechCollator,
    SpeechTextDataset,
    transcribe_batches,
)


def test_context_frames_round_up_to_even_steps_within_the_window() -> None:
    assert context_frames(2.3, 1.0) == 300
    assert context_frames(2.0, 1.0) == 200
    assert context_frames(0.01, 0.5) == 50
    assert context_frames(0.0, 1.0) == 100, "never an empty input"
    assert context_frames(29.5, 2.0) == 3000, "never past 30 s"
    assert context_frames(1.234, 0.011) % 2 == 0


def test_full_width_is_unchanged_and_narrow_input_takes_the_first_positions(
    tiny_random_whisper_dir: Path,
) -> None:
    model = WhisperForConditionalGeneration.from_pretrained(tiny_random_whisper_dir).eval()
    encoder = model.model.encoder
    full = torch.randn(2, 80, 3000)
    with torch.no_grad():
        before = encoder(full).last_hidden_state
        accept_any_width(encoder)
        accept_any_width(encoder)  # idempotent
        after = encoder(full).last_hidden_state
        narrow = encoder(full[..., :400]).last_hidden_state
        # The same pass written out: convolutions, the first 200 positions, the layers.
        x = torch.nn.functional.gelu(encoder.conv1(full[..., :400]))
        x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
        x = x + encoder.embed_positions.weight[:200]
        for layer in encoder.layers:
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out
        by_hand = encoder.layer_norm(x)
        again = encoder(full).last_hidden_state
    torch.testing.assert_close(after, before)
    assert narrow.shape == (2, 200, 64)
    torch.testing.assert_close(narrow, by_hand)
    torch.testing.assert_close(again, before)
    # Weights, the model's config and what a checkpoint saves keep the 30 s window.
    assert model.config.max_source_positions == 1500
    assert model.state_dict()["model.encoder.embed_positions.weight"].shape[0] == 1500


def test_widths_the_encoder_cannot_take_are_refused(tiny_random_whisper_dir: Path) -> None:
    model = WhisperForConditionalGeneration.from_pretrained(tiny_random_whisper_dir).eval()
    accept_any_width(model.model.encoder)
    for width in (301, 3002):
        with pytest.raises(ValueError, match=f"{width} mel frames"):
            model.model.encoder(torch.randn(1, 80, width))


def test_collator_cuts_features_and_gates_to_the_longest_clip() -> None:
    items = [
        {"input_features": torch.ones(80, 3000).numpy(), "encoder_frames": 200,
         "speech_gate": torch.ones(1500).numpy(), "labels": [1, 2]},
        {"input_features": torch.ones(80, 3000).numpy(), "encoder_frames": 400,
         "speech_gate": torch.ones(1500).numpy(), "labels": [3]},
    ]  # fmt: skip
    batch = SpeechCollator(50257)(items)
    assert batch["input_features"].shape == (2, 80, 400)
    assert batch["speech_gate"].shape == (2, 200)


@pytest.mark.slow
def test_trimmed_input_with_a_floor_keeps_pretrained_wer(
    tiny_en_dir: Path, speech_dataset: Path
) -> None:
    """Real tiny.en on 18 clips of 1-4 s: fed with a 10 s floor, WER stays near the 30 s
    figure; fed each clip's own length, the pretrained decoder loops (why the floor exists)."""
    model = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir).eval()
    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    accept_any_width(model.model.encoder)
    rows = read_manifest(speech_dataset / "eval.jsonl").rows
    rows += read_manifest(speech_dataset / "train.jsonl").rows
    refs = [row.text for row in rows]
    scores, widths = {}, {}
    for trim in (None, (1.0, 10.0), (1.0, 0.0)):
        dataset = SpeechTextDataset(rows, processor, trim_context=trim)
        batches = [SpeechCollator(50257)([dataset[i] for i in range(j, j + 6)]) for j in (0, 6, 12)]
        widths[trim] = max(b["input_features"].shape[-1] for b in batches)
        hyps, _, _ = transcribe_batches(model, processor, batches, max_new_tokens=40)
        scores[trim] = transcription_metrics(hyps, refs)["wer"]
    assert widths == {None: 3000, (1.0, 10.0): 1000, (1.0, 0.0): widths[(1.0, 0.0)]}
    assert widths[(1.0, 0.0)] <= 500
    assert scores[None] < 0.5
    assert scores[(1.0, 10.0)] <= scores[None] + 0.12, scores
    assert scores[(1.0, 0.0)] > scores[None] + 0.3, scores
