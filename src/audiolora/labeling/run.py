"""`audiolora label sessions`: propose every boundary of every recording, resumably, and score
the proposals against known labels where the manifest has them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from audiolora.atomic import atomic_write_json, atomic_write_text
from audiolora.data.manifest import json_objects
from audiolora.data.sessions import (
    BOUNDARIES,
    SessionRecord,
    SessionReport,
    check_sessions,
    relocated_row,
)
from audiolora.evaluation.temporal_metrics import boundary_error
from audiolora.labeling.chunks import MAX_CHUNK_WORDS, Chunk, transcript_chunks
from audiolora.labeling.decode import propose_boundaries
from audiolora.labeling.llm import AnswerError, PassageLLM
from audiolora.labeling.position import DEFAULT_WEIGHT, PositionPrior
from audiolora.labeling.prompt import ANSWERS, PromptTemplate, few_shot_examples

ANY_WINDOW_S = 1e-3
"""The session reader checks audio against a window length; labelling cuts no windows."""


@dataclass
class LabelResult:
    """What a labelling run wrote and how good its proposals are where labels are known."""

    output: Path
    sessions: int
    metrics: dict[str, Any]
    answer_problems: list[str] = field(default_factory=list)


def label_sessions(
    manifest: Path,
    output: Path,
    llm: PassageLLM,
    template: PromptTemplate,
    *,
    examples_from: Path | None = None,
    shots: int = 0,
    any_order: bool = False,
    max_words: int = MAX_CHUNK_WORDS,
    calibrate: bool = True,
    on_bad_input: str = "stop",
    progress: bool = True,
    settings: dict[str, Any] | None = None,
    reference_from: Path | None = None,
    prior_from: Path | None = None,
    prior_weight: float = DEFAULT_WEIGHT,
) -> LabelResult:
    """Write OUTPUT: each session row of MANIFEST with `proposed` boundaries.

    Sessions are checked up front (every bad row reported at once; `on_bad_input="skip"`
    labels the rest). Each finished session is appended to OUTPUT.partial at once, so a killed
    run resumes where it stopped; OUTPUT itself appears, whole, at the end (a finished OUTPUT
    with the same settings is read back, not asked again). `reference_from`:
    labelled sessions whose mean boundary positions (no LLM, no transcript) are scored beside
    the proposals, the input-blind reference a labeller has to beat. `prior_from`: labelled
    sessions whose phase positions weigh the LLM's answers (`position.PositionPrior`).
    """
    manifest, output = Path(manifest), Path(output)
    rejected = output.with_suffix(".rejected.jsonl") if on_bad_input == "skip" else None
    report = checked_sessions(manifest, on_bad_input, rejected)
    rows = {line: obj for line, obj in json_objects(manifest.read_bytes(), str(manifest))}
    examples = ""
    if shots:
        if examples_from is None:
            raise ValueError("few-shot examples need --examples-from, a labelled session manifest")
        refuse_labelled_manifest(Path(examples_from), manifest, "take few-shot examples")
        examples = few_shot_examples(labelled_chunks(Path(examples_from), max_words), shots)
    prior = None
    if prior_from is not None:
        refuse_labelled_manifest(Path(prior_from), manifest, "learn the position prior")
        labelled = checked_sessions(Path(prior_from), "stop").rows
        prior = PositionPrior.from_sessions(labelled, max_words, prior_weight)
    meta = {
        "llm": llm.description,
        "template": str(template.path),
        "shots": shots,
        "calibrated": calibrate,
        "position_prior": str(prior_from) if prior_from else None,
        "prior_weight": prior_weight if prior_from else None,
    }
    meta.update(settings or {})

    partial = output.with_name(output.name + ".partial")
    done = {**resume_rows(output, meta), **resume_rows(partial, meta)}
    output.parent.mkdir(parents=True, exist_ok=True)
    todo = [s for s in report.rows if s.line not in done]
    with partial.open("a", encoding="utf-8") as f:
        for session in tqdm(todo, desc="labelling sessions", disable=not progress):
            row = label_one(
                session,
                rows[session.line],
                manifest,
                output,
                llm,
                template,
                examples,
                any_order,
                max_words,
                meta,
                calibrate,
                prior,
            )
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
            done[session.line] = row
    ordered = [done[line] for line in sorted(done)]
    problems = [
        f"{manifest} line {row['source']['line']}, {problem}"
        for row in ordered
        for problem in row["label_problems"]
    ]
    metrics = proposal_metrics(ordered)
    if reference_from is not None and metrics:
        labelled_now = [s for s in report.rows if s.line in done]
        metrics["reference"] = prior_metrics(Path(reference_from), labelled_now)
    atomic_write_text(output, "".join(json.dumps(r) + "\n" for r in ordered))
    summary = {**meta, "metrics": metrics, "answer_problems": problems}
    atomic_write_json(output.with_suffix(".summary.json"), summary)
    partial.unlink(missing_ok=True)
    return LabelResult(output, len(ordered), metrics, problems)


def refuse_labelled_manifest(source: Path, manifest: Path, use: str) -> None:
    """Labelled sessions that help label `manifest` must be other sessions: its own labels
    would leak into the proposals and their score."""
    if source.resolve() == manifest.resolve():
        raise ValueError(
            f"{source} is the manifest being labelled: {use} from other sessions, or their "
            "labels leak into the proposals"
        )


def checked_sessions(
    manifest: Path, on_bad_input: str, rejected: Path | None = None
) -> SessionReport:
    """A session manifest checked as for any use (every bad row named), with no window."""
    return check_sessions(
        {"sessions": manifest},
        window_s=ANY_WINDOW_S,
        boundaries=(),
        on_bad_input=on_bad_input,  # type: ignore[arg-type]
        rejected_path=rejected,
    )["sessions"]


def label_one(
    session: SessionRecord,
    source: dict[str, Any],
    manifest: Path,
    output: Path,
    llm: PassageLLM,
    template: PromptTemplate,
    examples: str,
    any_order: bool,
    max_words: int,
    meta: dict[str, Any],
    calibrate: bool = True,
    prior: PositionPrior | None = None,
) -> dict[str, Any]:
    """The label row of one session: the source row (paths relative to OUTPUT's folder), the
    proposals, and every answer that was not an answer word."""
    chunks = transcript_chunks(session.words, max_words)
    if not chunks:
        raise ValueError(f"{manifest} line {session.line}: the transcript has no words")
    prompts = [
        template.fill(chunk, chunks[i - 1] if i else None, session.duration, examples)
        for i, chunk in enumerate(chunks)
    ]
    answers, problems = [], []
    uniform = {w: 1 / len(ANSWERS) for w in ANSWERS}
    for i, answer in enumerate(llm.answer_probabilities(prompts)):
        if isinstance(answer, AnswerError):
            problems.append(
                f"field transcript, passage {i + 1} at {chunks[i].start:.1f} s: {answer}"
            )
            answer = uniform  # no information: the passages around it decide
        answers.append(answer)
    if calibrate:
        answers = centred(answers)
    if prior is not None:
        answers = prior.combine(answers, chunks, session.duration)
    proposals, order = propose_boundaries(chunks, answers, any_order)
    row = relocated_row(source, manifest.parent, output.parent)
    row["proposed"] = {name: proposals[name].as_json() for name in BOUNDARIES}
    row["proposed_by"] = meta
    if any_order:
        row["proposed_phase_order"] = order
    row["source"] = {"manifest": str(manifest), "line": session.line}
    row["label_problems"] = problems
    if session.boundaries or session.absent:
        guesses = {n: p["time_s"] for n, p in row["proposed"].items()}
        row["proposal_errors"] = compare(session, guesses)
    return row


def centred(answers: Sequence[dict[str, float]]) -> list[dict[str, float]]:
    """Answer probabilities with each answer's mean log probability over the session's passages
    taken out (then renormalised): a small LLM prefers some answer word whatever the passage
    says, and the session's average is the best estimate of that preference (contextual
    calibration, Zhao et al. 2021, with the session as the content-free input)."""
    words = list(ANSWERS)
    logp = np.log(np.clip([[a[w] for w in words] for a in answers], 1e-12, None))
    logp -= logp.mean(axis=0, keepdims=True)
    probs = np.exp(logp - logp.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return [dict(zip(words, row.tolist(), strict=True)) for row in probs]


def compare(session: SessionRecord, guesses: dict[str, float | None]) -> dict[str, Any]:
    """Per boundary the session annotates: the absolute error in seconds where both have a
    time, "missed" where a present phase was proposed absent, "invented" where an absent one
    was proposed present, "absent, agreed" where both say absent."""
    out: dict[str, Any] = {}
    for name in BOUNDARIES:
        if name in session.boundaries or name in session.absent:
            error = boundary_error(session.boundaries.get(name), guesses[name])
            if error is None:
                out[name] = "absent, agreed"
            else:
                out[name] = error if isinstance(error, str) else round(error, 3)
    return out


def proposal_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The session search's metrics (`session_metrics`: MAE over boundaries with a known and a
    proposed time, per boundary too, presence mistakes counted apart) and how many annotated
    boundaries were judged."""
    from audiolora.tasks.temporal.search import session_metrics

    errors = [r.get("proposal_errors", {}) for r in rows]
    judged = sum(len(e) for e in errors)
    if not judged:
        return {}
    return {"boundaries": judged, "missed": 0, "invented": 0, **session_metrics(errors)}


