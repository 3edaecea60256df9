"""SLU metrics: the JSON the model is trained to emit, its parser, and the scores of the papers.

The model answers every utterance with one line of JSON, `{"scenario": "alarm", "action":
"set", "entities": [{"time": "five am"}]}`. Output that is not exactly one such object cannot be
acted on by a voice assistant, so it is counted twice: as invalid (`json_valid_rate`) and as a
wrong answer with no entities in every other score. Scores follow the SLURP evaluation
(Bastianelli et al., 2020, `scripts/evaluation/` of pswietojanski/slurp): accuracies of
scenario, action and intent, exact-match entity F1, and the distance-weighted SLU-F1.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jiwer

from audiolora.data.slu import Entity, SluExample

_END_MARKERS = re.compile(r"(?:\s*(?:<\|[^<>|\s]*\|>|</s>|<eos>|<end_of_turn>))+\s*\Z")
"""End-of-text tokens a decoder may leave after the answer (`<|endoftext|>`, `<|im_end|>`,
`</s>`, ...): the model stopping there is right, not extra output."""


@dataclass(frozen=True)
class ParsedSlu:
    """A prediction that parsed: what the model said, not yet compared with anything."""

    scenario: str
    action: str
    entities: tuple[Entity, ...]

    @property
    def intent(self) -> str:
        return f"{self.scenario}_{self.action}"


Reference = SluExample | tuple[str, str, Sequence[Entity]]
"""An `SluExample`, or (scenario, action, [(type, value), ...])."""


def format_slu_json(scenario: str, action: str, entities: Sequence[Entity]) -> str:
    """The training target: one line of JSON, each entity a one-key object, in the order given.

    Non-ASCII stays as is (`ensure_ascii=False`): escapes like \\u00e9 cost the model several
    tokens per letter and make it spell a French value differently from the audio's transcript.
    """
    target = {
        "scenario": scenario,
        "action": action,
        "entities": [{etype: value} for etype, value in entities],
    }
    return json.dumps(target, ensure_ascii=False, separators=(", ", ": "))


def _parse_entity(item: object) -> Entity | None:
    """`{type: value}` (our form) or `{"type": t, "value"|"filler": v}` (SLURP's form)."""
    if not isinstance(item, dict):
        return None
    if "type" in item and ("value" in item or "filler" in item):
        etype, value = item["type"], item.get("value", item.get("filler"))
    elif len(item) == 1:
        ((etype, value),) = item.items()
    else:
        return None
    if not isinstance(etype, str) or not isinstance(value, str):
        return None
    return etype, value


def parse_slu_json(text: str) -> ParsedSlu | None:
    """The model's answer, or None when it is not one JSON object of the trained form.

    Tolerated: whitespace around it and trailing end-of-text tokens. Not tolerated: anything
    else before or after the object, a truncated object, a non-string scenario or action, a
    missing or non-list `entities`, an entity that is neither `{type: value}` nor
    `{"type": t, "value": v}` with string type and value. Extra keys are ignored.
    """
    body = _END_MARKERS.sub("", text).strip()
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    scenario, action, raw = obj.get("scenario"), obj.get("action"), obj.get("entities")
    if not isinstance(scenario, str) or not isinstance(action, str) or not isinstance(raw, list):
        return None
    entities = [_parse_entity(item) for item in raw]
    if any(e is None for e in entities):
        return None
    return ParsedSlu(scenario, action, tuple(e for e in entities if e is not None))


def _normalize_value(value: str) -> str:
    """Lower case, whitespace collapsed: a value is not wrong for its casing or spacing."""
    return " ".join(value.lower().split())


def _word_distance(gold: str, predicted: str) -> float:
    """WER of the predicted value against the gold one, as SLURP's WordDistance (may exceed 1)."""
    return float(jiwer.wer(gold, predicted))


def _char_distance(gold: str, predicted: str) -> float:
    """Levenshtein distance / length of the longer string, as SLURP's CharDistance (0 to 1)."""
    longest = max(len(gold), len(predicted))
    if longest == 0:
        return 0.0
    if not predicted:
        return 1.0
    edits = jiwer.process_characters(gold, predicted)
    return (edits.substitutions + edits.deletions + edits.insertions) / longest


class _Counts:
    """True positives, false positives and false negatives per entity type (floats)."""

    def __init__(self) -> None:
        self.tp: dict[str, float] = defaultdict(float)
        self.fp: dict[str, float] = defaultdict(float)
        self.fn: dict[str, float] = defaultdict(float)

    def totals(self) -> tuple[float, float, float]:
        return sum(self.tp.values()), sum(self.fp.values()), sum(self.fn.values())


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Precision, recall, F1; each is 0 where its denominator is 0 (SLURP's convention)."""
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def _add_exact(counts: _Counts, gold: Sequence[Entity], predicted: Sequence[Entity]) -> None:
    remaining = Counter(gold)
    for entity in predicted:
        if remaining[entity] > 0:
            remaining[entity] -= 1
            counts.tp[entity[0]] += 1
        else:
            counts.fp[entity[0]] += 1
    for (etype, _), left in remaining.items():
        counts.fn[etype] += left


def _add_distance(
    counts: _Counts,
    gold: Sequence[Entity],
    predicted: Sequence[Entity],
    distance: Callable[[str, str], float],
) -> None:
    """SLURP's SpanDistanceFMeasure for one utterance (see `slu_metrics`)."""
    left = list(gold)
    for etype, value in predicted:
        candidates = [k for k, (gold_type, _) in enumerate(left) if gold_type == etype]
        if not candidates:
            counts.fp[etype] += 1
            continue
        # The closest gold value of the same type; the first one on a tie, as the reference.
        best, best_d = candidates[0], distance(left[candidates[0]][1], value)
        for k in candidates[1:]:
            d = distance(left[k][1], value)
            if d < best_d:
                best, best_d = k, d
        counts.tp[etype] += 1
        counts.fp[etype] += best_d
        counts.fn[etype] += best_d
        left.pop(best)
    for etype, _ in left:
        counts.fn[etype] += 1


def _reference_labels(reference: Reference) -> tuple[str, str, list[Entity]]:
    if isinstance(reference, SluExample):
        return reference.scenario, reference.action, list(reference.entities)
    scenario, action, entities = reference
    return scenario, action, [(t, v) for t, v in entities]


def _reference_value(value: str) -> str:
    """The SLURP scorer's gold value: lower case, nothing else changed."""
    return value.lower()


def slu_metrics(
    predictions: list[str], references: list[Reference], normalise_predictions: bool = True
) -> dict[str, float]:
    """Scores of raw model outputs against references, all fractions in [0, 1].

    Over N utterances, with invalid outputs (parse_slu_json gives None) scored as a wrong
    scenario, a wrong action and no entities:
      json_valid_rate = valid outputs / N
      scenario_acc, action_acc = right scenario (action) / N
      intent_acc      = both right / N
      entity_precision, entity_recall, entity_f1: exact match of (type, value) pairs, counted
        as multisets per utterance (TP = size of the intersection, FP = predicted - TP,
        FN = gold - TP), summed over the corpus (micro average), F1 = 2PR / (P + R).
      slu_f1_word, slu_f1_char, slu_f1: SLURP's SLU-F1 (below).

    SLU-F1, as `SpanDistanceFMeasure` and `SLUF1` in pswietojanski/slurp
    `scripts/evaluation/metrics/metrics.py` (distances in `.../metrics/distance.py`). For each
    utterance, predicted entities are taken in order; a prediction whose type still has an
    unmatched gold entity is paired with the gold entity of that type at the smallest distance d
    (the first one on a tie), which is then used up, and adds TP += 1, FP += d, FN += d; a
    prediction of a type with no gold left adds FP += 1; each gold entity left unpaired adds
    FN += 1. With T, F_P, F_N the corpus sums:
      P = T / (T + F_P),  R = T / (T + F_N),  F1 = 2PR / (P + R)   (0 where undefined)
      word level: d = WER(gold value, predicted value) = word edits / gold words (can exceed 1)
      char level: d = Levenshtein(gold, predicted) / max(len(gold), len(predicted))
      slu_f1: the word- and char-level counts added together (T_w + T_c, F_P,w + F_P,c, ...),
        then P, R, F1 as above: the reference's "sum of the confusion matrices". `slu_precision`
        and `slu_recall` are that P and R.
    Value comparison: with `normalise_predictions=False` exactly as the reference, which
    lower-cases the gold values only and compares the predicted ones as they are. The default
    lower-cases both sides and collapses whitespace, so a generative model is not marked wrong
    for writing "Five AM" (`slu.span_matching` chooses; SLURP-converted data defaults to the
    reference's way). A corpus without any gold or predicted entity scores 0 on the entity
    metrics, as in the reference.
    """
    gold_value = _normalize_value if normalise_predictions else _reference_value
    predicted_value = _normalize_value if normalise_predictions else str
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("no references to score")

    valid = scenario_right = action_right = intent_right = 0
    exact, word, char = _Counts(), _Counts(), _Counts()
    for k, (output, reference) in enumerate(zip(predictions, references, strict=True)):
        scenario, action, gold_raw = _reference_labels(reference)
        gold = [(t, gold_value(v)) for t, v in gold_raw]
        if any(not v for _, v in gold):
            raise ValueError(f"reference {k} has an entity with an empty value: {gold_raw}")
        parsed = parse_slu_json(output)
        predicted: list[Entity] = []
        if parsed is not None:
            valid += 1
            scenario_right += parsed.scenario == scenario
            action_right += parsed.action == action
            intent_right += parsed.scenario == scenario and parsed.action == action
            predicted = [(t, predicted_value(v)) for t, v in parsed.entities]
        _add_exact(exact, gold, predicted)
        _add_distance(word, gold, predicted, _word_distance)
        _add_distance(char, gold, predicted, _char_distance)

    n = len(references)
    entity_p, entity_r, entity_f1 = _prf(*exact.totals())
    word_totals, char_totals = word.totals(), char.totals()
    combined = tuple(w + c for w, c in zip(word_totals, char_totals, strict=True))
    slu_p, slu_r, slu_f1 = _prf(*combined)
    return {
        "json_valid_rate": valid / n,
        "scenario_acc": scenario_right / n,
        "action_acc": action_right / n,
        "intent_acc": intent_right / n,
        "entity_precision": entity_p,
        "entity_recall": entity_r,
        "entity_f1": entity_f1,
        "slu_f1_word": _prf(*word_totals)[2],
        "slu_f1_char": _prf(*char_totals)[2],
        "slu_precision": slu_p,
        "slu_recall": slu_r,
        "slu_f1": slu_f1,
        "count": n,
    }
