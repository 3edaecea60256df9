"""Paired voices for paralinguistic fine-tuning (seed 004), made offline with espeak-ng.

Why pairs: to learn that *how* something is said matters, the model must hear the same words
from speakers that differ in one attribute only, with a different right answer for each. Every
query of a topic is spoken once per value of one category, and the clips of that group share
text, base voice, pitch setting and rate; only the attribute's own parameters change:
- age: the adult clip is the base voice as it is; the child clip is the same voice pitched up
  and with its formants shifted up (a shorter vocal tract): synthesized `CHILD_SHIFT` x slower,
  then resampled `CHILD_SHIFT` x faster, which raises pitch and formants together and restores
  the duration;
- gender: a male and a female espeak-ng variant of the same accent, same prosody;
- emotion: the same voice with SSML prosody (pitch, pitch range, rate, loudness) for neutral,
  happy, sad and angry. Loudness survives the peak normalisation as a fixed gain per emotion.

Held-out rows use topics and voices that training never uses; the child-safety rows (risky
requests) exist only in the held-out manifest. Every engine call has a timeout; the same seed
gives the same texts, voices and prosody.

Layout: `audio/{train,eval}/NNNNN.wav`, `train.jsonl`, `eval.jsonl` with rows
`{"audio", "text", "intent", "attributes": {"category", "value"}, "responses": {value: text},
"group", "set": "train" | "held_out" | "child_safety", "voice": {...}, "duration"}`, and
`dataset.json`.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from audiolora.builtin.synth.paralinguistic_text import (
    CATEGORIES,
    EVAL_TOPICS,
    SAFETY_TOPICS,
    TRAIN_TOPICS,
    Topic,
    responses,
)
from audiolora.builtin.synth.speech import (
    SAMPLE_RATE,
    SynthesisError,
    begin_dataset,
    finish_dataset,
    load_engine_clip,
    run_engine,
    write_jsonl,
)

CHILD_SHIFT = 1.25
"""Factor by which the child voice's pitch and formants are raised."""
CHILD_PITCH_STEP = 20
"""How much higher the child clip's espeak-ng pitch setting is (0..99 scale)."""
PROSODY: dict[str, dict[str, str]] = {
    "neutral": {},
    "happy": {"pitch": "high", "range": "x-high", "rate": "fast"},
    "sad": {"pitch": "low", "range": "x-low", "rate": "slow"},
    "angry": {"pitch": "medium", "range": "high", "rate": "fast"},
}
"""espeak-ng SSML prosody per emotion."""
GAIN = {"neutral": 0.7, "happy": 0.8, "sad": 0.35, "angry": 0.95}
"""Peak level per emotion (clips are normalised first, so loudness is set here)."""
TRAIN_VOICES = {"male": ("m1", "m2", "m3", "m4"), "female": ("f1", "f2", "f3")}
EVAL_VOICES = {"male": ("m5", "m6"), "female": ("f4", "f5")}
"""espeak-ng variants; held-out rows use only voices training never hears."""
ACCENTS = ("en-us", "en")


@dataclass(frozen=True)
class VoiceSpec:
    """Everything that decides how a clip sounds; pairs of a group differ in the attribute's
    own fields only (a test checks this)."""

    accent: str
    variant: str
    pitch: int
    rate: int
    prosody: str = "neutral"
    child: bool = False

    def command(self, text: str, wav: Path) -> list[str]:
        voice = f"{self.accent}+{self.variant}"
        pitch = min(self.pitch + (CHILD_PITCH_STEP if self.child else 0), 99)
        rate = round(self.rate / CHILD_SHIFT) if self.child else self.rate
        attrs = " ".join(f'{k}="{v}"' for k, v in PROSODY[self.prosody].items())
        ssml = f"<speak><prosody {attrs}>{text}</prosody></speak>" if attrs else text
        return ["espeak-ng", "-m", "-v", voice, "-p", str(pitch), "-s", str(rate), "-w",
                str(wav), ssml]  # fmt: skip


@dataclass(frozen=True)
class Clip:
    split: str
    index: int
    text: str
    topic: Topic
    category: str
    value: str
    voice: VoiceSpec
    group: str
    set: str
    variant: int

    @property
    def audio(self) -> str:
        return f"audio/{self.split}/{self.index:05d}.wav"


def group_voices(category: str, base: VoiceSpec, voices: dict[str, tuple[str, ...]],
                 rng: random.Random) -> dict[str, VoiceSpec]:  # fmt: skip
    """One voice per value of `category`, all equal to `base` but in the attribute's fields."""
    if category == "age":
        return {"adult": base, "child": replace(base, child=True)}
    if category == "gender":
        return {
            "male": replace(base, variant=rng.choice(voices["male"])),
            "female": replace(base, variant=rng.choice(voices["female"])),
        }
    return {emotion: replace(base, prosody=emotion) for emotion in CATEGORIES["emotion"]}


