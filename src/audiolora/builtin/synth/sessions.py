"""Synthetic multi-phase therapy sessions with exact phase boundaries, made offline.

Why: localizing the phases of a Prolonged Exposure session (P1 orientation, P2 imaginal
exposure, P3 processing) needs long recordings with known boundaries, and real sessions are
private and cannot be downloaded here. Two TTS voices (a clinician and a client) act a script
from ``session_text``: an orientation dialogue, a long first-person present-tense narrative by
the client spoken slower, lower and with fewer pauses, and a reflective dialogue. Each sentence
is synthesized on its own, so every utterance's place in the session is exact to the sample.

Layout written under ``out_dir``::

    audio/train/session_000.wav ...       16 kHz mono 16-bit PCM, several minutes each
    transcripts/train/session_000.json    [{"word", "start", "end", "speaker", "phase"}, ...]
    train.jsonl, eval.jsonl               {"audio", "duration", "boundaries": {"P1_start", ...,
                                           "P3_end"}, "transcript", "speakers", "scenario"}
    dataset.json                          the summary that ``synth_sessions_dataset`` returns

A session opens with small talk (greeting, a glass of water) before P1 and ends with
scheduling and goodbyes after P3; those words carry the phase `lead_in` / `wrap_up` and belong
to no phase, so P1_start and P3_end are boundaries to find, not the recording's edges.
Phase spans run from the first to the last sample of the phase's utterances (each keeps a
short, quiet margin of 80 ms). Word times inside an utterance are approximations: the voiced
part of the utterance is shared among its words in proportion to their letters, because
neither engine reports word timings on its command line.

Every engine call has a timeout. A failed sentence is retried once with the same voice; if it
fails again the session is rebuilt with another pair of voices, and skipped and counted if that
fails too, so its file number is left unused.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from audiolora.builtin.synth.session_text import SessionScript
from audiolora.builtin.synth.speech import (
    ESPEAK_SHARE,
    INSTALL_HINT,
    SAMPLE_RATE,
    WORKERS,
    Attempt,
    SynthesisError,
    Voice,
    available_engines,
    begin_dataset,
    engine_command,
    finish_dataset,
    load_engine_clip,
    record_failure,
    run_engine,
    split_voices,
    write_manifests,
)

PHASES = ("P1", "P2", "P3")
OUTSIDE = ("lead_in", "wrap_up")
"""Word phases of the small talk before P1 and after P3, which belong to no phase."""
PHASE_NAMES = {"P1": "orientation", "P2": "imaginal exposure", "P3": "processing"}
#: Silences in seconds, drawn uniformly. The narrative flows with short gaps between sentences;
#: dialogue turns and phase changes get longer ones, as in a real session.
TURN_PAUSE_S = (0.3, 1.5)
PHASE_PAUSE_S = (1.0, 3.0)
SENTENCE_GAP_S = (0.15, 0.45)
NARRATIVE_GAP_S = (0.05, 0.25)
EDGE_SILENCE_S = (0.3, 1.5)
#: RMS of a faint noise floor over the whole session, so pauses are not digital zeros.
NOISE_RMS = (0.0005, 0.002)
#: Shares of the target length for P1 and P2; P3 takes the rest.
P1_SHARE = (0.15, 0.30)
P2_SHARE = (0.40, 0.55)
#: Sentences a narrative has at least, however short the target.
MIN_NARRATIVE_SENTENCES = 3
#: Engine calls per sentence: the planned voice, then the same voice once more.
CALLS_PER_SENTENCE = 2
#: Casts per session: the planned voice pair, then one other pair before the session is skipped.
CASTS_PER_SESSION = 2
#: flite's own mean pitch per voice (Hz), measured; the narrative asks for 10-18 % below it.
#: ``rms`` ignores the setting, so its narrative is only slower.
FLITE_F0_HZ = {"kal": 95, "kal16": 95, "awb": 130, "slt": 170, "rms": 100}


@dataclass(frozen=True)
class Delivery:
    """How a speaker sounds in one phase: the engine attempt plus flite's pitch target."""

    attempt: Attempt
    flite_f0_hz: int | None = None


