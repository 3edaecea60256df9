"""A speech-to-text dataset made offline with the Debian TTS engines espeak-ng and flite.

Why: fine-tuning and evaluating a recognizer needs paired audio and text, and these machines
cannot download a corpus. Two formant/diphone/unit-selection engines, many voice variants and
random pitch and rate give enough acoustic variety for a LoRA to learn something measurable.
The eval split is built to measure generalization rather than memorization: its sentences and
its voices never appear in train.

Layout written under ``out_dir``::

    audio/train/00000.wav ...   16 kHz mono 16-bit PCM
    audio/eval/00000.wav ...
    train.jsonl, eval.jsonl     {"audio": "audio/train/00000.wav", "text": ..., "duration": ...,
                                 "voice": "espeak-ng:en-us+m3", "engine": ..., "speaker": ...}
    dataset.json                the summary that ``synth_speech_dataset`` returns

Every engine call has a timeout (``flite`` is known to hang on some input); a failed call is
retried with another voice of the same split, and an utterance whose attempts all fail is
skipped and counted, so its file number is left unused.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from audiolora.atomic import atomic_write_text
from audiolora.builtin.synth.text import sample_sentences

SAMPLE_RATE = 16_000
ENGINES = ("espeak-ng", "flite")
#: Engine calls are subprocesses, which release the GIL; two threads fill two cores.
WORKERS = 2
#: Voices tried per utterance (the first plus fallbacks) before it is skipped.
MAX_ATTEMPTS = 3
#: Share of utterances given to espeak-ng when both engines exist; it has far more voices.
ESPEAK_SHARE = 0.6

#: English accents of espeak-ng; ``+variant`` changes the speaker's formants and pitch range.
#: The mbrola ``mb-*`` voices are left out: the mbrola binary is not in Debian main.
ESPEAK_BASES = (
    "en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)  # fmt: skip
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
#: ``awb_time`` is a limited-domain voice that only speaks clock times, so it is not listed.
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
#: kal16 is kal's speaker recorded at 16 kHz: one person, so they are never split apart.
SAME_SPEAKER = {"flite:kal16": "flite:kal"}

INSTALL_HINT = "install one with `apt-get install espeak-ng flite`"


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an engine and the engine's own voice name."""

    engine: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"

    @property
    def speaker(self) -> str:
        """The person behind the voice, for speaker-level splits and statistics."""
        return SAME_SPEAKER.get(self.id, self.id)


@dataclass(frozen=True)
class Attempt:
    """A voice plus the prosody drawn for it, fixed in advance so runs are reproducible."""

    voice: Voice
    pitch: int | None  # espeak-ng -p, 0..99 (50 is the voice's default); flite: None
    rate: float  # espeak-ng words per minute; for flite a duration stretch (1.0 = default)


@dataclass
class Utterance:
    split: str
    index: int
    text: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def audio(self) -> str:
        return f"audio/{self.split}/{self.index:05d}.wav"


class SynthesisError(RuntimeError):
    """One engine call failed: timed out, exited non-zero, or wrote no usable audio."""


def available_engines() -> list[str]:
    """Which supported TTS binaries are on PATH, in preference order."""
    return [engine for engine in ENGINES if shutil.which(engine)]


