"""The SLU template grammar: what a user training intent and entity models on it relies on."""

from __future__ import annotations

import random
import re

import pytest

from audiolora.builtin.synth import slu_text
from audiolora.builtin.synth.slu_text import (
    FILLERS,
    LANGUAGES,
    TEMPLATES,
    entity_types,
    fill_template,
    filler_values,
    intents,
    sample_utterances,
    scenarios,
    split_templates,
    template_slots,
)

_MARKUP = re.compile(r"\{[^}]*\}|[()|]")


def entity_pools(language: str) -> dict[str, set[str]]:
    """Entity type -> the filler lists its slots draw from."""
    pools: dict[str, set[str]] = {}
    for templates in TEMPLATES[language].values():
        for template in templates:
            for entity_type, pool in template_slots(template):
                pools.setdefault(entity_type, set()).add(pool)
    return pools


def english_vocabulary() -> set[str]:
    """Every word an English utterance can contain: template words and filler words."""
    words = {w for ts in TEMPLATES["en"].values() for t in ts for w in _MARKUP.sub(" ", t).split()}
    return words | {w for values in FILLERS["en"].values() for v in values for w in v.split()}


def test_english_covers_slurp_sized_label_sets() -> None:
    assert len(scenarios("en")) >= 8
    assert len(intents("en")) >= 30
    assert len(entity_types("en")) >= 10
    for must in ("time", "date", "place_name", "person", "artist_name", "song_name"):
        assert must in entity_types("en")


def test_second_language_covers_every_scenario_with_english_labels() -> None:
    assert "de" in LANGUAGES
    assert scenarios("de") == scenarios("en"), "German must cover every scenario"
    assert set(intents("de")) <= set(intents("en")), "labels stay English (as in MASSIVE)"
    assert set(entity_types("de")) <= set(entity_types("en"))
    assert len(intents("de")) < len(intents("en")), "German is a subset of the intents"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_intent_has_a_held_out_phrasing_and_known_fillers(language: str) -> None:
    for intent, templates in TEMPLATES[language].items():
        scenario, _, action = intent.partition("_")
        assert scenario and action, f"{intent} is not scenario_action"
        assert len(templates) >= 2, f"{language}/{intent}: need a train and an eval phrasing"
        assert split_templates(language, intent, "eval") == templates[-1:]
        assert not set(split_templates(language, intent, "eval")) & set(
            split_templates(language, intent, "train")
        )
        for template in templates:
            for _, pool in template_slots(template):
                assert pool in FILLERS[language], f"{language}/{intent}: no filler list {pool}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_lists_of_one_entity_type_share_no_value(language: str) -> None:
    # Otherwise a value held out of one list would reach training through another.
    for entity_type, pools in entity_pools(language).items():
        values = [v for pool in pools for v in FILLERS[language][pool]]
        assert len(values) == len(set(values)), f"{language}/{entity_type}: repeated values"


@pytest.mark.parametrize("language", LANGUAGES)
def test_entity_values_occur_verbatim_in_plain_lowercase_words(language: str) -> None:
    rng = random.Random(0)
    for intent, templates in TEMPLATES[language].items():
        for template in templates:
            for split in ("train", "eval"):
                for _ in range(5):
                    text, entities = fill_template(template, language, split, rng)
                    assert text == text.lower() and text == " ".join(text.split())
                    assert not re.search(r"[\d.,;:!?\"()]", text), f"not plain words: {text!r}"
                    padded, pos = f" {text} ", 0
                    for entity_type, value in entities:
                        assert entity_type in entity_types(language)
                        found = padded.find(f" {value} ", pos)
                        assert found >= 0, f"{intent}: {value!r} not in spoken order in {text!r}"
                        pos = found + len(value) + 1


@pytest.mark.parametrize("language", LANGUAGES)
def test_train_and_eval_share_no_utterance_phrasing_or_held_out_value(language: str) -> None:
    rng = random.Random(0)
    evals = sample_utterances(300, language, "eval", rng)
    train = sample_utterances(1500, language, "train", rng, exclude={u.text for u in evals})
    assert len(evals) == 300 and len(train) == 1500
    assert len({u.text for u in train}) == len(train), "train texts are distinct"
    assert not {u.text for u in train} & {u.text for u in evals}
    assert not {u.template for u in train} & {u.template for u in evals}
    held_out = {
        (entity_type, value)
        for entity_type, pools in entity_pools(language).items()
        for pool in pools
        for value in set(FILLERS[language][pool]) - set(filler_values(language, pool, "train"))
    }
    assert held_out, "some filler values must be held out of training"
    assert not {e for u in train for e in u.entities} & held_out
    assert {e for u in evals for e in u.entities} & held_out, "eval should meet unseen values"


def test_intents_are_taken_in_turn_so_every_intent_is_covered() -> None:
    utts = sample_utterances(2 * len(intents("en")), "en", "train", random.Random(3))
    per_intent = {i: sum(u.intent == i for u in utts) for i in intents("en")}
    assert set(per_intent.values()) == {2}


def test_same_seed_gives_the_same_utterances() -> None:
    def draw(seed: int) -> list[slu_text.SluUtterance]:
        return sample_utterances(50, "de", "train", random.Random(seed))

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_german_templates_speak_german() -> None:
    german = sample_utterances(400, "de", "train", random.Random(1)) + sample_utterances(
        100, "de", "eval", random.Random(1)
    )
    english = english_vocabulary()
    for u in german:
        assert u.language == "de"
        assert set(u.text.split()) - english, f"only English words in {u.text!r}"
    assert any(ch in "äöüß" for u in german for ch in u.text)
    row = german[0].labels()
    assert row["language"] == "de" and row["scenario"] in scenarios("en")


def test_unknown_language_or_split_says_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="choose from"):
        sample_utterances(1, "xx", "train", random.Random(0))
    with pytest.raises(ValueError, match="split must be one of"):
        sample_utterances(1, "en", "test", random.Random(0))
