"""`audiolora review`: a local page where a rater checks, moves or marks absent every phase
boundary of a session list, each decision saved at once to a verified manifest."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING

from audiolora.review.sources import ReviewError, load_source, select
from audiolora.review.store import Store

if TYPE_CHECKING:
    from audiolora.review.server import ReviewServer


def start_review(
    path: Path,
    output: Path | None = None,
    predictions: Path | None = None,
    rater: str | None = None,
    port: int = 0,
    sample: float | None = None,
    seed: int = 0,
    sort: str = "order",
) -> ReviewServer:
    """Check the input, load earlier decisions and bind the server (not yet serving);
    ReviewError names what is wrong and how to fix it."""
    from audiolora.review.server import serve

    source = load_source(path, predictions)
    sessions = select(source.sessions, sample=sample, seed=seed, sort=sort)
    output = Path(output or source.default_output)
    if output.resolve() == source.manifest.resolve():
        raise ReviewError(f"--output {output} is the input manifest; write the review elsewhere")
    rater = rater or default_rater()
    store = Store(output, source.kind, sessions, rater)
    try:
        return serve(source, sessions, store, port)
    except OSError as e:
        raise ReviewError(f"cannot listen on 127.0.0.1:{port} ({e.strerror}); try --port 0") from e


def default_rater() -> str:
    try:
        return getpass.getuser()  # $USER, $LOGNAME, ... then the account name
    except (KeyError, OSError) as e:
        raise ReviewError("no user name for the review history; pass --rater NAME") from e