def run_engine(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess[bytes]:
    """Run an engine command; a hang becomes a SynthesisError instead of a stuck worker."""
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            timeout=timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise SynthesisError(f"timed out after {timeout_s:g} s: {' '.join(cmd[:3])} ...") from exc
    except OSError as exc:
        raise SynthesisError(f"could not start {cmd[0]}: {exc}") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[:200]
        raise SynthesisError(f"{cmd[0]} exited with {proc.returncode}: {err}")
    return proc


def _espeak_voices(timeout_s: float, bases: tuple[str, ...] = ESPEAK_BASES) -> list[Voice]:
    """Every installed accent x variant pair; accents are probed because packages differ."""
    try:
        listing = subprocess.run(
            ["espeak-ng", "--voices=variant"], capture_output=True, text=True,
            timeout=timeout_s, check=False,
        ).stdout  # fmt: skip
    except (subprocess.TimeoutExpired, OSError):
        listing = ""
    installed = set(re.findall(r"!v/(\S+)", listing))
    # An unknown variant is silently ignored by espeak-ng, which would mislabel the speaker.
    variants = [v for v in ESPEAK_VARIANTS if v in installed]
    found = []
    for base in bases:
        try:  # -q: synthesize without playing or writing anything; unknown voices exit 1
            run_engine(["espeak-ng", "-q", "-v", base, "a"], timeout_s)
            found.append(base)
        except SynthesisError:
            continue
    if not variants:
        return [Voice("espeak-ng", base) for base in found]
    return [Voice("espeak-ng", f"{base}+{var}") for base in found for var in variants]


def _flite_voices(timeout_s: float) -> list[Voice]:
    """Voices compiled into this flite (``flite -lv``); flite falls back silently otherwise."""
    try:
        listing = subprocess.run(
            ["flite", "-lv"], capture_output=True, text=True, timeout=timeout_s, check=False
        ).stdout
    except (subprocess.TimeoutExpired, OSError):
        return []
    names = set(listing.replace("Voices available:", "").split())
    return [Voice("flite", name) for name in FLITE_VOICES if name in names]


def _hold_out_espeak(voices: list[Voice], rng: random.Random) -> set[Voice]:
    """Eval-only espeak voices: every accent spoken by one held-out male and female variant.

    The variant sets the formants, i.e. who is speaking, so eval speakers are never heard in
    training. Accents are not held out: they differ a lot in difficulty (Whisper tiny.en reads
    en-029 far worse than en-gb-x-rp), and holding one out made eval WER swing with the seed.
    """
    parts = [v.name.partition("+") for v in voices]
    variants = sorted({var for _, _, var in parts if var})
    held_vars: set[str] = set()
    for sex in ("m", "f"):
        pool = [v for v in variants if v.startswith(sex)]
        if len(pool) > 1:
            held_vars.add(rng.choice(pool))
    held = {v for v, (_, _, var) in zip(voices, parts, strict=True) if var in held_vars}
    if not held and len(voices) > 1:  # no variants installed: hold out one accent instead
        held = {rng.choice(voices)}
    return held


def split_voices(
    engines: list[str],
    timeout_s: float,
    rng: random.Random,
    espeak_bases: tuple[str, ...] = ESPEAK_BASES,
) -> tuple[dict[str, list[Voice]], dict[str, list[Voice]]]:
    """Per-engine voice pools for train and eval, eval-only voices held out of train.

    ``espeak_bases`` are the espeak-ng languages/accents to use (English by default); one call
    with several languages holds the same variants out of all of them, so an eval speaker is
    heard in no language in training.
    """
    train: dict[str, list[Voice]] = {}
    evals: dict[str, list[Voice]] = {}
    for engine in engines:
        voices = (
            _espeak_voices(timeout_s, espeak_bases)
            if engine == "espeak-ng"
            else _flite_voices(timeout_s)
        )
        if not voices:
            continue
        if engine == "espeak-ng":
            held = _hold_out_espeak(voices, rng)
        else:
            # Hold out one whole speaker (kal goes with kal16), if another is left for train.
            speakers = sorted({v.speaker for v in voices})
            gone = rng.choice(speakers) if len(speakers) > 1 else None
            held = {v for v in voices if v.speaker == gone}
        train[engine] = [v for v in voices if v not in held]
        # With one voice nothing can be held out; eval then shares it with train.
        evals[engine] = [v for v in voices if v in held] or list(voices)
    return train, evals


def _draw_attempt(voice: Voice, rng: random.Random) -> Attempt:
    if voice.engine == "espeak-ng":
        return Attempt(voice, pitch=rng.randint(30, 70), rate=float(rng.randint(135, 190)))
    return Attempt(voice, pitch=None, rate=round(rng.uniform(0.85, 1.2), 2))


def plan_attempts(
    pools: dict[str, list[Voice]], rng: random.Random, avoid: frozenset[Voice] = frozenset()
) -> list[Attempt]:
    """A first voice (not one in ``avoid``, while others are left) and fallbacks, with prosody.

    Drawn before any work runs, so a dataset depends on its seed, not on thread timing.
    """
    engines = [e for e in pools if pools[e]]
    weights = [ESPEAK_SHARE if e == "espeak-ng" else 1 - ESPEAK_SHARE for e in engines]
    everyone = [v for e in engines for v in pools[e]]
    engine = rng.choices(engines, weights)[0]
    first = rng.choice(
        [v for v in pools[engine] if v not in avoid]
        or [v for v in everyone if v not in avoid]
        or pools[engine]
    )
    others = [v for v in everyone if v != first]
    fallbacks = rng.sample(others, min(MAX_ATTEMPTS - 1, len(others)))
    return [_draw_attempt(v, rng) for v in [first, *fallbacks]]


def _plan_split(
    split: str, texts: list[str], pools: dict[str, list[Voice]], rng: random.Random
) -> list[Utterance]:
    """Give every sentence a first voice and fallbacks, all drawn here, before any work runs."""
    return [
        Utterance(split, index, text, plan_attempts(pools, rng)) for index, text in enumerate(texts)
    ]


def engine_command(attempt: Attempt, text: str, wav_path: Path) -> list[str]:
    """The command line that makes one WAV."""
    voice = attempt.voice
    if voice.engine == "espeak-ng":
        return [
            "espeak-ng", "-v", voice.name, "-p", str(attempt.pitch), "-s", str(int(attempt.rate)),
            "-w", str(wav_path), text,
        ]  # fmt: skip
    return [
        "flite", "-voice", voice.name, "--setf", f"duration_stretch={attempt.rate:.2f}",
        "-t", text, "-o", str(wav_path),
    ]  # fmt: skip


#: The name speech's own synthesis calls, so tests can swap in a hanging command here alone.
_engine_command = engine_command


def trim_silence(audio: np.ndarray, sr: int, pad_s: float = 0.08) -> np.ndarray:
    """Cut leading/trailing near-silence (40 dB under the peak), keeping a short margin."""
    frame = int(sr * 0.01)
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > 0.01 * float(np.abs(audio).max()))
    if loud.size == 0:
        return audio
    pad = int(sr * pad_s)
    start = max(0, loud[0] * frame - pad)
    end = min(len(audio), (loud[-1] + 1) * frame + pad)
    return audio[start:end]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, UTF-8 kept readable (German umlauts stay letters); written
    to a temporary name and renamed, so an interrupted write leaves no half manifest."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


