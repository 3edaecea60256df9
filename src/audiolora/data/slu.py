"""Spoken language understanding data: one utterance with its scenario, action and entities.

The seed method trains on a mix of speech rows and text-only rows (transcript plus labels, no
audio), so a row's audio is optional here, unlike in `manifest.py`. Everything else follows the
manifest rules: every row is checked before training and every problem is reported at once with
file, line, field and reason.

Manifest format (JSONL, one utterance per line, paths relative to the manifest's folder):
`{"id": "en-0001-v3", "audio": "audio/train/en-0001-v3.wav", "text": "wake me up at five am",
"language": "en", "scenario": "alarm", "action": "set",
"entities": [{"type": "time", "value": "five am"}], "speaker": "espeak:en-us+m3"}`.
`audio` absent or null makes a text-only row. The intent is `f"{scenario}_{action}"`.

Readers for the public corpora (SLURP, MASSIVE / Speech-MASSIVE) turn their rows into this
format, so the rest of the framework sees one SLU format only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from audiolora.atomic import atomic_write_text
from audiolora.data.audio import (
    AudioError,
    audio_info,
    resolve_audio_path,
    shown_path,
    slice_frames,
)
from audiolora.data.manifest import FILE_FIELD, Problem, json_objects, split_lines, type_name

Entity = tuple[str, str]
"""(type, value), e.g. ("time", "five am"); the value is a span of the utterance's text."""


@dataclass(frozen=True)
class SluExample:
    """One checked manifest row."""

    id: str
    text: str
    language: str | None
    scenario: str
    action: str
    entities: tuple[Entity, ...]
    """In manifest order; the converters here write them in text order."""
    audio: Path | None
    """Absolute path resolved relative to the manifest's folder; None for a text-only row."""
    speaker: str | None
    line: int
    """1-based line in the manifest, for messages that point back at the row."""

    @property
    def intent(self) -> str:
        return f"{self.scenario}_{self.action}"

    @property
    def has_audio(self) -> bool:
        return self.audio is not None


def _fold(text: str) -> str:
    """Case- and spacing-blind form, for finding an entity value inside its utterance."""
    return " ".join(text.casefold().split())


def _squeeze(text: str) -> str:
    """Case-blind form without any whitespace: SLURP's gold values are token surfaces joined
    by spaces (`jessica 's`), which must still be found in "jessica's"."""
    return "".join(text.casefold().split())


def _check_label(obj: dict[str, Any], name: str, problems: list[tuple[str, str]]) -> str | None:
    """A required non-empty string field; records a problem and returns None otherwise."""
    if name not in obj:
        problems.append((name, "missing required field"))
        return None
    value = obj[name]
    if not isinstance(value, str):
        problems.append((name, f"must be a string, got {type_name(value)}"))
        return None
    if not value.strip():
        problems.append((name, "empty or whitespace-only"))
        return None
    return value


def _check_optional_string(
    obj: dict[str, Any], name: str, problems: list[tuple[str, str]]
) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        problems.append((name, f"must be a string, got {type_name(value)}"))
        return None
    return value


def _check_entities(
    obj: dict[str, Any], text: str | None, problems: list[tuple[str, str]]
) -> tuple[Entity, ...]:
    if "entities" not in obj:
        problems.append(("entities", "missing required field (use [] for an utterance without)"))
        return ()
    raw = obj["entities"]
    if not isinstance(raw, list):
        problems.append(("entities", f"must be a list of {{type, value}}, got {type_name(raw)}"))
        return ()
    entities: list[Entity] = []
    for k, item in enumerate(raw):
        where = f"entities[{k}]"
        if not isinstance(item, dict):
            problems.append((where, f"must be an object {{type, value}}, got {type_name(item)}"))
            continue
        ok = True
        for key in ("type", "value"):
            value = item.get(key)
            if key not in item:
                problems.append((f"{where}.{key}", "missing required field"))
                ok = False
            elif not isinstance(value, str):
                problems.append((f"{where}.{key}", f"must be a string, got {type_name(value)}"))
                ok = False
            elif not value.strip():
                problems.append((f"{where}.{key}", "empty or whitespace-only"))
                ok = False
        if not ok:
            continue
        etype, value = item["type"], item["value"]
        # Span metrics (SLU-F1) score a value as a piece of the utterance; a value that is not in
        # the text can never be predicted by copying, and usually means a labelling mistake.
        if text is not None and _squeeze(value) not in _squeeze(text):
            problems.append((f"{where}.value", f"{value!r} does not occur in the text {text!r}"))
            continue
        entities.append((etype, value))
    return tuple(entities)


