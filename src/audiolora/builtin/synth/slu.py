"""A SLURP-style spoken-language-understanding dataset, spoken offline by espeak-ng and flite.

Why: studying how an audio-language model learns SLU from little speech (text-only training,
text + some speech, curriculum, cross-lingual transfer) needs the same labelled utterances as
text rows and as speech, and held-out utterances spoken by held-out voices. ``slu_text`` writes
the utterances; this module speaks them with the voices of ``speech`` and writes the manifests.

Layout written under ``out_dir`` (paths in rows are relative to it)::

    train_text.jsonl    every training utterance as text: {"id": "en-0001", "text", "language",
                        "scenario", "action", "entities": [{"type", "value"}, ...]}
    train_speech.jsonl  the same utterances spoken, each by ``voices_per_utterance`` voices:
                        {"id": "en-0001-v1", "audio": "audio/train/en-0001-v1.wav", ...labels,
                        "speaker", "voice", "duration"}
    eval.jsonl          held-out utterances (phrasings, and some entity values, that training
                        never shows), one held-out voice each: {"id": "en-eval-0001-v1", ...}
    eval_text.jsonl     the same eval utterances as text rows
    audio/train, audio/eval   16 kHz mono 16-bit PCM
    summary.json        what ``synth_slu_dataset`` returns: counts per split, language,
                        scenario, intent, entity type and voice

All languages share the files; every row names its language. A clip whose voices all fail is
skipped and counted: its utterance keeps its text row in ``train_text.jsonl`` (text is the
plentiful resource), while ``eval_text.jsonl`` lists exactly the utterances of ``eval.jsonl``,
so text and speech are scored on the same items. The dataset is built in a folder beside
``out_dir`` and renamed into place at the end, so an interrupted run leaves the previous
dataset whole, and a rerun replaces it without orphan clips.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from audiolora.atomic import fresh_work_dir, replace_dir
from audiolora.builtin.synth.slu_text import (
    LANGUAGES,
    SluUtterance,
    entity_types,
    intents,
    sample_utterances,
    scenarios,
)
from audiolora.builtin.synth.speech import (
    ESPEAK_BASES,
    INSTALL_HINT,
    SAMPLE_RATE,
    WORKERS,
    Attempt,
    Voice,
    available_engines,
    plan_attempts,
    speak_with_fallbacks,
    split_voices,
    write_jsonl,
)

#: espeak-ng voices (accents) per language; flite speaks English only.
ESPEAK_BASES_BY_LANGUAGE: dict[str, tuple[str, ...]] = {"en": ESPEAK_BASES, "de": ("de",)}
ENGINES_BY_LANGUAGE: dict[str, tuple[str, ...]] = {
    "en": ("espeak-ng", "flite"),
    "de": ("espeak-ng",),
}
MANIFESTS = {
    "train_text": "train_text.jsonl",
    "train_speech": "train_speech.jsonl",
    "eval": "eval.jsonl",
    "eval_text": "eval_text.jsonl",
}
SUMMARY = "summary.json"


@dataclass(frozen=True)
class _Clip:
    """One utterance spoken by one voice, with its fallbacks, planned before any work runs."""

    split: str
    id: str
    utterance_id: str
    utterance: SluUtterance
    attempts: tuple[Attempt, ...]

    @property
    def audio(self) -> str:
        return f"audio/{self.split}/{self.id}.wav"


def _speaks(voice: Voice, language: str) -> bool:
    if voice.engine == "flite":
        return language == "en"
    return voice.name.partition("+")[0] in ESPEAK_BASES_BY_LANGUAGE[language]


def _speaking(pools: dict[str, list[Voice]], language: str) -> dict[str, list[Voice]]:
    """The engines' voices that speak ``language``; engines left with none are dropped."""
    return {e: kept for e, vs in pools.items() if (kept := [v for v in vs if _speaks(v, language)])}