@dataclass(frozen=True)
class Speaker:
    """A role, its voice, and its two ways of speaking (dialogue and narrative)."""

    role: str  # "clinician" or "client"
    voice: Voice
    dialogue: Delivery
    narrative: Delivery
    gain: float  # speakers differ in loudness, as two people at two distances from a mic


@dataclass(frozen=True)
class SessionPlan:
    """Everything random about a session except its text, drawn before any work runs."""

    split: str
    index: int
    casts: tuple[tuple[Speaker, Speaker], ...]  # (clinician, client), in the order tried
    target_s: float
    max_s: float
    p1_share: float
    p2_share: float
    text_seed: str  # seeds the script and the pauses; the same for every cast
    layout: tuple[str, ...] = PHASES
    """The phases in the order the recording has them: all three in the usual order, or one
    missing (P1 or P3), or all three reordered."""

    @property
    def name(self) -> str:
        return f"session_{self.index:03d}"


@dataclass
class _Turn:
    """Synthesized sentences of one speaker, not yet placed in the session."""

    speaker: Speaker
    phase: str
    sentences: list[str]
    clips: list[np.ndarray]
    gaps: list[int]  # silence before each clip but the first, in samples

    @property
    def samples(self) -> int:
        return sum(len(c) for c in self.clips) + sum(self.gaps)


class _CastFailed(RuntimeError):
    """A sentence failed with its speaker's voice twice; this cast cannot make the session."""


def _timbre(voice: Voice) -> str:
    """Who a voice sounds like: espeak-ng's variant sets the formants, flite has one per speaker."""
    if voice.engine == "espeak-ng":
        return "espeak-ng+" + (voice.name.partition("+")[2] or voice.name)
    return voice.speaker


def _draw_speaker(role: str, voice: Voice, rng: random.Random) -> Speaker:
    """Dialogue prosody, and the narrative's: slower (and lower, where the engine allows)."""
    if voice.engine == "espeak-ng":
        pitch, rate = rng.randint(35, 65), rng.randint(150, 180)
        dialogue = Delivery(Attempt(voice, pitch, float(rate)))
        slower = float(round(rate * rng.uniform(0.72, 0.85)))
        narrative = Delivery(Attempt(voice, max(0, pitch - rng.randint(10, 20)), slower))
    else:
        stretch = round(rng.uniform(0.9, 1.1), 2)
        dialogue = Delivery(Attempt(voice, None, stretch))
        f0 = round(FLITE_F0_HZ.get(voice.name, 110) * rng.uniform(0.82, 0.9))
        narrative = Delivery(Attempt(voice, None, round(stretch * rng.uniform(1.15, 1.3), 2)), f0)
    return Speaker(role, voice, dialogue, narrative, gain=round(rng.uniform(0.5, 1.0), 2))


def _draw_cast(pools: dict[str, list[Voice]], rng: random.Random) -> tuple[Speaker, Speaker]:
    """A clinician and a client who sound like two different people, when the pool allows."""
    engines = [e for e in pools if pools[e]]
    weights = [ESPEAK_SHARE if e == "espeak-ng" else 1 - ESPEAK_SHARE for e in engines]
    clinician = rng.choice(pools[rng.choices(engines, weights)[0]])
    everyone = [v for e in engines for v in pools[e]]
    engine = rng.choices(engines, weights)[0]
    options = (
        [v for v in pools[engine] if _timbre(v) != _timbre(clinician)]
        or [v for v in everyone if _timbre(v) != _timbre(clinician)]
        or [v for v in everyone if v != clinician]
        or [clinician]
    )
    client = rng.choice(options)
    return _draw_speaker("clinician", clinician, rng), _draw_speaker("client", client, rng)


def _utterance_command(delivery: Delivery, text: str, wav_path: Path) -> list[str]:
    """speech's engine command plus flite's pitch target (a seam the tests make hang)."""
    cmd = engine_command(delivery.attempt, text, wav_path)
    if delivery.attempt.voice.engine == "flite" and delivery.flite_f0_hz is not None:
        cmd += ["--setf", f"int_f0_target_mean={delivery.flite_f0_hz}"]
    return cmd