def _check_audio_file(path: Path, max_duration_s: float | None) -> None:
    """Header-only check: exists, readable, not empty, not over the length limit."""
    frames, rate = audio_info(path)
    slice_frames(frames, rate, 0.0, None, max_duration_s, path=path)


def _check_row(
    obj: dict[str, Any],
    lineno: int,
    manifest_dir: Path,
    max_duration_s: float | None,
    check_audio: bool,
) -> tuple[SluExample | None, list[tuple[str, str]]]:
    """Check every field of one row, even after one fails, so a row needs one round of fixes."""
    problems: list[tuple[str, str]] = []

    row_id = obj.get("id", f"line-{lineno}")
    if not isinstance(row_id, str) or not row_id.strip():
        problems.append(("id", f"must be a non-empty string, got {json.dumps(row_id)}"))

    text = _check_label(obj, "text", problems)
    scenario = _check_label(obj, "scenario", problems)
    action = _check_label(obj, "action", problems)
    language = _check_optional_string(obj, "language", problems)
    speaker = _check_optional_string(obj, "speaker", problems)
    entities = _check_entities(obj, text, problems)

    audio = obj.get("audio")
    audio_path: Path | None = None
    if audio is not None:
        if not isinstance(audio, str):
            problems.append(("audio", f"must be a path string or null, got {type_name(audio)}"))
        elif not audio.strip():
            problems.append(("audio", "empty path (use null or leave it out for a text-only row)"))
        else:
            try:
                audio_path = resolve_audio_path(manifest_dir, audio)
            except AudioError as e:
                problems.append(("audio", f"{e.reason} ({shown_path(audio)})"))
            if check_audio and audio_path is not None:
                try:
                    _check_audio_file(audio_path, max_duration_s)
                except AudioError as e:
                    problems.append(("audio", f"{e.reason} ({shown_path(audio)})"))
                except Exception as e:
                    # A decoder bug on one odd file must not stop the check of all the others.
                    problems.append(
                        (
                            "audio",
                            f"could not be read ({type(e).__name__}: {e}) ({shown_path(audio)})",
                        )
                    )

    if problems:
        return None, problems
    assert text is not None and scenario is not None and action is not None
    example = SluExample(
        id=row_id,
        text=text,
        language=language,
        scenario=scenario,
        action=action,
        entities=entities,
        audio=audio_path,
        speaker=speaker,
        line=lineno,
    )
    return example, problems


def read_slu_manifest(
    path: Path,
    *,
    sampling_rate: int = 16000,
    max_duration_s: float | None = 30.0,
    check_audio: bool = True,
) -> tuple[list[SluExample], list[Problem]]:
    """Read and check every row of an SLU manifest; never raises for bad content.

    Returns the good rows and every problem of every bad row. Audio is checked from file headers
    only (exists, readable, not empty, at most `max_duration_s`); `check_audio=False` only
    resolves the paths. `sampling_rate` is accepted for the same call shape as `read_manifest`:
    a header check does not depend on it, since `load_audio` resamples any rate later.
    """
    if sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
    path = Path(path)
    name = str(path)
    examples: list[SluExample] = []
    problems: list[Problem] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], [Problem(name, 0, FILE_FIELD, "manifest not found")]
    except OSError as e:
        return [], [Problem(name, 0, FILE_FIELD, f"manifest unreadable: {e}")]

    manifest_dir = path.resolve().parent
    first_line_of_id: dict[str, int] = {}
    for lineno, obj in json_objects(data, name):
        if isinstance(obj, Problem):
            problems.append(obj)
            continue
        example, row_problems = _check_row(obj, lineno, manifest_dir, max_duration_s, check_audio)
        row_id = obj.get("id")
        if isinstance(row_id, str):
            # Predictions are joined to references by id, so two rows with one id are ambiguous.
            if row_id in first_line_of_id:
                row_problems.append(("id", f"duplicate of line {first_line_of_id[row_id]}"))
                example = None
            else:
                first_line_of_id[row_id] = lineno
        problems += [Problem(name, lineno, f, reason) for f, reason in row_problems]
        if example is not None:
            examples.append(example)
    return examples, problems