def prior_metrics(labelled: Path, sessions: Sequence[SessionRecord]) -> dict[str, Any]:
    """The proposal metrics of placing each boundary at its mean share of the recording in
    the `labelled` sessions."""
    from audiolora.tasks.temporal.search import phase_prior

    share = phase_prior(checked_sessions(labelled, "skip").rows, BOUNDARIES)
    scored = []
    for session in sessions:
        if session.boundaries or session.absent:
            guesses = {n: share[n] * session.duration if n in share else None for n in BOUNDARIES}
            scored.append({"proposal_errors": compare(session, guesses)})
    return proposal_metrics(scored)


def resume_rows(partial: Path, meta: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Sessions an interrupted run finished (a half-written last line is dropped); a partial
    file from other settings is refused rather than mixed in."""
    if not partial.exists():
        return {}
    done: dict[int, dict[str, Any]] = {}
    good_lines = []
    for line in partial.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("proposed_by") != meta:
            raise ValueError(
                f"{partial} holds labels made with other settings ({row.get('proposed_by')}); "
                "delete it to start again, or rerun with the same settings to resume"
            )
        done[row["source"]["line"]] = row
        good_lines.append(line)
    atomic_write_text(partial, "".join(f"{line}\n" for line in good_lines))
    return done


def labelled_chunks(manifest: Path, max_words: int) -> list[Chunk]:
    """Passages of sessions whose transcript words carry their phase, for few-shot examples."""
    report = checked_sessions(manifest, "stop")
    chunks = [c for s in report.rows for c in transcript_chunks(s.words, max_words)]
    if not any(c.phase for c in chunks):
        raise ValueError(f"{manifest}: no transcript word has a 'phase', so there is no example")
    return chunks


def label_sweep(
    manifest: Path,
    out_dir: Path,
    make_llm: Callable[[float], PassageLLM],
    templates: Sequence[Path | None],
    temperatures: Sequence[float],
    shots: Sequence[int],
    *,
    examples_from: Path | None = None,
    reference_from: Path | None = None,
    prior_from: Path | None = None,
    prior_weights: Sequence[float] = (DEFAULT_WEIGHT,),
    progress: bool = True,
) -> list[dict[str, Any]]:
    """The seed's prompt ablation: every template x temperature x few-shot count (x prior
    weight, with `prior_from`) labels the manifest into OUT_DIR/<variant>.jsonl, scored
    against its known boundaries. A finished
    variant is read back instead of run again, an interrupted one resumes."""
    out_dir = Path(out_dir)
    results = []
    for path in templates:
        template = PromptTemplate.load(path)
        for temperature in temperatures:
            llm = make_llm(temperature)
            for k in shots:
                for weight in prior_weights if prior_from else [None]:
                    name = f"{template.path.stem}-t{temperature:g}-shots{k}"
                    name += f"-prior{weight:g}" if weight is not None else ""
                    metrics = label_sessions(
                        manifest,
                        out_dir / f"{name}.jsonl",
                        llm,
                        template,
                        examples_from=examples_from,
                        shots=k,
                        progress=progress,
                        settings={"temperature": temperature},
                        reference_from=reference_from,
                        prior_from=prior_from,
                        prior_weight=DEFAULT_WEIGHT if weight is None else weight,
                    ).metrics
                    results.append(
                        {
                            "variant": name,
                            "template": str(template.path),
                            "temperature": temperature,
                            "shots": k,
                            "prior_weight": weight,
                            **metrics,
                        }
                    )
    atomic_write_json(out_dir / "sweep.json", results)
    return results
