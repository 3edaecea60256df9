import math

import pytest

from audiolora.evaluation.metrics import normalize_text, perplexity, transcription_metrics


def test_perfect_transcript_scores_perfectly() -> None:
    m = transcription_metrics(["Turn on the lights."], ["turn on the lights"])
    assert m["wer"] == 0 and m["cer"] == 0 and m["bleu"] == pytest.approx(100)


def test_one_substitution_in_four_words() -> None:
    m = transcription_metrics(["turn off the lights"], ["turn on the lights"])
    assert m["wer"] == pytest.approx(0.25)
    assert m["cer"] == pytest.approx(2 / len("turn on the lights"))


def test_corpus_level_wer_weights_by_reference_length() -> None:
    m = transcription_metrics(["a b c d", "x"], ["a b c d", "y"])
    assert m["wer"] == pytest.approx(1 / 5)


def test_normalisation_ignores_case_and_punctuation() -> None:
    assert normalize_text("  Hello,   World! ") == "hello world"


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError):
        transcription_metrics(["a"], ["a", "b"])


def test_perplexity_is_exp_mean_nll() -> None:
    assert perplexity(2 * math.log(4), 2) == pytest.approx(4)
    assert math.isnan(perplexity(0.0, 0))