def _language_pools(
    languages: tuple[str, ...], engines: list[str], timeout_s: float, rng: random.Random
) -> tuple[dict[str, dict[str, list[Voice]]], dict[str, dict[str, list[Voice]]]]:
    """Train and eval voice pools per language and engine.

    One ``split_voices`` call over all languages holds the same espeak-ng variants (formant
    sets: who is speaking) out of every language, so no eval speaker is heard in training.
    """
    bases = tuple(b for lang in languages for b in ESPEAK_BASES_BY_LANGUAGE[lang])
    wanted = [e for e in engines if any(e in ENGINES_BY_LANGUAGE[lang] for lang in languages)]
    train, evals = split_voices(wanted, timeout_s, rng, espeak_bases=bases)
    train_by: dict[str, dict[str, list[Voice]]] = {}
    eval_by: dict[str, dict[str, list[Voice]]] = {}
    for lang in languages:
        train_by[lang], eval_by[lang] = _speaking(train, lang), _speaking(evals, lang)
        if not train_by[lang]:
            raise RuntimeError(
                f"no installed voice speaks {lang!r} (espeak-ng voices tried: "
                f"{', '.join(ESPEAK_BASES_BY_LANGUAGE[lang])}); {INSTALL_HINT}"
            )
        # Without variants nothing of this language may be held out; eval then shares voices.
        eval_by[lang] = eval_by[lang] or train_by[lang]
    return train_by, eval_by


def _voice_ids(pools: dict[str, dict[str, list[Voice]]]) -> set[str]:
    return {v.id for by_engine in pools.values() for vs in by_engine.values() for v in vs}


def _shares(total: int, languages: tuple[str, ...]) -> dict[str, int]:
    """``total`` shared evenly among the languages, the first ones taking the remainder."""
    base, extra = divmod(total, len(languages))
    return {lang: base + (k < extra) for k, lang in enumerate(languages)}


def _plan_clips(
    split: str,
    utterances: list[tuple[str, SluUtterance]],
    pools: dict[str, dict[str, list[Voice]]],
    voices: int,
    rng: random.Random,
) -> list[_Clip]:
    """Each utterance spoken by ``voices`` different voices (while its language has enough)."""
    clips = []
    for utt_id, utt in utterances:
        used: set[Voice] = set()
        for k in range(1, voices + 1):
            attempts = plan_attempts(pools[utt.language], rng, avoid=frozenset(used))
            used.add(attempts[0].voice)
            clips.append(_Clip(split, f"{utt_id}-v{k}", utt_id, utt, tuple(attempts)))
    return clips


def _speak_clip(
    clip: _Clip, work_dir: Path, tmp_dir: Path, timeout_s: float
) -> tuple[dict | None, list[dict]]:
    """The clip's manifest row (None if every voice failed) and its failed attempts."""
    attempt, seconds, failed = speak_with_fallbacks(
        list(clip.attempts), clip.utterance.text, work_dir / clip.audio, tmp_dir, timeout_s
    )
    failures = [{"id": clip.id, "voice": a.voice.id, "error": err} for a, err in failed]
    if attempt is None:
        return None, failures
    row = {
        "id": clip.id,
        "audio": clip.audio,
        **clip.utterance.labels(),
        "speaker": attempt.voice.speaker,
        "voice": attempt.voice.id,
        "duration": round(seconds, 3),
    }
    return row, failures


def _counts(rows: list[dict]) -> dict:
    """How often each language, scenario, intent, entity type (and voice) occurs."""

    def tally(values: list[str]) -> dict[str, int]:
        return dict(sorted(Counter(values).items()))

    counts = {
        "languages": tally([r["language"] for r in rows]),
        "scenarios": tally([r["scenario"] for r in rows]),
        "intents": tally([f"{r['scenario']}_{r['action']}" for r in rows]),
        "entity_types": tally([e["type"] for r in rows for e in r["entities"]]),
    }
    if rows and "voice" in rows[0]:
        counts["voices"] = tally([r["voice"] for r in rows])
    return counts