def parse_bracket_annotation(annotated: str) -> tuple[str, list[Entity]]:
    """Plain text and entities of a SLURP / MASSIVE annotated utterance.

    `wake me up at [time : five am] [date : this week]` gives
    ("wake me up at five am this week", [("time", "five am"), ("date", "this week")]).
    Only the first `:` in a bracket separates type from value (`[time : 10:30]` is a time of
    "10:30"). Runs of whitespace collapse to one space; no space is added around a bracket, so
    languages written without spaces keep their text. Bad brackets raise ValueError naming the
    0-based character position.
    """
    pieces: list[str] = []
    entities: list[Entity] = []
    pos = 0
    while pos < len(annotated):
        open_at = annotated.find("[", pos)
        close_at = annotated.find("]", pos)
        if close_at != -1 and (open_at == -1 or close_at < open_at):
            raise ValueError(f"']' at position {close_at} has no matching '[': {annotated!r}")
        if open_at == -1:
            pieces.append(annotated[pos:])
            break
        pieces.append(annotated[pos:open_at])
        end = annotated.find("]", open_at + 1)
        nested = annotated.find("[", open_at + 1)
        if end == -1:
            raise ValueError(f"'[' at position {open_at} is never closed: {annotated!r}")
        if nested != -1 and nested < end:
            raise ValueError(f"'[' at position {nested} is inside another bracket: {annotated!r}")
        inside = annotated[open_at + 1 : end]
        etype, sep, value = inside.partition(":")
        etype, value = " ".join(etype.split()), " ".join(value.split())
        if not sep or not etype or not value:
            raise ValueError(
                f"bracket at position {open_at} must read '[type : value]', got "
                f"{annotated[open_at : end + 1]!r}"
            )
        entities.append((etype, value))
        pieces.append(value)
        pos = end + 1
    return " ".join("".join(pieces).split()), entities


def _manifest_row(
    row_id: str,
    text: str,
    language: str,
    scenario: str,
    action: str,
    entities: Sequence[Entity],
    audio: str | None,
    speaker: str | None,
) -> dict[str, Any]:
    """A row in our manifest format; `audio` and `speaker` are left out when unknown."""
    row: dict[str, Any] = {"id": row_id}
    if audio is not None:
        row["audio"] = audio
    row.update(
        text=text,
        language=language,
        scenario=scenario,
        action=action,
        entities=[{"type": t, "value": v} for t, v in entities],
    )
    if speaker is not None:
        row["speaker"] = speaker
    return row


def _join_audio(audio_dir: str | Path, file: str) -> str:
    return (Path(audio_dir) / file).as_posix()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, raw_line in enumerate(split_lines(Path(path).read_bytes()), start=1):
        if not raw_line.strip():
            continue
        try:
            obj = json.loads(raw_line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"{path}:{lineno}: not a JSON line ({e})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type_name(obj)}")
        rows.append(obj)
    return rows


def slurp_entities(obj: dict[str, Any]) -> list[Entity]:
    """(type, value) of each entity of a SLURP row, in span order, as the reference scorer
    builds its gold: `" ".join(tokens[i]["surface"] for i in span).lower()`."""
    surfaces = {token["id"]: token["surface"] for token in obj["tokens"]}
    entities = []
    for entity in sorted(obj["entities"], key=lambda e: min(e["span"], default=-1)):
        span = entity["span"]
        missing = [i for i in span if i not in surfaces]
        if missing or not span:
            raise ValueError(f"entity {entity} spans tokens {missing or span} the row lacks")
        entities.append((entity["type"], " ".join(surfaces[i] for i in span).lower()))
    return entities


