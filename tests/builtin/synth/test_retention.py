"""The out-of-domain retention set: Festival voices reading prose the templates never make."""

from __future__ import annotations

import json
import re
from pathlib import Path

import soundfile as sf

from audiolora.builtin.synth.retention import FESTIVAL_VOICES, SENTENCES, synth_retention_dataset
from audiolora.builtin.synth.text import all_templates
from audiolora.data.manifest import read_manifest


def test_retention_clips_use_festival_voices_and_unseen_prose(tmp_path: Path) -> None:
    summary = synth_retention_dataset(tmp_path, progress=False, limit=4)
    assert summary["clips"] == 4
    report = read_manifest(tmp_path / "retention.jsonl")
    assert report.ok and len(report.rows) == 4
    voices = {r.raw["voice"] for r in report.rows}
    assert voices == {f"festival:{v}" for v in FESTIVAL_VOICES}  # alternating voices
    for row in report.rows:
        info = sf.info(str(row.audio))
        assert info.samplerate == 16000 and info.duration > 1.5
    assert json.loads((tmp_path / "dataset.json").read_text())["engine"] == "festival"


def test_no_template_can_produce_a_retention_sentence() -> None:
    patterns = [
        re.compile(".+".join(re.escape(part) for part in re.split(r"\{[a-z_0-9]+\}", t)), re.I)
        for _, t in all_templates()
    ]
    for sentence in SENTENCES:
        assert not any(p.fullmatch(sentence) for p in patterns), sentence
    assert len(set(SENTENCES)) == len(SENTENCES) >= 40