def _split_figures(rows: list[dict], planned: int) -> dict:
    figures = {"rows": len(rows), "planned": planned, "skipped": planned - len(rows)}
    if rows and "duration" in rows[0]:
        figures["seconds"] = round(sum(r["duration"] for r in rows), 2)
    return figures


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a folder that holds something other than an earlier SLU dataset."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a folder; choose another OUT")
    if not any(out_dir.iterdir()):
        return
    try:
        kind = json.loads((out_dir / SUMMARY).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    if kind != "slu":
        raise ValueError(
            f"{out_dir} is not empty and holds no SLU dataset ({SUMMARY} of kind 'slu'); "
            "a build replaces OUT entirely, so choose a new or empty folder"
        )


def synth_slu_dataset(
    out_dir: Path,
    *,
    train_utterances: int = 240,
    eval_utterances: int = 60,
    voices_per_utterance: int = 1,
    languages: tuple[str, ...] = ("en",),
    seed: int = 0,
    timeout_s: float = 20.0,
    progress: bool = True,
) -> dict:
    """Build the SLU dataset described in this module's docstring and return its summary.

    Utterance counts are totals, shared evenly among ``languages``. Train utterances are each
    spoken by ``voices_per_utterance`` train voices (distinct while the language has enough);
    eval utterances by one held-out voice each. The same ``seed`` gives the same texts, voices
    and prosody, and a language's texts do not depend on which other languages are built.
    Raises ValueError for bad arguments or an ``out_dir`` holding something else, and
    RuntimeError when the engines are missing or not a single clip could be made.
    """
    languages = tuple(languages)
    if not languages or len(set(languages)) != len(languages):
        raise ValueError(f"languages must be distinct and at least one, got {list(languages)}")
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown:
        raise ValueError(f"no SLU templates for {unknown}; choose from {list(LANGUAGES)}")
    if train_utterances < 0 or eval_utterances < 0:
        raise ValueError(
            f"train_utterances and eval_utterances must be >= 0, got {train_utterances} and "
            f"{eval_utterances}"
        )
    if voices_per_utterance < 1:
        raise ValueError(f"voices_per_utterance must be >= 1, got {voices_per_utterance}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    usable = available_engines()
    if not usable:
        raise RuntimeError(f"no TTS engine (espeak-ng, flite) is on PATH; {INSTALL_HINT}")

    started = time.monotonic()
    # Texts first, from one generator per language, so they depend on neither the voices
    # installed nor the other languages. Eval first: train then avoids every eval text.
    train_utts: list[tuple[str, SluUtterance]] = []
    eval_utts: list[tuple[str, SluUtterance]] = []
    train_n, eval_n = _shares(train_utterances, languages), _shares(eval_utterances, languages)
    for lang in languages:
        text_rng = random.Random(f"slu-text-{seed}-{lang}")
        held = sample_utterances(eval_n[lang], lang, "eval", text_rng)
        train = sample_utterances(
            train_n[lang], lang, "train", text_rng, exclude={u.text for u in held}
        )
        eval_utts += [(f"{lang}-eval-{i:04d}", u) for i, u in enumerate(held, 1)]
        train_utts += [(f"{lang}-{i:04d}", u) for i, u in enumerate(train, 1)]

    voice_rng = random.Random(f"slu-voices-{seed}")
    train_pools, eval_pools = _language_pools(languages, usable, timeout_s, voice_rng)
    clips = _plan_clips("train", train_utts, train_pools, voices_per_utterance, voice_rng)
    clips += _plan_clips("eval", eval_utts, eval_pools, 1, voice_rng)
    order = {clip.id: k for k, clip in enumerate(clips)}
    utterance_of = {clip.id: clip.utterance_id for clip in clips}

    # Resolved: the build folder goes beside OUT even when OUT is given as '.'.
    work_dir = fresh_work_dir(out_dir.resolve())
    try:
        rows, failures = _speak_all(clips, work_dir, timeout_s, progress)
        rows["train_speech"].sort(key=lambda r: order[r["id"]])
        rows["eval"].sort(key=lambda r: order[r["id"]])
        if clips and not rows["train_speech"] and not rows["eval"]:
            first = failures[0]["error"] if failures else "no attempt was made"
            raise RuntimeError(
                f"no clip could be synthesized ({len(failures)} failed attempts; first: {first})"
            )
        spoken_eval = {utterance_of[r["id"]] for r in rows["eval"]}
        rows["train_text"] = [{"id": i, **u.labels()} for i, u in train_utts]
        rows["eval_text"] = [{"id": i, **u.labels()} for i, u in eval_utts if i in spoken_eval]
        for name, file in MANIFESTS.items():
            write_jsonl(work_dir / file, rows[name])
        train_voices, eval_voices = _voice_ids(train_pools), _voice_ids(eval_pools)
        train_values = {(e["type"], e["value"]) for r in rows["train_text"] for e in r["entities"]}
        eval_values = {(e["type"], e["value"]) for r in rows["eval_text"] for e in r["entities"]}
        planned = {
            "train_text": len(train_utts),
            "train_speech": sum(c.split == "train" for c in clips),
            "eval": sum(c.split == "eval" for c in clips),
            "eval_text": len(eval_utts),
        }
        summary = {
            "kind": "slu",
            "seed": seed,
            "sample_rate": SAMPLE_RATE,
            "languages": list(languages),
            "voices_per_utterance": voices_per_utterance,
            "out_dir": str(out_dir),
            "manifests": MANIFESTS,
            "grammar": {
                lang: {
                    "scenarios": len(scenarios(lang)),
                    "intents": len(intents(lang)),
                    "entity_types": len(entity_types(lang)),
                }
                for lang in languages
            },
            "splits": {name: _split_figures(rows[name], planned[name]) for name in MANIFESTS},
            "voices": {
                "train": len(train_voices),
                "eval": len(eval_voices),
                "held_out": sorted(eval_voices - train_voices),
            },
            "eval_entity_values_unseen_in_train": len(eval_values - train_values),
            "failed_attempts": len(failures),
            "failures": failures[:20],
            "counts": {name: _counts(rows[name]) for name in MANIFESTS},
            "elapsed_s": round(time.monotonic() - started, 1),
        }
        (work_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        replace_dir(work_dir, out_dir.resolve())
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    return summary


def _speak_all(
    clips: list[_Clip], work_dir: Path, timeout_s: float, progress: bool
) -> tuple[dict[str, list[dict]], list[dict]]:
    """Synthesize every clip on ``WORKERS`` threads; rows per speech manifest, and failures."""
    for split in ("train", "eval"):
        (work_dir / "audio" / split).mkdir(parents=True)
    rows: dict[str, list[dict]] = {"train_speech": [], "eval": []}
    failures: list[dict] = []
    with (
        tempfile.TemporaryDirectory(prefix="audiolora-slu-") as tmp,
        ThreadPoolExecutor(max_workers=WORKERS) as pool,
        tqdm(total=len(clips), desc="synth slu", unit="clip", disable=not progress) as bar,
    ):
        futures = {
            pool.submit(_speak_clip, clip, work_dir, Path(tmp), timeout_s): clip for clip in clips
        }
        try:
            for future in as_completed(futures):
                row, failed = future.result()
                failures.extend(failed)
                if row is not None:
                    split = futures[future].split
                    rows["train_speech" if split == "train" else "eval"].append(row)
                bar.update(1)
        except BaseException:
            # Ctrl-C or a bug: drop the queued clips instead of waiting for all of them.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    failures.sort(key=lambda f: f["id"])
    return rows, failures
