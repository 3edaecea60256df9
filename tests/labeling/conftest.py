"""Small labelled sessions with speakers, and a stand-in OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

PHASE_WORD = {"P1": "orientation", "P2": "memory", "P3": "processing"}

TURNS = [
    ("clinician", None, "Good to see you. Was the traffic okay?"),
    ("client", None, "Not bad at all, thanks."),
    ("clinician", "P1", "Here is the plan for today. First a check-in, then the memory."),
    ("client", "P1", "Okay, I did the homework three times this week."),
    ("clinician", "P1", "When you are ready, close your eyes and go back to the memory."),
    ("client", "P2", "It is evening and I am driving home alone. It is raining hard."),
    ("client", "P2", "A car swerves in front of me and I hear the brakes screaming."),
    ("clinician", "P3", "Thank you for staying with it. What was that like today?"),
    ("client", "P3", "It was tiring, but it felt more distant than last week."),
    ("clinician", None, "Is Wednesday good for the next one?"),
    ("client", None, "Yes, goodbye."),
]


def write_labelled_session(
    root: Path, name: str, turns: list[tuple[str, str | None, str]], skip: tuple[str, ...] = ()
) -> dict:
    """A recording (silence, 16 kHz) with a word-timed transcript of `turns` (speaker, phase,
    text), 0.4 s a word and 1 s between turns; turns of a phase in `skip` are left out and that
    phase is marked absent. Returns the manifest row."""
    words, t = [], 1.0
    for speaker, phase, text in turns:
        if phase in skip:
            continue
        for token in text.split():
            words.append(
                {
                    "word": token,
                    "start": round(t, 3),
                    "end": round(t + 0.35, 3),
                    "speaker": speaker,
                    "phase": phase or "other",
                }
            )
            t += 0.4
        t += 1.0
    duration = t + 1.0
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "transcripts").mkdir(exist_ok=True)
    sf.write(root / "audio" / f"{name}.wav", np.zeros(int(duration * 16000), np.float32), 16000)
    (root / "transcripts" / f"{name}.json").write_text(json.dumps(words))
    boundaries: dict[str, float | None] = {}
    for phase in ("P1", "P2", "P3"):
        inside = [w for w in words if w["phase"] == phase]
        boundaries[f"{phase}_start"] = inside[0]["start"] if inside else None
        boundaries[f"{phase}_end"] = inside[-1]["end"] if inside else None
    return {
        "audio": f"audio/{name}.wav",
        "duration": round(duration, 3),
        "boundaries": boundaries,
        "transcript": f"transcripts/{name}.json",
    }


@pytest.fixture
def labelled_sessions(tmp_path: Path) -> Path:
    """sessions.jsonl: two whole sessions and one without P1; paths relative to the folder."""
    root = tmp_path / "sessions"
    rows = [
        write_labelled_session(root, "a", TURNS),
        write_labelled_session(root, "b", TURNS[:6] + TURNS[5:]),  # a longer narrative
        write_labelled_session(root, "no-p1", TURNS, skip=("P1",)),
    ]
    (root / "sessions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "sessions.jsonl"


class Endpoint:
    """A loopback OpenAI-compatible chat endpoint that answers each passage's true phase (or
    `wrong[text]` for a passage holding that text), and records the passages it was asked."""

    def __init__(self) -> None:
        self.truth = {text: PHASE_WORD.get(phase or "", "other") for _, phase, text in TURNS}
        self.wrong: dict[str, str] = {}
        self.asked: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                passage = re.findall(r"^Passage \(.*? into the session\): (.*)$", prompt, re.M)[-1]
                endpoint.asked.append(passage)
                wrong = [a for text, a in endpoint.wrong.items() if text in passage]
                truth = [a for text, a in endpoint.truth.items() if passage.startswith(text)]
                answer = (wrong or truth)[0]
                reply = {"choices": [{"message": {"role": "assistant", "content": answer}}]}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    stub = Endpoint()
    thread = threading.Thread(target=stub.server.serve_forever, daemon=True)
    thread.start()
    yield stub
    stub.server.shutdown()
    stub.server.server_close()
