"""Transcription metrics through the reference libraries: jiwer (WER, CER) and sacrebleu (BLEU).

References and hypotheses are normalised the same way first (lower case, punctuation removed,
whitespace collapsed, Whisper's `BasicTextNormalizer`), so a model is not charged for casing or
commas that the reference transcript never had.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import jiwer
import sacrebleu
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from audiolora.data.audio import is_number

_normalize = BasicTextNormalizer()


def normalize_text(text: str) -> str:
    return " ".join(_normalize(text).split())


def transcription_metrics(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """WER and CER (fractions, 0.094 = 9.4 %) and corpus BLEU (0-100) on normalised text."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not references:
        raise ValueError("no references to score")
    refs = [normalize_text(r) for r in references]
    hyps = [normalize_text(h) for h in hypotheses]
    # jiwer rejects an empty reference; such rows are filtered out by manifest validation.
    wer = jiwer.wer(refs, hyps)
    cer = jiwer.cer(refs, hyps)
    bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
    return {"wer": float(wer), "cer": float(cer), "bleu": float(bleu)}


def perplexity(total_nll: float, total_tokens: int) -> float:
    """exp of the mean negative log-likelihood per target token."""
    if total_tokens == 0:
        return float("nan")
    return math.exp(total_nll / total_tokens)


def summarize_over_seeds(runs: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation over seeds of every numeric key.

    For values x_1..x_n of one key over n seeds:
      mean = (1/n) * sum_k x_k
      std  = sqrt( sum_k (x_k - mean)^2 / (n - 1) )     (ddof=1; 0.0 when n == 1)
    Every run must have the same numeric keys: a key missing from one seed would make its mean
    over fewer seeds look like the others. Non-numeric values (names, notes) are left out.
    """
    if not runs:
        raise ValueError("no runs to summarize")
    keys = [k for k, v in runs[0].items() if is_number(v)]
    for k, run in enumerate(runs[1:], start=2):
        numeric = {key for key, v in run.items() if is_number(v)}
        if numeric != set(keys):
            missing = sorted(set(keys) - numeric)
            extra = sorted(numeric - set(keys))
            raise ValueError(
                f"run {k} has other metrics than run 1: missing {missing}, extra {extra}"
            )
    summary = {}
    for key in keys:
        values = [float(run[key]) for run in runs]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[key] = {"mean": statistics.fmean(values), "std": std}
    return summary
