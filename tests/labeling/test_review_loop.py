"""The loop the seed describes: an LLM proposes, a rater verifies, training reads the result."""

from __future__ import annotations

import json
from pathlib import Path

from audiolora.data.sessions import BOUNDARIES, read_sessions
from audiolora.labeling.llm import EndpointLLM
from audiolora.labeling.prompt import PromptTemplate
from audiolora.labeling.run import label_sessions
from audiolora.review import start_review
from tests.labeling.conftest import Endpoint


def test_proposals_reviewed_become_a_manifest_training_reads(
    labelled_sessions: Path, endpoint: Endpoint, tmp_path: Path
) -> None:
    labels = tmp_path / "labels" / "l.jsonl"
    llm = EndpointLLM(endpoint.url, "stub", retries=0)
    label_sessions(labelled_sessions, labels, llm, PromptTemplate.load(), progress=False)

    server = start_review(labels, rater="ana", port=0)
    try:
        assert server.source.kind == "proposed" and len(server.sessions) == 3
        first, _, no_p1 = server.sessions
        for name in BOUNDARIES:  # the rater accepts every proposal of session 1 ...
            server.store.decide(first, name, "accept")
        server.store.decide(first, "P2_start", "move", first.proposed["P2_start"]["time_s"] + 1.5)
        for name in BOUNDARIES:  # ... and of the session without P1 (absent stays absent)
            server.store.decide(no_p1, name, "accept")
    finally:
        server.server_close()

    verified = labels.with_name("l.verified.jsonl")
    rows = [json.loads(line) for line in verified.read_text().splitlines()]
    assert [r["review_complete"] for r in rows] == [True, True]
    moved = [e for e in rows[0]["review"] if e["action"] == "move"][0]
    assert moved["rater"] == "ana" and moved["before"] == first.proposed["P2_start"]["time_s"]
    sessions, problems = read_sessions(verified, window_s=10, boundaries=BOUNDARIES)
    assert not problems, problems
    assert sessions[0].boundaries["P2_start"] == moved["value"]
    assert sessions[1].absent == {"P1_start", "P1_end"}
