"""Transcription metrics through the reference libraries: jiwer (WER, CER) and sacrebleu (BLEU).

References and hypotheses are normalised the same way first (lower case, punctuation removed,
whitespace collapsed, Whisper's `BasicTextNormalizer`), so a model is not charged for casing or
commas that the reference transcript never had.
"""

from __future__ import annotations

import math

import jiwer
import sacrebleu
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

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
