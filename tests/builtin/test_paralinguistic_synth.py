"""The paired-voice builder: the clips of a group differ only in the attribute they are meant
to, held-out topics and voices never occur in training, child-safety topics only held out, the
plan is reproducible, and the built manifests pass the task's own checks."""

from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf

from audiolora.builtin.synth.paralinguistic import plan_clips
from audiolora.builtin.synth.paralinguistic_text import CATEGORIES
from audiolora.data.paralinguistic import read_paralinguistic_manifest

OWN_FIELDS = {"age": {"child"}, "gender": {"variant"}, "emotion": {"prosody"}}


def test_pairs_differ_only_in_their_attribute() -> None:
    groups: dict[str, list] = {}
    for clip in plan_clips(seed=0):
        groups.setdefault(clip.group, []).append(clip)
    for name, clips in groups.items():
        category = clips[0].category
        assert {c.value for c in clips} == set(CATEGORIES[category]), name
        assert len({c.text for c in clips}) == 1
        voices = [asdict(c.voice) for c in clips]
        varying = {k for k in voices[0] if len({str(v[k]) for v in voices}) > 1}
        assert varying <= OWN_FIELDS[category], (name, varying)
        assert varying, f"{name}: the clips of a pair must differ"


def test_held_out_topics_and_voices_are_unseen_and_safety_is_held_out() -> None:
    plan = plan_clips(seed=0)
    train = [c for c in plan if c.split == "train"]
    held = [c for c in plan if c.split == "eval"]
    assert not {c.topic.intent for c in train} & {c.topic.intent for c in held}
    assert not {c.voice.variant for c in train} & {c.voice.variant for c in held}
    assert {c.set for c in held} == {"held_out", "child_safety"}
    assert all(c.set == "train" for c in train)
    assert plan == plan_clips(seed=0) and plan != plan_clips(seed=1)


def test_built_set_passes_the_checks(paralinguistic_dataset: Path) -> None:
    for split, count in (("train", 16), ("eval", 12)):
        rows, report = read_paralinguistic_manifest(
            paralinguistic_dataset / f"{split}.jsonl", {k: list(v) for k, v in CATEGORIES.items()}
        )
        assert not report.problems and len(rows) == count
    rows, _ = read_paralinguistic_manifest(
        paralinguistic_dataset / "train.jsonl", {k: list(v) for k, v in CATEGORIES.items()}
    )
    # The child clip is its adult pair's voice shifted up: a higher spectral centroid.
    adult, child = [r for r in rows if r.category == "age"][:2]
    assert (adult.value, child.value) == ("adult", "child") and adult.text == child.text
    assert centroid(child.audio) > 1.1 * centroid(adult.audio)


def centroid(path: Path) -> float:
    audio, sr = sf.read(str(path))
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / sr)
    return float((spectrum * freqs).sum() / spectrum.sum())
