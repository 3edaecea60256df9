"""Paralinguistic manifests: a spoken query, the speaker's attribute, a response per value.

Rows: `{"audio", "text", "attributes": {"category": "age", "value": "child"}, "responses":
{"adult": "...", "child": "..."}, "intent"?, "set"?}`. The audio and transcript get the checks
of every manifest (`read_manifest`); this module adds the attribute checks, all at once per
row: a category or value the run does not know, no reference response for the row's own
value (nor for any other value of its category: the judge compares against them), empty
responses, and a category that the whole manifest shows with one value only (nothing to tell
apart).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiolora.data.manifest import ManifestReport, ManifestRow, Problem, read_manifest


@dataclass(frozen=True)
class ParaExample:
    """One checked row."""

    audio: Path
    text: str
    category: str
    value: str
    responses: dict[str, str]
    intent: str
    set: str
    line: int

    @property
    def target(self) -> str:
        """The response that fits this speaker."""
        return self.responses[self.value]


def row_problems(raw: dict[str, Any], categories: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Every problem of a row's attribute fields, as (field, reason)."""
    attributes = raw.get("attributes")
    if not isinstance(attributes, dict):
        return [("attributes", 'must be an object {"category": ..., "value": ...}')]
    problems: list[tuple[str, str]] = []
    category, value = attributes.get("category"), attributes.get("value")
    known = categories.get(category) if isinstance(category, str) else None
    if known is None:
        problems.append(
            ("attributes.category", f"unknown category {category!r}; known: {sorted(categories)}")
        )
    elif value not in known:
        problems.append(
            ("attributes.value", f"unknown {category} value {value!r}; known: {list(known)}")
        )
    responses = raw.get("responses")
    if not isinstance(responses, dict):
        problems.append(("responses", "must be an object {value: response text}"))
        return problems
    for key, text in responses.items():
        if not isinstance(text, str) or not text.strip():
            problems.append((f"responses.{key}", "empty response (write the reference answer)"))
    if known is not None:
        missing = [v for v in known if v not in responses]
        if value in missing:
            problems.append(
                (f"responses.{value}", f"no reference response for the row's own value {value!r}")
            )
        elif missing:
            problems.append(
                ("responses", f"no reference response for {missing} (the judge compares with all)")
            )
    intent = raw.get("intent", "")
    if not isinstance(intent, str):
        problems.append(("intent", "must be a string"))
    return problems


def to_example(row: ManifestRow) -> ParaExample:
    """A checked manifest row as an example (`row_problems` found nothing wrong with it)."""
    attrs = row.raw["attributes"]
    return ParaExample(
        audio=row.audio,
        text=row.text or "",
        category=attrs["category"],
        value=attrs["value"],
        responses={k: v.strip() for k, v in row.raw["responses"].items()},
        intent=row.raw.get("intent") or row.text or "",
        set=str(row.raw.get("set", "")),
        line=row.line,
    )


def read_paralinguistic_manifest(
    path: Path,
    categories: dict[str, list[str]],
    *,
    sampling_rate: int = 16000,
    max_duration_s: float = 30.0,
) -> tuple[list[ParaExample], ManifestReport]:
    """Check every row; returns the good rows and the report with every problem (never raises
    for bad content)."""
    report = read_manifest(path, sampling_rate=sampling_rate, max_duration_s=max_duration_s,
                           decode_audio=False)  # fmt: skip
    name = str(path)
    good: list[ParaExample] = []
    kept = []
    for row in report.rows:
        problems = row_problems(row.raw, categories)
        if problems:
            report.problems += [Problem(name, row.line, f, r) for f, r in problems]
            report.rejected_rows[row.line] = row.raw
            continue
        kept.append(row)
        good.append(to_example(row))
    values: dict[str, set[str]] = defaultdict(set)
    for example in good:
        values[example.category].add(example.value)
    for category, seen in sorted(values.items()):
        if len(seen) < 2:
            report.problems.append(
                Problem(
                    name,
                    0,
                    "attributes.value",
                    f"category {category!r} has one value only ({sorted(seen)}): a "
                    "classifier and the judge need at least two",
                )  # fmt: skip
            )
    report.rows = kept
    report.problems.sort(key=lambda p: p.line)
    return good, report