def _voiced_span(clip: np.ndarray) -> tuple[int, int]:
    """First and last sample of the clip's speech (10 ms frames above 1 % of the peak)."""
    frame = SAMPLE_RATE // 100
    n = len(clip) // frame
    if n == 0:
        return 0, len(clip)
    rms = np.sqrt(np.mean(clip[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > 0.01 * float(np.abs(clip).max()))
    if loud.size == 0:
        return 0, len(clip)
    return int(loud[0]) * frame, min(len(clip), (int(loud[-1]) + 1) * frame)


def _word_spans(sentence: str, clip: np.ndarray) -> list[tuple[str, int, int]]:
    """Approximate (word, start, end) samples within a clip: the voiced span shared by letters.

    A gap of 0.6 letters goes between words, 2.5 after punctuation, where engines pause.
    """
    tokens = sentence.split()
    start, end = _voiced_span(clip)
    weights = [max(1, sum(ch.isalnum() for ch in t)) for t in tokens]
    gaps = [2.5 if t[-1] in ",.;:?!" else 0.6 for t in tokens[:-1]] + [0.0]
    scale = (end - start) / (sum(weights) + sum(gaps))
    spans, t = [], float(start)
    for token, weight, gap in zip(tokens, weights, gaps, strict=True):
        spans.append((token, round(t), round(t + weight * scale)))
        t += (weight + gap) * scale
    return spans


@dataclass
class _Recorder:
    """Synthesizes turns and lays them end to end, noting word times and phase spans."""

    plan: SessionPlan
    rng: random.Random
    tmp_dir: Path
    timeout_s: float
    chunks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    words: list[dict] = field(default_factory=list)
    spans: dict[str, list[int]] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    _calls: int = 0

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    def phase_seconds(self, phase: str) -> float:
        return (self.samples - self.spans[phase][0]) / SAMPLE_RATE if phase in self.spans else 0.0

    def _draw(self, span_s: tuple[float, float]) -> int:
        return round(self.rng.uniform(*span_s) * SAMPLE_RATE)

    def _speak(self, delivery: Delivery, text: str) -> np.ndarray:
        """One sentence, retried once with the same voice; raises _CastFailed after that."""
        for _ in range(CALLS_PER_SENTENCE):
            self._calls += 1
            raw = self.tmp_dir / f"{self._calls:05d}.wav"
            try:
                run_engine(_utterance_command(delivery, text, raw), self.timeout_s)
                return load_engine_clip(raw)
            except SynthesisError as exc:
                self.failures.append(
                    {"split": self.plan.split, "session": self.plan.index,
                     "voice": delivery.attempt.voice.id, "text": text, "error": str(exc)}
                )  # fmt: skip
            finally:
                raw.unlink(missing_ok=True)
        raise _CastFailed(self.failures[-1]["error"])

    def turn(self, speaker: Speaker, phase: str, sentences: list[str]) -> _Turn:
        delivery = speaker.narrative if phase == "P2" else speaker.dialogue
        clips = [self._speak(delivery, s) * speaker.gain for s in sentences]
        gap_s = NARRATIVE_GAP_S if phase == "P2" else SENTENCE_GAP_S
        return _Turn(speaker, phase, sentences, clips, [self._draw(gap_s) for _ in clips[1:]])

    def pause(self, span_s: tuple[float, float]) -> None:
        n = self._draw(span_s)
        self.chunks.append(np.zeros(n, dtype=np.float32))
        self.samples += n

    def place(self, turn: _Turn, pause_s: tuple[float, float] | None = TURN_PAUSE_S) -> None:
        """Append a turn after a pause drawn from ``pause_s`` (none for a phase's first)."""
        if pause_s is not None:
            self.pause(pause_s)
        for k, (sentence, clip) in enumerate(zip(turn.sentences, turn.clips, strict=True)):
            if k:
                self.chunks.append(np.zeros(turn.gaps[k - 1], dtype=np.float32))
                self.samples += turn.gaps[k - 1]
            for word, start, end in _word_spans(sentence, clip):
                self.words.append(
                    {"word": word, "start": self.samples + start, "end": self.samples + end,
                     "speaker": turn.speaker.role, "phase": turn.phase}
                )  # fmt: skip
            span = self.spans.setdefault(turn.phase, [self.samples, self.samples])
            self.chunks.append(clip.astype(np.float32))
            self.samples += len(clip)
            span[1] = self.samples


def _exchange_s(turns: list[_Turn]) -> float:
    """Seconds a question and answer take, with the longest pauses before each."""
    return sum(t.samples for t in turns) / SAMPLE_RATE + len(turns) * TURN_PAUSE_S[1]


def _perform(plan: SessionPlan, cast: tuple[Speaker, Speaker], rec: _Recorder) -> str:
    """Act the script into ``rec``: P1, P2 and P3 each grow until their share of the target.

    Returns the narrative's scenario.
    """
    clinician, client = cast
    script = SessionScript(random.Random(rec.rng.random()))
    rec.pause(EDGE_SILENCE_S)
    for question, answer in script.lead_in():
        rec.place(
            rec.turn(clinician, "lead_in", question),
            pause_s=None if not rec.words else TURN_PAUSE_S,
        )
        rec.place(rec.turn(client, "lead_in", answer))
    rec.pause(PHASE_PAUSE_S)
    wrap_up = [
        rec.turn(speaker, "wrap_up", sentences)
        for question, answer in script.wrap_up()
        for speaker, sentences in ((clinician, question), (client, answer))
    ]
    # The phases share what the small talk leaves of the target length.
    phases_s = plan.target_s - rec.seconds - _exchange_s(wrap_up) - PHASE_PAUSE_S[1]

    # P1: agenda, check-in exchanges, then the hand-over, so P1 ends on the clinician's cue.
    p1_target = phases_s * plan.p1_share
    handover = rec.turn(clinician, "P1", script.to_narrative())
    rec.place(rec.turn(clinician, "P1", script.agenda()), pause_s=None)
    while True:
        question, answer = script.check_in()
        rec.place(rec.turn(clinician, "P1", question))
        rec.place(rec.turn(client, "P1", answer))
        if rec.phase_seconds("P1") + handover.samples / SAMPLE_RATE >= p1_target:
            break
    rec.place(handover)

    # P3's closing and first exchange are made now, so P2 can leave room for them below max_s.
    closing = rec.turn(clinician, "P3", script.closing())
    question, answer = script.processing()
    first = [rec.turn(clinician, "P3", question), rec.turn(client, "P3", answer)]
    tail_s = (closing.samples / SAMPLE_RATE) + TURN_PAUSE_S[1] + EDGE_SILENCE_S[1]
    tail_s += _exchange_s(wrap_up) + PHASE_PAUSE_S[1]
    reserve_s = PHASE_PAUSE_S[1] + _exchange_s(first) + tail_s

    # P2: the client's narrative alone, sentence after sentence with short gaps. A sentence
    # that would leave too little room for P3 ends it, once it has its minimum.
    rec.pause(PHASE_PAUSE_S)
    p2_target = phases_s * plan.p2_share
    sentences = 0
    while sentences < MIN_NARRATIVE_SENTENCES or rec.phase_seconds("P2") < p2_target:
        turn = rec.turn(client, "P2", [script.narrative_sentence()])
        length_s = turn.samples / SAMPLE_RATE + NARRATIVE_GAP_S[1]
        if sentences >= MIN_NARRATIVE_SENTENCES and rec.seconds + length_s + reserve_s > plan.max_s:
            break
        rec.place(turn, pause_s=NARRATIVE_GAP_S if sentences else None)
        sentences += 1

    # P3: reflective exchanges until the session target, then the clinician closes. An exchange
    # that would carry the session past max_s is dropped, once there is one.
    rec.pause(PHASE_PAUSE_S)
    exchange = first
    while True:
        rec.place(exchange[0], pause_s=TURN_PAUSE_S if exchange is not first else None)
        rec.place(exchange[1])
        if rec.seconds + tail_s >= plan.target_s:
            break
        question, answer = script.processing()
        exchange = [rec.turn(clinician, "P3", question), rec.turn(client, "P3", answer)]
        if rec.seconds + _exchange_s(exchange) + tail_s > plan.max_s:
            break
    rec.place(closing)
    rec.pause(PHASE_PAUSE_S)
    for k, turn in enumerate(wrap_up):
        rec.place(turn, pause_s=TURN_PAUSE_S if k else None)
    rec.pause(EDGE_SILENCE_S)
    return script.scenario.name


def _rearrange(audio: np.ndarray, rec: _Recorder, layout: tuple[str, ...]) -> np.ndarray:
    """The recording with its phase blocks in `layout` order (a phase not in it cut out);
    word times and phase spans in `rec` move with their audio.

    A block runs from its phase's start to the next phase's start (the pause after it comes
    along); the small talk before P1 and from P3's end on stays where it is."""
    cut = [rec.spans[p][0] for p in PHASES] + [rec.spans["P3"][1]]
    blocks = {p: (cut[k], cut[k + 1]) for k, p in enumerate(PHASES)}
    pieces, moved, at = [audio[: cut[0]]], {}, cut[0]
    for phase in layout:
        lo, hi = blocks[phase]
        pieces.append(audio[lo:hi])
        moved[phase] = at - lo
        at += hi - lo
    tail_shift = at - cut[-1]
    pieces.append(audio[cut[-1] :])
    shift = {**moved, "lead_in": 0, "wrap_up": tail_shift}
    rec.words = [
        {**w, "start": w["start"] + shift[w["phase"]], "end": w["end"] + shift[w["phase"]]}
        for w in rec.words
        if w["phase"] in shift
    ]
    rec.words.sort(key=lambda w: w["start"])
    rec.spans = {p: [rec.spans[p][0] + moved[p], rec.spans[p][1] + moved[p]] for p in layout}
    return np.concatenate(pieces)


def draw_layout(rng: random.Random, missing_share: float, reorder_share: float) -> tuple[str, ...]:
    """A session's phase layout: one of P1 or P3 missing with `missing_share`, the three
    phases in another order with `reorder_share`, else the usual order."""
    draw = rng.random()
    if draw < missing_share:
        gone = rng.choice(("P1", "P3"))
        return tuple(p for p in PHASES if p != gone)
    if draw < missing_share + reorder_share:
        others = [order for order in itertools.permutations(PHASES) if order != PHASES]
        return rng.choice(others)
    return PHASES


def _seconds(samples: int) -> float:
    return round(samples / SAMPLE_RATE, 3)


def check_session(row: dict, words: list[dict]) -> None:
    """Raise ValueError unless the phases are ordered and every word lies inside its phase.

    Run on every session before it is written; users can run it on a loaded manifest row and
    its transcript too.
    """
    b = row["boundaries"]
    order = [p for p in row.get("phase_order", PHASES) if b[f"{p}_start"] is not None]
    edges = [b[f"{p}_{edge}"] for p in order for edge in ("start", "end")]
    if not edges or edges[0] < 0 or edges != sorted(edges) or edges[-1] > row["duration"]:
        raise ValueError(f"{row['audio']}: phase boundaries out of order: {b}")
    for w in words:
        if w["phase"] in OUTSIDE:
            before, after = w["phase"] == "lead_in", w["phase"] == "wrap_up"
            if (before and w["end"] > edges[0]) or (after and w["start"] < edges[-1]):
                raise ValueError(f"{row['audio']}: small talk inside the phases: {w} with {b}")
            continue
        if w["phase"] not in PHASES or not (
            b[f"{w['phase']}_start"] <= w["start"] <= w["end"] <= b[f"{w['phase']}_end"]
        ):
            raise ValueError(f"{row['audio']}: word outside its phase: {w} with {b}")


def _build_session(
    plan: SessionPlan, out_dir: Path, tmp_root: Path, timeout_s: float
) -> tuple[dict | None, int, list[dict]]:
    """Make and write one session; return its manifest row (None if skipped), the number of
    rebuilds, and the failed engine calls."""
    failures: list[dict] = []
    tmp_dir = tmp_root / f"{plan.split}-{plan.index:03d}"
    tmp_dir.mkdir()
    for tried, cast in enumerate(plan.casts):
        rec = _Recorder(plan, random.Random(plan.text_seed), tmp_dir, timeout_s)
        try:
            scenario = _perform(plan, cast, rec)
        except _CastFailed:
            failures.extend(rec.failures)
            continue
        failures.extend(rec.failures)
        noise_rng = np.random.default_rng(rec.rng.getrandbits(32))
        audio = np.concatenate(rec.chunks)
        if plan.layout != PHASES:
            audio = _rearrange(audio, rec, plan.layout)
        audio += noise_rng.normal(0, rec.rng.uniform(*NOISE_RMS), len(audio)).astype(np.float32)
        audio = np.clip(audio, -1.0, 1.0)
        clinician, client = cast
        row = {
            "audio": f"audio/{plan.split}/{plan.name}.wav",
            "duration": _seconds(len(audio)),
            "boundaries": {
                f"{p}_{edge}": _seconds(rec.spans[p][k]) if p in rec.spans else None
                for p in PHASES
                for k, edge in enumerate(("start", "end"))
            },
            **({"phase_order": list(plan.layout)} if len(plan.layout) == len(PHASES) else {}),
            "transcript": f"transcripts/{plan.split}/{plan.name}.json",
            "speakers": {"clinician": clinician.voice.id, "client": client.voice.id},
            "scenario": scenario,
        }
        words = [{**w, "start": _seconds(w["start"]), "end": _seconds(w["end"])} for w in rec.words]
        check_session(row, words)
        sf.write(str(out_dir / row["audio"]), audio, SAMPLE_RATE, subtype="PCM_16")
        lines = ",\n".join(json.dumps(w, ensure_ascii=False) for w in words)
        (out_dir / row["transcript"]).write_text(f"[\n{lines}\n]\n", encoding="utf-8")
        return row, tried, failures
    return None, len(plan.casts) - 1, failures


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": 0.0, "min": 0.0, "max": 0.0}
    return {"mean": round(statistics.fmean(values), 1), "min": min(values), "max": max(values)}


def _split_summary(rows: list[dict], requested: int, rebuilt: int) -> dict:
    durations = [r["duration"] for r in rows]
    phases = {
        p: _stats(
            [
                round(r["boundaries"][f"{p}_end"] - r["boundaries"][f"{p}_start"], 1)
                for r in rows
                if r["boundaries"][f"{p}_start"] is not None
            ]
        )
        for p in PHASES
    }
    layouts: dict[str, int] = {}
    for r in rows:
        present = [p for p in r.get("phase_order", PHASES) if r["boundaries"][f"{p}_start"]]
        layouts["-".join(present)] = layouts.get("-".join(present), 0) + 1
    return {
        "requested": requested,
        "sessions": len(rows),
        "skipped": requested - len(rows),
        "rebuilt": rebuilt,
        "seconds": round(sum(durations), 1),
        "duration": _stats(durations),
        "phase_seconds": phases,
        "layouts": layouts,
        "voices": sorted({v for r in rows for v in r["speakers"].values()}),
        "scenarios": sorted({r["scenario"] for r in rows}),
    }


def _clear_old_sessions(out_dir: Path, split: str) -> None:
    """Remove an earlier run's sessions so a smaller rerun leaves no orphans."""
    for old in (out_dir / "audio" / split).glob("session_*.wav"):
        old.unlink()
    for old in (out_dir / "transcripts" / split).glob("session_*.json"):
        old.unlink()


def synth_sessions_dataset(
    out_dir: Path,
    n_sessions: int = 12,
    seed: int = 0,
    n_eval: int = 4,
    min_minutes: float = 3.0,
    max_minutes: float = 6.0,
    timeout_s: float = 20.0,
    progress: bool = True,
    missing_share: float = 0.0,
    reorder_share: float = 0.0,
) -> dict:
    """Synthesize ``n_sessions`` three-phase sessions (``n_eval`` of them eval) and return the
    summary that is also written to ``dataset.json``.

    Each session's length is drawn from [min_minutes, max_minutes] and split among the phases
    at random (P1 15-30 %, P2 40-55 %, P3 the rest); sessions land in that range unless the
    shortest possible script (about 70 s: agenda, one check-in, hand-over, three narrative
    sentences, one reflective exchange, closing) is longer. Eval sessions use voices held out
    of train where the engines have enough (as in ``synth_speech_dataset``). The same ``seed``
    gives the same sessions. ``missing_share`` of the sessions lack P1 or P3 (their
    boundaries null), ``reorder_share`` have the three phases in another order (the row's
    ``phase_order``), drawn from their own seed so that the usual sessions stay the same.
    Raises RuntimeError when no engine is installed or no session could be made.
    """
    if not (missing_share >= 0 and reorder_share >= 0 and missing_share + reorder_share <= 1):
        raise ValueError(
            f"need shares >= 0 that sum to <= 1, got {missing_share=}, {reorder_share=}"
        )
    if not 0 <= n_eval <= n_sessions:
        raise ValueError(f"need 0 <= n_eval <= n_sessions, got n_eval={n_eval}, {n_sessions=}")
    if not 0 < min_minutes <= max_minutes:
        raise ValueError(f"need 0 < min_minutes <= max_minutes, got {min_minutes}, {max_minutes}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    usable = available_engines()
    if not usable:
        raise RuntimeError(f"no TTS engine (espeak-ng, flite) is on PATH; {INSTALL_HINT}")

    started = time.monotonic()
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    train_pools, eval_pools = split_voices(usable, timeout_s, rng)
    if not train_pools:
        raise RuntimeError(f"{usable} found but they list no English voice; {INSTALL_HINT}")

    layout_rng = random.Random(f"{seed}-layouts")
    plans = []
    for index in range(n_sessions):
        split, pools = (
            ("eval", eval_pools) if index >= n_sessions - n_eval else ("train", train_pools)
        )
        split_index = index - (n_sessions - n_eval) if split == "eval" else index
        plans.append(
            SessionPlan(
                split=split,
                index=split_index,
                casts=tuple(_draw_cast(pools, rng) for _ in range(CASTS_PER_SESSION)),
                target_s=rng.uniform(min_minutes, max_minutes) * 60,
                max_s=max_minutes * 60,
                p1_share=rng.uniform(*P1_SHARE),
                p2_share=rng.uniform(*P2_SHARE),
                text_seed=f"{seed}-{split}-{split_index}",
                layout=draw_layout(layout_rng, missing_share, reorder_share),
            )
        )
    begin_dataset(out_dir)
    for split in ("train", "eval"):
        (out_dir / "audio" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "transcripts" / split).mkdir(parents=True, exist_ok=True)
        _clear_old_sessions(out_dir, split)

    rows: dict[str, list[dict]] = {"train": [], "eval": []}
    rebuilt = {"train": 0, "eval": 0}
    failures: list[dict] = []
    with (
        tempfile.TemporaryDirectory(prefix="audiolora-sessions-") as tmp,
        ThreadPoolExecutor(max_workers=WORKERS) as pool,
        tqdm(total=len(plans), desc="synth sessions", unit="session", disable=not progress) as bar,
    ):
        futures = {pool.submit(_build_session, p, out_dir, Path(tmp), timeout_s): p for p in plans}
        for future in as_completed(futures):
            row, rebuilds, failed = future.result()
            split = futures[future].split
            failures.extend(failed)
            rebuilt[split] += rebuilds
            if row is not None:
                rows[split].append(row)
            bar.update(1)

    write_manifests(out_dir, rows)
    failures.sort(key=lambda f: (f["split"], f["session"]))
    train_voices = {v.id for vs in train_pools.values() for v in vs}
    n_train = n_sessions - n_eval
    summary = {
        "kind": "sessions",
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "engines": list(train_pools),
        "out_dir": str(out_dir),
        "manifests": {"train": "train.jsonl", "eval": "eval.jsonl"},
        "phases": PHASE_NAMES,
        "minutes": [min_minutes, max_minutes],
        "word_times": "utterance edges exact; words within an utterance shared by letter count",
        "splits": {
            "train": _split_summary(rows["train"], n_train, rebuilt["train"]),
            "eval": _split_summary(rows["eval"], n_eval, rebuilt["eval"]),
        },
        "held_out_voices": sorted({v.id for vs in eval_pools.values() for v in vs} - train_voices),
        "failed_calls": len(failures),
        "failures": failures[:20],
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    if n_sessions and not rows["train"] and not rows["eval"]:
        first = failures[0]["error"] if failures else "no attempt was made"
        raise RuntimeError(
            f"no session could be synthesized ({len(failures)} failed engine calls; first: "
            f"{first}); see {record_failure(out_dir, summary)}"
        )
    finish_dataset(out_dir, summary)
    return summary
