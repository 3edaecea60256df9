"""An out-of-domain speech set for retention checks (`builtin:speech-retention`).

Why: the builtin speech set is espeak-ng and flite reading short everyday templates (weather,
directions, appointments). An adapter trained on it can learn those voices and that phrasing
and lose accuracy on anything else. This set differs in both: Festival voices (an engine the
training data never uses: `ked`, a diphone voice, and `slt` in its HTS build) reading longer
descriptive prose that no template produces. Scored with `data.retention`, it shows what an
adaptation cost outside its domain.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tqdm import tqdm

from audiolora.builtin.synth.speech import (
    INSTALL_HINT,
    SynthesisError,
    _to_16k_wav,
    begin_dataset,
    finish_dataset,
    run_engine,
    write_jsonl,
)

FESTIVAL_VOICES = ("ked_diphone", "cmu_us_slt_arctic_hts")
"""Festival voices (Debian: festvox-kdlpc16k, festvox-us-slt-hts)."""
FESTIVAL_HINT = "apt-get install festival festvox-kdlpc16k festvox-us-slt-hts"
STRETCHES = (0.9, 1.0, 1.15)
"""Speaking-rate variety: Festival's duration stretch per clip."""

# Descriptive prose, written for this set: longer sentences and a vocabulary the everyday
# templates never use. Numbers are words, no symbols, one spelling per word.
SENTENCES = (
    "The old lighthouse has guided ships along this rocky coast for more than a century.",
    "Deep in the forest, a narrow path winds between tall pines and moss covered stones.",
    "Bees carry pollen from flower to flower, and many crops depend on their quiet work.",
    "The river slowly carved a wide valley through the soft rock over thousands of years.",
    "Early sailors found their way across the ocean by watching the stars at night.",
    "A thick layer of ice covers the lake every winter, and the fish rest beneath it.",
    "The ancient city was built on a hill so that its people could see enemies approach.",
    "Volcanic soil is very rich, which is why farmers return to the slopes after eruptions.",
    "The painter mixed her colors carefully before she touched the canvas with her brush.",
    "Owls hunt at night, and their soft feathers let them fly almost without a sound.",
    "The library kept thousands of handwritten books that monks had copied by candlelight.",
    "Wind turbines turn the movement of air into electricity for the nearby villages.",
    "When the tide goes out, small crabs hide under rocks until the water comes back.",
    "The museum displays tools that farmers used long before engines reached the fields.",
    "Our galaxy contains billions of stars, and many of them have planets of their own.",
    "The bridge was designed to sway gently, so strong winds would not break it apart.",
    "Desert plants store water in their thick leaves to survive the long dry season.",
    "The orchestra tuned their instruments while the audience slowly found their seats.",
    "Whales sing long and complex songs that can travel great distances under water.",
    "The explorers crossed the frozen plain with dogs pulling their heavy wooden sleds.",
    "Mountain villages often grow their own grain on narrow terraces cut into the slopes.",
    "The clockmaker repaired the tiny gears with steady hands and a magnifying glass.",
    "Salt was once so valuable that soldiers were sometimes paid with it instead of money.",
    "Migrating geese fly in a long arrow shape, taking turns at the front of the line.",
    "The castle walls were thick enough to protect the town through a winter siege.",
    "Coral reefs shelter a quarter of all sea life, although they cover very little ocean.",
    "The inventor filled his notebooks with drawings of machines that were never built.",
    "Fog rolled in from the harbor and hid the tops of the buildings by early evening.",
    "A healthy forest recovers after a small fire, because new seeds sprout in the ashes.",
    "The merchants traded silk and spices along roads that crossed deserts and mountains.",
    "Frogs breathe partly through their skin, so they need to stay close to clean water.",
    "The astronomer pointed her telescope at the moon and sketched its craters by hand.",
    "Glaciers move so slowly that a lifetime is too short to notice their journey.",
    "The baker rises before dawn so that fresh bread is ready when the shop opens.",
    "Thunderstorms form when warm moist air rises quickly into the cold upper sky.",
    "The little train climbed the mountain in sharp turns, pulled by a patient engine.",
    "Some seeds can wait for decades in dry ground until enough rain finally falls.",
    "The fishermen mended their nets on the beach while the gulls circled overhead.",
    "Paper was first made from the bark of trees, old cloth and plant fibers.",
    "The quiet garden behind the school became a place where students liked to read.",
)


def _command(voice: str, stretch: float, text_file: Path, wav: Path) -> list[str]:
    setup = f"(voice_{voice}) (Parameter.set 'Duration_Stretch {stretch})"
    return ["text2wave", "-eval", setup, "-o", str(wav), str(text_file)]


def synth_retention_dataset(
    out_dir: Path, timeout_s: float = 30.0, progress: bool = True, limit: int | None = None
) -> dict:
    """Every sentence of `SENTENCES` (the first `limit`) read by one Festival voice
    (alternating, rate varied): `retention.jsonl` + 16 kHz WAVs + `dataset.json` in `out_dir`.
    A failed clip is retried with the other voice; a sentence both voices fail on is skipped
    and counted."""
    if shutil.which("text2wave") is None:
        raise RuntimeError(f"Festival's text2wave is not on PATH: {FESTIVAL_HINT}")
    out_dir = Path(out_dir)
    begin_dataset(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="audiolora-festival-") as tmp:
        for i, text in enumerate(
            tqdm(SENTENCES[:limit], desc="synth retention", disable=not progress)
        ):
            text_file = Path(tmp) / "text.txt"
            text_file.write_text(text + "\n", encoding="utf-8")
            voices = [FESTIVAL_VOICES[i % 2], FESTIVAL_VOICES[(i + 1) % 2]]
            stretch = STRETCHES[i % len(STRETCHES)]
            for voice in voices:
                raw = Path(tmp) / "raw.wav"
                try:
                    run_engine(_command(voice, stretch, text_file, raw), timeout_s)
                    audio = f"audio/{i:05d}.wav"
                    duration = _to_16k_wav(raw, out_dir / audio)
                except SynthesisError as e:
                    failures.append({"index": i, "voice": voice, "error": str(e)})
                    continue
                rows.append({
                    "audio": audio, "text": text, "duration": round(duration, 3),
                    "voice": f"festival:{voice}", "engine": "festival", "rate": stretch,
                })  # fmt: skip
                break
    if not rows:
        raise RuntimeError(f"Festival made no clip ({failures[:1]}); {INSTALL_HINT}")
    write_jsonl(out_dir / "retention.jsonl", rows)
    summary = {
        "kind": "speech-retention",
        "engine": "festival",
        "voices": list(FESTIVAL_VOICES),
        "clips": len(rows),
        "failed_attempts": len(failures),
        "failures": failures[:20],
    }
    finish_dataset(out_dir, summary)
    return summary
