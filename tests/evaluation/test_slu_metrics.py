"""SLU metrics against hand-computed cases, and the parser that decides what counts as an answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiolora.data.slu import SluExample
from audiolora.evaluation.slu_metrics import (
    ParsedSlu,
    format_slu_json,
    parse_slu_json,
    slu_metrics,
)


def answer(scenario: str, action: str, *entities: tuple[str, str]) -> str:
    return format_slu_json(scenario, action, list(entities))


ALARM = ("alarm", "set", [("time", "five am")])


# --- the training target and its parser ---------------------------------------------------------


def test_target_is_one_line_of_json_with_one_key_entities() -> None:
    target = format_slu_json("alarm", "set", [("time", "five am"), ("date", "this week")])
    assert target == (
        '{"scenario": "alarm", "action": "set", '
        '"entities": [{"time": "five am"}, {"date": "this week"}]}'
    )
    assert format_slu_json("weather", "query", []) == (
        '{"scenario": "weather", "action": "query", "entities": []}'
    )


def test_target_keeps_non_ascii_letters_and_parses_back() -> None:
    target = format_slu_json("alarm", "set", [("place_name", "Besançon")])
    assert "Besançon" in target and "\\u" not in target
    assert parse_slu_json(target) == ParsedSlu("alarm", "set", (("place_name", "Besançon"),))


def test_parser_tolerates_whitespace_and_end_of_text_tokens() -> None:
    expected = ParsedSlu("alarm", "set", (("time", "five am"),))
    target = answer(*ALARM[:2], *ALARM[2])
    for output in (
        f"  {target}\n",
        f"{target}<|endoftext|>",
        f"{target} <|im_end|>\n<|endoftext|>",
        f"{target}</s>",
    ):
        assert parse_slu_json(output) == expected, output


def test_parser_accepts_slurp_style_entities() -> None:
    output = (
        '{"scenario": "alarm", "action": "set", "entities": '
        '[{"type": "time", "filler": "five am"}, {"type": "date", "value": "today"}]}'
    )
    parsed = parse_slu_json(output)
    assert parsed is not None
    assert parsed.entities == (("time", "five am"), ("date", "today"))
    assert parsed.intent == "alarm_set"


@pytest.mark.parametrize(
    "output",
    [
        pytest.param('{"scenario": "alarm", "action": "se', id="truncated"),
        pytest.param(answer("alarm", "set") + " I hope this helps!", id="text after the object"),
        pytest.param("Sure! " + answer("alarm", "set"), id="text before the object"),
        pytest.param(answer("alarm", "set") + answer("alarm", "set"), id="two objects"),
        pytest.param("```json\n" + answer("alarm", "set") + "\n```", id="markdown fence"),
        pytest.param("[" + answer("alarm", "set") + "]", id="list instead of object"),
        pytest.param('{"scenario": 3, "action": "set", "entities": []}', id="scenario not string"),
        pytest.param('{"scenario": "alarm", "action": null, "entities": []}', id="action null"),
        pytest.param('{"scenario": "alarm", "action": "set"}', id="entities missing"),
        pytest.param('{"scenario": "alarm", "action": "set", "entities": {}}', id="entities dict"),
        pytest.param(
            '{"scenario": "alarm", "action": "set", "entities": [{"time": 5}]}',
            id="entity value not string",
        ),
        pytest.param(
            '{"scenario": "alarm", "action": "set", "entities": [{"time": "5", "date": "x"}]}',
            id="entity with two keys",
        ),
        pytest.param('{"scenario": "alarm", "action": "set", "entities": ["five am"]}', id="bare"),
        pytest.param("", id="empty output"),
    ],
)
def test_parser_rejects_anything_but_one_object_of_the_trained_form(output: str) -> None:
    assert parse_slu_json(output) is None


# --- metrics --------------------------------------------------------------------------------------


def test_exact_answers_score_one_everywhere() -> None:
    m = slu_metrics(
        [answer("alarm", "set", ("time", "five am")), answer("weather", "query")],
        [ALARM, ("weather", "query", [])],
    )
    for key, value in m.items():
        assert value == (2 if key == "count" else 1.0), key


def test_value_casing_and_spacing_are_not_errors() -> None:
    m = slu_metrics([answer("alarm", "set", ("time", " Five  AM"))], [ALARM])
    assert m["entity_f1"] == 1.0 and m["slu_f1"] == 1.0


def test_partial_span_gets_distance_weighted_credit() -> None:
    # gold "five am", predicted "five": the pair still counts as a true positive (types match),
    # and its distance is added to both FP and FN.
    #   word: WER = 1 deletion / 2 gold words = 1/2     -> P = R = 1 / (1 + 1/2) = 2/3
    #   char: Levenshtein("five am", "five") = 3 (" am"), longer string 7 chars -> d = 3/7
    #         P = R = 1 / (1 + 3/7) = 7/10
    #   slu_f1: counts added: TP = 2, FP = FN = 1/2 + 3/7 = 13/14 -> P = R = 2 / (2 + 13/14) = 28/41
    #   exact entity match: none (TP 0, FP 1, FN 1) -> 0
    m = slu_metrics([answer("alarm", "set", ("time", "five"))], [ALARM])
    assert m["slu_f1_word"] == pytest.approx(2 / 3)
    assert m["slu_f1_char"] == pytest.approx(7 / 10)
    assert m["slu_f1"] == pytest.approx(28 / 41)
    assert m["slu_precision"] == pytest.approx(28 / 41) and m["slu_recall"] == pytest.approx(
        28 / 41
    )
    assert m["entity_f1"] == 0.0
    assert m["intent_acc"] == 1.0


def test_word_distance_is_unclipped_wer_as_in_the_reference() -> None:
    # gold "five", predicted "five in the morning": WER = 3 insertions / 1 word = 3
    #   word: TP 1, FP = FN = 3 -> P = R = 1/4
    #   char: Levenshtein = 15 (" in the morning"), longer string 19 -> d = 15/19
    #         P = R = 1 / (1 + 15/19) = 19/34
    m = slu_metrics(
        [answer("alarm", "set", ("time", "five in the morning"))],
        [("alarm", "set", [("time", "five")])],
    )
    assert m["slu_f1_word"] == pytest.approx(1 / 4)
    assert m["slu_f1_char"] == pytest.approx(19 / 34)


def test_missing_entity_costs_recall_only() -> None:
    # gold {time, date}, predicted {time}: TP 1, FP 0, FN 1 -> P 1, R 1/2, F1 2/3 (every variant)
    gold = ("alarm", "set", [("time", "five am"), ("date", "this week")])
    m = slu_metrics([answer("alarm", "set", ("time", "five am"))], [gold])
    assert m["entity_precision"] == 1.0 and m["entity_recall"] == 0.5
    for key in ("entity_f1", "slu_f1_word", "slu_f1_char", "slu_f1"):
        assert m[key] == pytest.approx(2 / 3), key


def test_extra_entity_costs_precision_only() -> None:
    # gold {time}, predicted {time, date}: TP 1, FP 1, FN 0 -> P 1/2, R 1, F1 2/3
    m = slu_metrics([answer("alarm", "set", ("time", "five am"), ("date", "today"))], [ALARM])
    assert m["entity_precision"] == 0.5 and m["entity_recall"] == 1.0
    assert m["slu_f1"] == pytest.approx(2 / 3)


def test_right_value_under_the_wrong_type_earns_nothing() -> None:
    # predicted date "five am" for gold time "five am": FP 1 (date) and FN 1 (time), TP 0
    m = slu_metrics([answer("alarm", "set", ("date", "five am"))], [ALARM])
    for key in ("entity_f1", "slu_f1_word", "slu_f1_char", "slu_f1"):
        assert m[key] == 0.0, key


def test_two_entities_of_one_type_pair_with_the_closest_gold_value() -> None:
    # gold place "paris" and "rome"; predicted "rome" then "pari", in that order.
    # "rome" pairs with gold "rome" (distance 0, although "paris" comes first); "pari" then
    # pairs with the gold "paris" left over.
    #   word: d("paris", "pari") = 1 substitution / 1 word = 1 -> TP 2, FP = FN = 1
    #         P = R = 2/3
    #   char: d = 1 deletion / 5 chars = 1/5 -> TP 2, FP = FN = 1/5 -> P = R = 2 / 2.2 = 10/11
    #   slu_f1: TP 4, FP = FN = 6/5 -> P = R = 4 / 5.2 = 10/13
    #   exact: "rome" matches, "pari" does not -> TP 1, FP 1, FN 1 -> 1/2
    gold = ("travel", "query", [("place", "paris"), ("place", "rome")])
    m = slu_metrics([answer("travel", "query", ("place", "rome"), ("place", "pari"))], [gold])
    assert m["slu_f1_word"] == pytest.approx(2 / 3)
    assert m["slu_f1_char"] == pytest.approx(10 / 11)
    assert m["slu_f1"] == pytest.approx(10 / 13)
    assert m["entity_f1"] == pytest.approx(1 / 2)


def test_invalid_json_is_counted_invalid_and_wrong() -> None:
    # utterance 1 exact; utterance 2 unparseable, scored as wrong labels and no entities:
    # entities TP 1, FP 0, FN 1 -> P 1, R 1/2, F1 2/3
    m = slu_metrics(
        [answer("alarm", "set", ("time", "five am")), "alarm set five am"],
        [ALARM, ALARM],
    )
    assert m["json_valid_rate"] == 0.5
    assert m["scenario_acc"] == m["action_acc"] == m["intent_acc"] == 0.5
    assert m["entity_recall"] == 0.5 and m["entity_precision"] == 1.0
    assert m["slu_f1"] == pytest.approx(2 / 3)


def test_intent_needs_both_scenario_and_action() -> None:
    m = slu_metrics(
        [answer("alarm", "query", ("time", "five am")), answer("calendar", "set")],
        [ALARM, ("alarm", "set", [])],
    )
    assert m["scenario_acc"] == 0.5 and m["action_acc"] == 0.5 and m["intent_acc"] == 0.0


def test_manifest_examples_are_references() -> None:
    example = SluExample(
        id="en-1",
        text="wake me up at five am",
        language="en",
        scenario="alarm",
        action="set",
        entities=(("time", "five am"),),
        audio=Path("/data/en-1.wav"),
        speaker=None,
        line=1,
    )
    m = slu_metrics([answer("alarm", "set", ("time", "five am"))], [example])
    assert m["intent_acc"] == 1.0 and m["slu_f1"] == 1.0


def test_bad_calls_are_errors() -> None:
    with pytest.raises(ValueError, match="1 predictions for 2 references"):
        slu_metrics(["{}"], [ALARM, ALARM])
    with pytest.raises(ValueError, match="no references"):
        slu_metrics([], [])
    with pytest.raises(ValueError, match="empty value"):
        slu_metrics(["{}"], [("alarm", "set", [("time", " ")])])
