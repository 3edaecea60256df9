"""Fixtures of the review tests: a tiny session manifest and a server running in a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.review.helpers import write_manifest


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path / "data")


@pytest.fixture
def running() -> Iterator[Callable[..., Any]]:
    """`running(path, **start_review options)`: a review server serving in a thread."""
    from audiolora.review import start_review

    servers = []

    def start(path: Path, **options: Any) -> Any:
        server = start_review(path, rater=options.pop("rater", "tester"), **options)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