def plan_clips(seed: int, eval_phrasings: int = 1, topics: int | None = None) -> list[Clip]:
    """Every clip of both splits, drawn from `seed` before any engine runs (the first `topics`
    topics of each set: small sets for tests)."""
    rng = random.Random(seed)
    plan: list[Clip] = []
    splits = (
        ("train", "train", TRAIN_TOPICS, TRAIN_VOICES, None),
        ("eval", "held_out", EVAL_TOPICS, EVAL_VOICES, eval_phrasings),
        ("eval", "child_safety", SAFETY_TOPICS, EVAL_VOICES, None),
    )
    counters = {"train": 0, "eval": 0}
    for split, kind, chosen, voices, phrasing_limit in splits:
        categories = ("age",) if kind == "child_safety" else tuple(CATEGORIES)
        for topic in chosen[:topics]:
            for p, text in enumerate(topic.phrasings[:phrasing_limit]):
                for category in categories:
                    # Children are pitched-up female or male voices alike; a group's base voice
                    # is one adult speaker at one pitch and rate.
                    sex = rng.choice(("male", "female"))
                    base = VoiceSpec(
                        accent=rng.choice(ACCENTS),
                        variant=rng.choice(voices[sex]),
                        pitch=rng.randint(35, 60),
                        rate=rng.randint(150, 185),
                    )
                    variant = rng.randrange(3)
                    group = f"{kind}-{topic.intent}-{p}-{category}"
                    for value, voice in group_voices(category, base, voices, rng).items():
                        plan.append(
                            Clip(
                                split,
                                counters[split],
                                text,
                                topic,
                                category,
                                value,
                                voice,
                                group,
                                kind,
                                variant,
                            )  # fmt: skip
                        )
                        counters[split] += 1
    return plan


def render(clip: Clip, out_dir: Path, tmp_dir: Path, timeout_s: float) -> float:
    """Synthesize one clip to its 16 kHz WAV; returns its duration in seconds."""
    raw = tmp_dir / f"{clip.split}-{clip.index}.wav"
    run_engine(clip.voice.command(clip.text, raw), timeout_s)
    audio = load_engine_clip(raw)
    raw.unlink(missing_ok=True)
    if clip.voice.child:
        # Played back CHILD_SHIFT x faster: pitch and formants rise, the slower speech returns
        # to a normal rate.
        audio = soxr.resample(audio, SAMPLE_RATE, round(SAMPLE_RATE / CHILD_SHIFT), quality="HQ")
    audio = audio * (GAIN[clip.voice.prosody] / max(float(np.abs(audio).max()), 1e-6))
    sf.write(str(out_dir / clip.audio), audio, SAMPLE_RATE, subtype="PCM_16")
    return len(audio) / SAMPLE_RATE


def row_of(clip: Clip, duration: float) -> dict:
    return {
        "audio": clip.audio,
        "text": clip.text,
        "intent": clip.topic.intent,
        "attributes": {"category": clip.category, "value": clip.value},
        "responses": responses(clip.topic, clip.category, clip.variant),
        "group": clip.group,
        "set": clip.set,
        "voice": asdict(clip.voice),
        "duration": round(duration, 3),
    }


def synth_paralinguistic_dataset(
    out_dir: Path,
    seed: int = 0,
    timeout_s: float = 20.0,
    progress: bool = True,
    topics: int | None = None,
    workers: int = 2,
) -> dict:
    """Build the paired-voice dataset in `out_dir` and return its summary.

    `topics` keeps the first topics of each set (small sets for tests). A clip whose engine
    call fails is skipped and counted, and its whole group with it: a group missing a value
    would no longer be a pair."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not on PATH: apt-get install espeak-ng")
    out_dir = Path(out_dir)
    plan = plan_clips(seed, topics=topics)
    begin_dataset(out_dir)
    for split in ("train", "eval"):
        (out_dir / "audio" / split).mkdir(parents=True, exist_ok=True)
    durations: dict[tuple[str, int], float] = {}
    failures: list[dict] = []
    with (
        tempfile.TemporaryDirectory(prefix="audiolora-para-") as tmp,
        ThreadPoolExecutor(workers) as pool,
    ):
        futures = {pool.submit(render, c, out_dir, Path(tmp), timeout_s): c for c in plan}
        for future in tqdm(futures, desc="synth paralinguistic", disable=not progress):
            clip = futures[future]
            try:
                durations[(clip.split, clip.index)] = future.result()
            except SynthesisError as e:
                failures.append({"audio": clip.audio, "group": clip.group, "error": str(e)})
    broken = {f["group"] for f in failures}
    rows: dict[str, list[dict]] = {"train": [], "eval": []}
    for clip in plan:
        if clip.group not in broken and (clip.split, clip.index) in durations:
            rows[clip.split].append(row_of(clip, durations[(clip.split, clip.index)]))
    for split, split_rows in rows.items():
        write_jsonl(out_dir / f"{split}.jsonl", split_rows)
    summary = {
        "kind": "paralinguistic",
        "seed": seed,
        "engine": "espeak-ng",
        "categories": {k: list(v) for k, v in CATEGORIES.items()},
        "clips": {split: len(r) for split, r in rows.items()},
        "sets": {
            kind: sum(r["set"] == kind for r in rows["train"] + rows["eval"])
            for kind in ("train", "held_out", "child_safety")
        },
        "skipped_groups": sorted(broken),
        "failures": failures[:20],
    }
    if not rows["train"]:
        raise RuntimeError(f"espeak-ng made no usable clip: {failures[:1]}")
    finish_dataset(out_dir, summary)
    return summary
