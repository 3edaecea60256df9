"""The review page's local HTTP server: the page, its loaded sessions by index (audio slices,
spectrograms, transcripts) and a POST per decision, which the store writes at once.

It binds to 127.0.0.1 only and serves nothing but its own routes: a request path with `..`,
a backslash or any %-encoding is refused (403) before routing, every other unknown path is 404,
and sessions are named by their index in the loaded list, never by a path.
"""

from __future__ import annotations

import io
import json
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import soundfile as sf

from audiolora.data.sessions import BOUNDARIES
from audiolora.review.sources import Session, Source
from audiolora.review.store import DecisionError, Store

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
MAX_SPAN_S = 60.0
"""Longest slice one request may ask for: the page asks for ±10 s around a boundary."""
SESSION_ROUTE = re.compile(r"^/api/sessions/(\d+)(/audio\.wav|/spectrogram\.png|/decide)?$")


class ReviewServer(ThreadingHTTPServer):
    """Holds what the handler serves; `serve_forever()` runs it."""

    daemon_threads = True

    def __init__(self, source: Source, sessions: list[Session], store: Store, port: int = 0):
        super().__init__(("127.0.0.1", port), Handler)
        self.source, self.sessions, self.store = source, sessions, store
        self.words: dict[int, list[dict[str, Any]]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/"


def serve(source: Source, sessions: list[Session], store: Store, port: int = 0) -> ReviewServer:
    """A bound server (port 0: a free one); call `serve_forever()`, e.g. in a thread."""
    return ReviewServer(source, sessions, store, port)


class Handler(BaseHTTPRequestHandler):
    server: ReviewServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # the terminal shows the URL, not a line per request

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        if ".." in path or "\\" in path or "%" in path or not path.startswith("/") or "//" in path:
            return self._error(HTTPStatus.FORBIDDEN, "path not allowed")
        if self.headers.get("Host", "").split(":")[0] not in ("127.0.0.1", "localhost"):
            return self._error(HTTPStatus.FORBIDDEN, "only served to this machine")
        if method == "GET" and path in STATIC:
            name, kind = STATIC[path]
            data = (resources.files("audiolora.review") / "static" / name).read_bytes()
            return self._send(data, kind)
        if method == "GET" and path == "/api/state":
            return self._json(self._state())
        match = SESSION_ROUTE.match(path)
        if not match or int(match[1]) >= len(self.server.sessions):
            return self._error(HTTPStatus.NOT_FOUND, "no such page or session")
        index, what = int(match[1]), match[2]
        session = self.server.sessions[index]
        try:
            if method == "POST" and what == "/decide":
                return self._decide(index, session)
            if method != "GET" or what == "/decide":
                return self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use GET (POST to /decide)")
            if what is None:
                return self._json({**self._summary(index), "words": self._words(index)})
            start, end = self._span(parse_qs(query), session)
            if what == "/audio.wav":
                return self._send(wav_slice(session.audio, start, end), "audio/wav")
            return self._send(spectrogram_png(session.audio, start, end), "image/png")
        except (DecisionError, ValueError) as e:
            return self._error(HTTPStatus.BAD_REQUEST, str(e))

    def _decide(self, index: int, session: Session) -> None:
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            # a form post from another site cannot set this without a CORS preflight we refuse
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object {boundary, action, value}")
        self.server.store.decide(
            session, body.get("boundary"), body.get("action"), body.get("value")
        )
        self._json(self._summary(index))

    def _state(self) -> dict[str, Any]:
        server = self.server
        return {
            "rater": server.store.rater,
            "kind": server.source.kind,
            "source": str(server.source.path),
            "manifest": str(server.source.manifest),
            "output": str(server.store.path),
            "note": server.source.note,
            "boundaries": list(BOUNDARIES),
            "sessions": [self._summary(i) for i in range(len(server.sessions))],
        }

    def _summary(self, index: int) -> dict[str, Any]:
        s = self.server.sessions[index]
        decided = self.server.store.decisions(s)
        return {
            "index": index,
            "name": s.audio.name,
            "line": s.line,
            "duration": s.duration,
            "disagreement": s.disagreement(),
            "annotated": s.annotated,
            "proposed": s.proposed,
            "predicted": s.predicted,
            "decided": decided,
            "done": sum(b in decided for b in BOUNDARIES),
        }

    def _words(self, index: int) -> list[dict[str, Any]]:
        """The session's transcript words (cached); a bad transcript shows as none."""
        if index not in self.server.words:
            path = self.server.sessions[index].transcript
            words = []
            try:
                entries = json.loads(path.read_text(encoding="utf-8")) if path else []
            except (OSError, ValueError):
                entries = []
            for w in entries if isinstance(entries, list) else []:
                if isinstance(w, dict) and {"word", "start", "end"} <= w.keys():
                    words.append({k: w.get(k) for k in ("word", "start", "end", "speaker")})
            self.server.words[index] = words
        return self.server.words[index]

    def _span(self, query: dict[str, list[str]], session: Session) -> tuple[float, float]:
        try:
            start, end = float(query["start"][0]), float(query["end"][0])
        except (KeyError, ValueError):
            raise ValueError("give ?start=SECONDS&end=SECONDS") from None
        start, end = max(0.0, start), min(session.duration, end)
        if not (end > start and end - start <= MAX_SPAN_S):
            raise ValueError(f"span must be inside the recording and at most {MAX_SPAN_S:g} s")
        return start, end

    def _json(self, data: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(json.dumps(data).encode(), "application/json", status)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json({"error": message}, status)

    def _send(self, data: bytes, kind: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


def read_span(path: Path, start: float, end: float) -> tuple[np.ndarray, int]:
    with sf.SoundFile(str(path)) as f:
        rate = f.samplerate
        f.seek(int(start * rate))
        return f.read(int((end - start) * rate), dtype="float32", always_2d=True), rate


def wav_slice(path: Path, start: float, end: float) -> bytes:
    """The recording from `start` to `end` seconds as a 16-bit WAV file."""
    samples, rate = read_span(path, start, end)
    out = io.BytesIO()
    sf.write(out, samples, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def spectrogram_png(path: Path, start: float, end: float) -> bytes:
    """A small log spectrogram of the span, edge to edge (x maps linearly to start..end)."""
    from matplotlib import mlab
    from matplotlib.figure import Figure  # no pyplot: no global state shared by threads

    samples, rate = read_span(path, start, end)
    power, _, _ = mlab.specgram(samples.mean(axis=1), NFFT=512, Fs=rate, noverlap=384)
    fig = Figure(figsize=(8, 1.6), dpi=80)
    ax = fig.add_axes((0, 0, 1, 1))
    db = 10 * np.log10(power + 1e-12)
    top = float(db.max())  # an 80 dB range: silence must not turn the speech black
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top)
    ax.set_axis_off()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