def read_slurp(jsonl_path: Path, audio_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Manifest rows from a SLURP release file (`dataset/slurp/train.jsonl` and the like).

    A SLURP row holds one sentence and all its recordings: `slurp_id`, `sentence`,
    `sentence_annotation` ("wake me up at [time : ten]"), `scenario`, `action`, `intent`
    (scenario_action), token-index `entities` and `recordings: [{"file": "audio-....flac"}]`.
    With `audio_dir` (the folder holding the flac files, as the manifest should name it) there
    is one row per recording; without, one text-only row per sentence. Entity values are read
    as the SLURP reference scorer reads its gold: the lower-cased surfaces of the entity's
    `span` tokens joined by one space (`jessica 's` for "Jessica's"), so scores on converted
    data compare with published ones.
    """
    out = []
    for obj in _read_jsonl(Path(jsonl_path)):
        sid = obj.get("slurp_id")
        try:
            entities = slurp_entities(obj)
            base = dict(
                text=" ".join(obj["sentence"].split()),
                language="en",
                scenario=obj["scenario"],
                action=obj["action"],
                entities=entities,
                speaker=None,
            )
            files = [] if audio_dir is None else [r["file"] for r in obj.get("recordings") or []]
            if not all(isinstance(f, str) and f for f in files):
                raise ValueError(f"recordings must name their files, got {files}")
        # TypeError: a field of the wrong JSON type (tokens that are not objects, ...)
        except (KeyError, AttributeError, TypeError, ValueError) as e:
            raise ValueError(f"{jsonl_path}: slurp_id {sid}: {type(e).__name__}: {e}") from None
        if audio_dir is None:
            out.append(_manifest_row(f"slurp-{sid}", audio=None, **base))
            continue
        for file in files:
            stem = file.rsplit(".", 1)[0]
            row_id = f"slurp-{sid}-{stem}"
            out.append(_manifest_row(row_id, audio=_join_audio(audio_dir, file), **base))
    return out


def _massive_labels(row: dict[str, Any]) -> tuple[str, str]:
    """(scenario, action) of a MASSIVE row, from its string labels.

    Speech-MASSIVE on the Hub has `scenario_str` / `intent_str` (its `scenario` is a class
    index); the MASSIVE 1.1 jsonl release has strings in `scenario` / `intent`.
    """
    scenario = row.get("scenario_str", row.get("scenario"))
    intent = row.get("intent_str", row.get("intent"))
    if not isinstance(scenario, str) or not isinstance(intent, str):
        raise ValueError(
            "needs string scenario_str/intent_str (or scenario/intent), got "
            f"{type_name(scenario)} and {type_name(intent)}"
        )
    prefix = f"{scenario}_"
    if not intent.startswith(prefix) or len(intent) == len(prefix):
        raise ValueError(f"intent {intent!r} does not start with scenario {scenario!r} + '_'")
    return scenario, intent[len(prefix) :]


def _massive_audio(row: dict[str, Any]) -> str | None:
    """The recording's relative path: `path` ("test/c15b....wav"), or the audio column's."""
    for candidate in (row.get("path"), row.get("audio")):
        if isinstance(candidate, dict):
            candidate = candidate.get("path")
        if isinstance(candidate, str) and candidate.strip():
            return candidate
    return None


def read_speech_massive(
    rows: Iterable[dict[str, Any]], audio_dir: str | Path | None = None
) -> list[dict[str, Any]]:
    """Manifest rows from Speech-MASSIVE (or text-only MASSIVE) rows.

    Fields used: `id`, `locale` ("fr-FR" gives language "fr"), `annot_utt` ("réveille-moi à
    [time : cinq heures]"), `utt` (the plain text; derived from `annot_utt` when absent),
    `scenario_str`/`intent_str` or `scenario`/`intent`, `speaker_id`, and `path` (or
    `audio.path`) for the recording. Without `audio_dir`, or for a row without a recording path,
    the row is text-only. Ids are `massive-{locale}-{id}`, plus the recording's file stem when
    there is audio, since Speech-MASSIVE may hold several recordings of one MASSIVE id.
    """
    out = []
    for k, row in enumerate(rows):
        rid = row.get("id", k)
        try:
            scenario, action = _massive_labels(row)
            annotated_text, entities = parse_bracket_annotation(row["annot_utt"])
            locale = row["locale"]
            language = locale.split("-")[0].split("_")[0].lower()
        except (KeyError, AttributeError, TypeError, ValueError) as e:
            raise ValueError(f"MASSIVE row {k} (id {rid}): {type(e).__name__}: {e}") from None
        utt = row.get("utt")
        text = " ".join(utt.split()) if isinstance(utt, str) and utt.strip() else annotated_text
        speaker = row.get("speaker_id")
        row_id = f"massive-{locale}-{rid}"
        audio = None
        recording = _massive_audio(row) if audio_dir is not None else None
        if audio_dir is not None and recording is not None:
            row_id += "-" + Path(recording).stem
            audio = _join_audio(audio_dir, recording)
        out.append(
            _manifest_row(
                row_id,
                text=text,
                language=language,
                scenario=scenario,
                action=action,
                entities=entities,
                audio=audio,
                speaker=str(speaker) if speaker is not None else None,
            )
        )
    return out


def write_slu_manifest(rows: Iterable[dict[str, Any]], path: Path) -> None:
    """Write manifest rows as JSONL (UTF-8, non-ASCII kept), all at once or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def convert_to_manifest(
    source_kind: Literal["slurp", "speech-massive"],
    input: Path,
    out: Path,
    audio_dir: Path | None = None,
) -> int:
    """Convert a SLURP or (Speech-)MASSIVE jsonl file to our manifest; returns the row count.

    `audio_dir` is the folder of the recordings as seen from here (absolute or relative to the
    working directory); it is written relative to the output manifest's folder, as manifests
    want their paths.
    """
    out = Path(out)
    rel_dir: str | None = None
    if audio_dir is not None:
        rel_dir = Path(os.path.relpath(Path(audio_dir).resolve(), out.resolve().parent)).as_posix()
    if source_kind == "slurp":
        rows = read_slurp(Path(input), rel_dir)
    elif source_kind == "speech-massive":
        rows = read_speech_massive(_read_jsonl(Path(input)), rel_dir)
    else:
        raise ValueError(f"source_kind must be 'slurp' or 'speech-massive', got {source_kind!r}")
    write_slu_manifest(rows, out)
    return len(rows)
