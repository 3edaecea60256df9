"""The review server: its routes, decisions over HTTP, and the paths it refuses."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest


def request(server: Any, path: str, method: str = "GET", body: Any = None, **headers: str):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    data = None if body is None else json.dumps(body)
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    return response.status, response.getheader("Content-Type"), response.read()


def test_page_state_audio_and_spectrogram(manifest: Path, running: Any) -> None:
    server = running(manifest, port=0)
    assert server.server_address[0] == "127.0.0.1"
    status, kind, page = request(server, "/")
    assert status == 200 and b"/static/app.js" in page and b"http" not in page.lower()
    for static in ("/static/app.js", "/static/style.css"):
        assert request(server, static)[0] == 200
    state = json.loads(request(server, "/api/state")[2])
    assert state["rater"] == "tester" and state["kind"] == "annotated"
    assert [s["name"] for s in state["sessions"]] == ["s0.wav", "s1.wav", "s2.wav"]
    detail = json.loads(request(server, "/api/sessions/1")[2])
    assert detail["words"][2] == {"word": "today", "start": 3.6, "end": 4.1, "speaker": "client"}
    status, kind, wav = request(server, "/api/sessions/1/audio.wav?start=2&end=6")
    assert status == 200 and kind == "audio/wav" and wav[:4] == b"RIFF"
    assert len(wav) == pytest.approx(44 + 4 * 16000 * 2, abs=64)
    status, kind, png = request(server, "/api/sessions/1/spectrogram.png?start=2&end=6")
    assert status == 200 and kind == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert request(server, "/api/sessions/1/audio.wav?start=0&end=100")[0] == 200  # cut at 12 s
    for query in ("start=5&end=5", "start=a&end=6", "start=2", "start=20&end=30"):
        assert request(server, f"/api/sessions/1/audio.wav?{query}")[0] == 400


def test_a_decision_is_on_disk_when_the_answer_comes(manifest: Path, running: Any) -> None:
    server = running(manifest, port=0)
    decision = {"boundary": "P2_start", "action": "move", "value": 5.5}
    status, _, body = request(server, "/api/sessions/2/decide", "POST", decision)
    assert status == 200 and json.loads(body)["decided"] == {"P2_start": 5.5}
    [row] = [json.loads(line) for line in server.store.path.read_text().splitlines()]
    assert row["audio"] == "audio/s2.wav" and row["boundaries"]["P2_start"] == 5.5
    bad = {"boundary": "P2_start", "action": "move", "value": -1}
    status, _, body = request(server, "/api/sessions/2/decide", "POST", bad)
    assert status == 400 and "between 0 and" in json.loads(body)["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/../sessions.jsonl",
        "/static/../../audio/s0.wav",
        "/static/%2e%2e/%2e%2e/sessions.jsonl",
        "/static/..%2fapp.js",
        "/%2Fetc%2Fpasswd",
        "/static/..\\..\\sessions.jsonl",
        "/api/sessions/0/../../../etc/passwd",
        "file:///etc/passwd",
        "http://127.0.0.1/etc/passwd",
    ],
)
def test_paths_that_try_to_escape_are_forbidden(manifest: Path, running: Any, path: str) -> None:
    assert request(running(manifest, port=0), path)[0] == 403


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/sessions.jsonl",
        "/audio/s0.wav",
        "/static/index.py",
        "/api/sessions/3",
        "/api/sessions/-1",
        "/api/sessions/0/transcript",
        "/api/sessions//audio.wav",
        "//etc/passwd",  # Python >= 3.12 reads it as /etc/passwd (404), older ones as is (403)
    ],
)
def test_anything_but_the_loaded_sessions_is_refused(
    manifest: Path, running: Any, path: str
) -> None:
    status, _, body = request(running(manifest, port=0), path)
    assert status == 404 or (status == 403 and "//" in path)
    assert json.loads(body)["error"]


def test_other_sites_cannot_reach_it(manifest: Path, running: Any) -> None:
    server = running(manifest, port=0)
    assert request(server, "/api/state", Host="evil.example")[0] == 403  # DNS rebinding
    decision = json.dumps({"boundary": "P1_start", "action": "accept"})
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    conn.request("POST", "/api/sessions/0/decide", decision, {"Content-Type": "text/plain"})
    assert conn.getresponse().status == 415  # a cross-site form post
    assert not server.store.path.exists()


def test_an_earlier_review_is_loaded_on_start(manifest: Path, running: Any) -> None:
    first = running(manifest, port=0)
    request(first, "/api/sessions/0/decide", "POST", {"boundary": "P3_end", "action": "absent"})
    again = running(manifest, port=0)
    state = json.loads(request(again, "/api/state")[2])
    assert state["sessions"][0]["decided"] == {"P3_end": None}
    assert state["sessions"][0]["done"] == 1


def test_a_busy_port_is_a_clear_error(manifest: Path, running: Any) -> None:
    from audiolora.review import start_review
    from audiolora.review.sources import ReviewError

    busy = running(manifest, port=0).server_port
    with pytest.raises(ReviewError, match=f"127.0.0.1:{busy} .*--port 0"):
        start_review(manifest, rater="x", port=busy)


def test_the_command_has_help() -> None:
    from typer.testing import CliRunner

    from audiolora.cli import app

    result = CliRunner().invoke(app, ["review", "--help"])
    assert result.exit_code == 0 and "--sample" in result.output
