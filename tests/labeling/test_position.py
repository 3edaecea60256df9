"""The position prior: where each phase usually lies, from labelled sessions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiolora.labeling import run as run_module
from audiolora.labeling.chunks import Chunk
from audiolora.labeling.llm import EndpointLLM
from audiolora.labeling.position import BINS, PositionPrior
from audiolora.labeling.prompt import ANSWERS, PromptTemplate
from audiolora.labeling.run import checked_sessions, label_sessions, label_sweep
from tests.labeling.conftest import TURNS, write_labelled_session


def test_the_prior_is_where_labelled_passages_lie(labelled_sessions: Path) -> None:
    prior = PositionPrior.from_sessions(checked_sessions(labelled_sessions, "stop").rows, 40)
    assert prior.table.shape == (BINS, len(ANSWERS))
    np.testing.assert_allclose(prior.table.sum(axis=1), 1.0)
    words = list(ANSWERS)
    first, last = prior.table[0], prior.table[-1]
    assert first.argmax() == words.index("other") and last.argmax() == words.index("other")
    middle = prior.table[BINS // 2]
    assert middle[words.index("memory")] > middle[words.index("orientation")]


def test_an_unsure_answer_takes_the_prior_a_sure_one_keeps_its_word(
    labelled_sessions: Path,
) -> None:
    prior = PositionPrior.from_sessions(checked_sessions(labelled_sessions, "stop").rows, 40)
    unsure = {w: 0.25 for w in ANSWERS}
    sure = {w: (0.97 if w == "processing" else 0.01) for w in ANSWERS}
    early = Chunk(1.0, 2.0, "clinician", "hello")
    (from_prior,) = prior.combine([unsure], [early], 60.0)
    assert max(from_prior, key=from_prior.get) == "other"
    (kept,) = prior.combine([sure], [early], 60.0)
    assert max(kept, key=kept.get) == "processing"


def test_the_prior_may_not_come_from_the_sessions_being_labelled(
    labelled_sessions: Path, endpoint, tmp_path: Path
) -> None:
    llm = EndpointLLM(endpoint.url, "stub", retries=0)
    with pytest.raises(ValueError, match="learn the position prior from other sessions"):
        label_sessions(labelled_sessions, tmp_path / "l.jsonl", llm, PromptTemplate.load(),
                       prior_from=labelled_sessions, progress=False)  # fmt: skip


def test_the_sweep_passes_the_prior_to_every_variant(
    labelled_sessions: Path, endpoint, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    (other_row,) = [write_labelled_session(other, "o", TURNS)]
    (other / "o.jsonl").write_text(json.dumps(other_row) + "\n")
    rows = label_sweep(
        labelled_sessions, tmp_path / "sweep",
        lambda t: EndpointLLM(endpoint.url, "stub", t, retries=0), [None], [0.0], [0],
        prior_from=other / "o.jsonl", progress=False,
    )  # fmt: skip
    assert [r["variant"] for r in rows] == ["phases-t0-shots0-prior0.3"]
    label_row = json.loads(
        (tmp_path / "sweep" / "phases-t0-shots0-prior0.3.jsonl").read_text().splitlines()[0]
    )
    assert label_row["proposed_by"]["position_prior"] == str(other / "o.jsonl")


def test_the_weight_scales_the_prior_and_reaches_the_labeller(
    labelled_sessions: Path, endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = checked_sessions(labelled_sessions, "stop").rows
    answer = {"orientation": 0.4, "memory": 0.3, "processing": 0.2, "other": 0.1}
    early = Chunk(1.0, 2.0, "clinician", "hello")
    (unweighted,) = PositionPrior.from_sessions(sessions, 40, 0.0).combine([answer], [early], 60.0)
    assert unweighted == pytest.approx(answer)
    (weighted,) = PositionPrior.from_sessions(sessions, 40, 1.0).combine([answer], [early], 60.0)
    assert weighted["other"] > answer["other"]

    seen = []
    real = PositionPrior.from_sessions

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        prior = real(*args, **kwargs)
        seen.append(prior.weight)
        return prior

    other = tmp_path / "other"
    row = write_labelled_session(other, "o", TURNS)
    (other / "o.jsonl").write_text(json.dumps(row) + "\n")
    monkeypatch.setattr(run_module.PositionPrior, "from_sessions", spy)
    label_sessions(labelled_sessions, tmp_path / "l.jsonl", EndpointLLM(endpoint.url, "s"),
                   PromptTemplate.load(), prior_from=other / "o.jsonl", prior_weight=0.7,
                   progress=False)  # fmt: skip
    assert seen == [0.7]