SUMMARY = "dataset.json"
"""A synthesized dataset's summary, written last: a folder without it is not a dataset (an
interrupted or failed build), and the builtin data sources build it again."""


def begin_dataset(out_dir: Path) -> None:
    """Mark `out_dir` incomplete before (re)building into it: Ctrl-C half-way through must not
    leave an older summary vouching for manifests that no longer match the clips."""
    (Path(out_dir) / SUMMARY).unlink(missing_ok=True)


def finish_dataset(out_dir: Path, summary: dict) -> None:
    atomic_write_text(Path(out_dir) / SUMMARY, json.dumps(summary, indent=2) + "\n")


def record_failure(out_dir: Path, summary: dict) -> Path:
    """A build that made nothing: its summary goes to `failed.json`, never to the marker."""
    path = Path(out_dir) / "failed.json"
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return path


def write_manifests(out_dir: Path, rows: dict[str, list[dict]]) -> None:
    """One JSONL manifest per split (`train.jsonl`, `eval.jsonl`), rows in file order."""
    for split, split_rows in rows.items():
        split_rows.sort(key=lambda r: r["audio"])
        write_jsonl(out_dir / f"{split}.jsonl", split_rows)


def load_engine_clip(raw: Path) -> np.ndarray:
    """Engine output as 16 kHz mono float32, trimmed and peak-normalized to 0.9."""
    try:
        audio, sr = sf.read(str(raw), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise SynthesisError(f"unreadable engine output: {exc}") from exc
    audio = audio.mean(axis=1)
    if not audio.size or float(np.abs(audio).max()) < 1e-4:
        raise SynthesisError("engine wrote silent or empty audio")
    if sr != SAMPLE_RATE:
        audio = soxr.resample(audio, sr, SAMPLE_RATE, quality="HQ")
    audio = trim_silence(audio, SAMPLE_RATE)
    return audio * (0.9 / float(np.abs(audio).max()))


def _to_16k_wav(src: Path, dst: Path) -> float:
    """Write the engine's clip as 16-bit PCM at 16 kHz; returns the duration in seconds."""
    audio = load_engine_clip(src)
    sf.write(str(dst), audio, SAMPLE_RATE, subtype="PCM_16")
    return len(audio) / SAMPLE_RATE


def speak_with_fallbacks(
    attempts: list[Attempt], text: str, dst: Path, tmp_dir: Path, timeout_s: float
) -> tuple[Attempt | None, float, list[tuple[Attempt, str]]]:
    """Try the planned voices in order until one writes a usable 16 kHz clip to ``dst``.

    Returns the attempt that worked (None if all failed), the clip's seconds, and each failed
    attempt with its error. Engine output goes to ``tmp_dir`` under a name unique to ``dst``.
    """
    failed: list[tuple[Attempt, str]] = []
    for k, attempt in enumerate(attempts):
        raw = tmp_dir / f"{dst.parent.name}-{dst.stem}-{k}.wav"
        try:
            run_engine(_engine_command(attempt, text, raw), timeout_s)
            return attempt, _to_16k_wav(raw, dst), failed
        except SynthesisError as exc:
            failed.append((attempt, str(exc)))
        finally:
            raw.unlink(missing_ok=True)
    return None, 0.0, failed


def _synthesize(
    utt: Utterance, out_dir: Path, tmp_dir: Path, timeout_s: float
) -> tuple[dict | None, list[dict]]:
    """Try the planned voices in order; return the manifest row (or None) and the failures."""
    attempt, duration, failed = speak_with_fallbacks(
        utt.attempts, utt.text, out_dir / utt.audio, tmp_dir, timeout_s
    )
    failures = [
        {"split": utt.split, "index": utt.index, "voice": a.voice.id, "error": error}
        for a, error in failed
    ]
    if attempt is None:
        return None, failures
    voice = attempt.voice
    row = {
        "audio": utt.audio, "text": utt.text, "duration": round(duration, 3),
        "voice": voice.id, "engine": voice.engine, "speaker": voice.speaker,
        "pitch": attempt.pitch, "rate": attempt.rate,
    }  # fmt: skip
    return row, failures


def _split_summary(rows: list[dict], requested: int) -> dict:
    durations = [r["duration"] for r in rows]
    engines: dict[str, int] = {}
    for r in rows:
        engines[r["engine"]] = engines.get(r["engine"], 0) + 1
    return {
        "requested": requested,
        "clips": len(rows),
        "skipped": requested - len(rows),
        "seconds": round(sum(durations), 2),
        "mean_duration": round(sum(durations) / len(durations), 3) if durations else 0.0,
        "voices": sorted({r["voice"] for r in rows}),
        "clips_per_engine": engines,
    }


def _held_out_split(folder: Path | None) -> tuple[set[str], set[str]]:
    """Eval sentences and held-out voice ids of the dataset in ``folder`` (empty without one)."""
    if folder is None:
        return set(), set()
    folder = Path(folder)
    try:
        summary = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
        lines = (folder / "eval.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as e:
        raise ValueError(f"held_out_from={folder}: not a synthesized speech dataset ({e})") from e
    texts = {json.loads(line)["text"] for line in lines if line.strip()}
    return texts, set(summary.get("held_out_voices", []))


def _reserve_voices(
    train: dict[str, list[Voice]], evals: dict[str, list[Voice]], reserved: set[str]
) -> tuple[dict[str, list[Voice]], dict[str, list[Voice]]]:
    """Pools in which exactly the ``reserved`` voices are held out of train."""
    everyone = {e: sorted({*train[e], *evals.get(e, [])}, key=lambda v: v.id) for e in train}
    new_train = {e: [v for v in vs if v.id not in reserved] for e, vs in everyone.items()}
    new_eval = {
        e: [v for v in vs if v.id in reserved] or new_train[e] for e, vs in everyone.items()
    }
    return {e: vs for e, vs in new_train.items() if vs}, new_eval


def _clear_old_clips(split_dir: Path) -> None:
    """Remove numbered WAVs of an earlier run so a smaller rerun leaves no orphans."""
    for old in split_dir.glob("[0-9][0-9][0-9][0-9][0-9].wav"):
        old.unlink()


def synth_speech_dataset(
    out_dir: Path,
    n_train: int = 240,
    n_eval: int = 48,
    seed: int = 0,
    engines: tuple[str, ...] = ENGINES,
    timeout_s: float = 20.0,
    progress: bool = True,
    held_out_from: Path | None = None,
) -> dict:
    """Synthesize a train/eval speech-to-text dataset into ``out_dir`` and return its summary.

    Eval sentences and eval voices are held out of train (one flite speaker, and one male and
    one female espeak-ng variant in every accent, when the engines have that many). The same
    ``seed`` gives the same texts, voices and prosody. ``held_out_from`` is another dataset of
    this kind (a folder) whose held-out split must stay unheard: its eval sentences are used
    nowhere here and its held-out voices only in this eval split, so a model trained on this
    train split can be scored on both eval splits (the alignment data is built this way next to
    ``builtin:speech``). Raises RuntimeError when no engine is installed or when not a single
    clip could be made.
    """
    if n_train < 0 or n_eval < 0:
        raise ValueError(f"n_train and n_eval must be >= 0, got {n_train} and {n_eval}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ValueError(f"unknown TTS engine(s) {unknown}; choose from {list(ENGINES)}")
    usable = [e for e in engines if e in available_engines()]
    if not usable:
        raise RuntimeError(f"none of the TTS engines {list(engines)} is on PATH; {INSTALL_HINT}")

    started = time.monotonic()
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    # Distinct sentences, eval first: no eval text can then appear in train. Train repeats
    # its own sentences only if asked for more than the templates can make (tens of thousands).
    # Drawn before the voices, so the texts do not depend on which voices are installed.
    avoid_texts, avoid_voices = _held_out_split(held_out_from)
    texts = sample_sentences(n_train + n_eval + len(avoid_texts), rng)
    texts = [t for t in texts if t not in avoid_texts]
    eval_texts, train_distinct = texts[:n_eval], texts[n_eval:]
    if n_train and not train_distinct:
        raise ValueError(f"n_eval={n_eval} uses up every sentence the templates can make")
    train_texts = [train_distinct[i % len(train_distinct)] for i in range(n_train)]

    train_pools, eval_pools = split_voices(usable, timeout_s, rng)
    if avoid_voices:
        train_pools, eval_pools = _reserve_voices(train_pools, eval_pools, avoid_voices)
    if not train_pools:
        raise RuntimeError(f"{usable} found but they list no English voice; {INSTALL_HINT}")

    plan = _plan_split("train", train_texts, train_pools, rng) + _plan_split(
        "eval", eval_texts, eval_pools, rng
    )
    begin_dataset(out_dir)
    for split in ("train", "eval"):
        (out_dir / "audio" / split).mkdir(parents=True, exist_ok=True)
        _clear_old_clips(out_dir / "audio" / split)

    rows: dict[str, list[dict]] = {"train": [], "eval": []}
    failures: list[dict] = []
    with (
        tempfile.TemporaryDirectory(prefix="audiolora-tts-") as tmp,
        ThreadPoolExecutor(max_workers=WORKERS) as pool,
        tqdm(total=len(plan), desc="synth speech", unit="clip", disable=not progress) as bar,
    ):
        futures = {pool.submit(_synthesize, u, out_dir, Path(tmp), timeout_s): u for u in plan}
        for future in as_completed(futures):
            row, failed = future.result()
            failures.extend(failed)
            if row is not None:
                rows[futures[future].split].append(row)
            bar.update(1)

    write_manifests(out_dir, rows)
    failures.sort(key=lambda f: (f["split"], f["index"]))
    train_voices = {v.id for vs in train_pools.values() for v in vs}
    summary = {
        "kind": "speech",
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "engines": list(train_pools),
        "out_dir": str(out_dir),
        "manifests": {"train": "train.jsonl", "eval": "eval.jsonl"},
        "splits": {
            "train": _split_summary(rows["train"], n_train),
            "eval": _split_summary(rows["eval"], n_eval),
        },
        "held_out_voices": sorted({v.id for vs in eval_pools.values() for v in vs} - train_voices),
        "failed_attempts": len(failures),
        "failures": failures[:20],
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    if n_train + n_eval > 0 and not rows["train"] and not rows["eval"]:
        first = failures[0]["error"] if failures else "no attempt was made"
        raise RuntimeError(
            f"no clip could be synthesized ({len(failures)} failed attempts; first: {first}); "
            f"see {record_failure(out_dir, summary)}"
        )
    finish_dataset(out_dir, summary)
    return summary
