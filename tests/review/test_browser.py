"""The review page in a real headless Chromium: play around a boundary, move it with the
keyboard, reload, and find the move on the page and on disk.

Needs Debian's chromium and chromium-driver and the selenium package; skipped without them,
except under CI=true, where a missing browser is a broken setup and fails.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {message}: the browser test would be skipped")
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium-manager must never reach the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except Exception:  # the page is still loading: a missing element, a stale one
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_play_move_reload(manifest: Path, running: Any, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server = running(manifest, port=0, rater="rita")
    text = lambda css: browser.find_element(By.CSS_SELECTOR, css).text  # noqa: E731
    keys = lambda *k: ActionChains(browser).send_keys(*k).perform()  # noqa: E731

    browser.get(server.url)
    wait_for(lambda: "s0.wav" in text("#title"), "the first session")
    assert text("#rater") == "rita"
    assert "Enter / a accept" in text("#keys")
    keys("j", "j")  # next boundary, twice: P1_start -> P2_start (4.0 s)
    wait_for(lambda: text("#selected") == "P2_start", "P2_start selected")
    assert text("#current") == "4.00"

    keys(Keys.SPACE)  # play the audio around it
    played = wait_for(
        lambda: browser.execute_script(
            "const a = document.getElementById('audio'); return !a.paused && a.currentTime > 0.3"
            " ? a.currentSrc : null"
        ),
        "the audio to play",
    )
    assert "/api/sessions/0/audio.wav?start=0.000&end=12.000" in played
    keys(Keys.SPACE)

    keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # 4.0 -> 5.5 s
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ARROW_RIGHT).key_up(
        Keys.SHIFT
    ).perform()  # +5 s -> 10.5 s
    assert wait_for(lambda: text("#current") == "10.50", "the moved value")

    def on_disk() -> dict | None:
        rows = [json.loads(x) for x in server.store.path.read_text().splitlines()]
        moves = [e for e in rows[0]["review"] if e["boundary"] == "P2_start"]
        return rows[0] if len(moves) == 4 else None

    row = wait_for(on_disk, "four moves in the verified file")

    browser.refresh()
    wait_for(lambda: text("#selected") == "P2_start", "P2_start selected after the reload")
    assert text("#current") == "10.50"
    cells = browser.find_elements(By.CSS_SELECTOR, "#boundaries tbody tr")
    assert cells[2].find_element(By.CSS_SELECTOR, ".verified-value").text == "10.50"
    assert cells[2].find_element(By.CSS_SELECTOR, ".annotated-value").text == "4.00"
    assert "1/6" in text("#sessions tbody tr.on")

    assert row["boundaries"]["P2_start"] == 10.5
    assert row["audio"] == "audio/s0.wav"
    history = [(e["action"], e["before"], e["value"], e["rater"]) for e in row["review"]]
    assert history == [
        ("move", 4.0, 4.5, "rita"),
        ("move", 4.5, 5.0, "rita"),
        ("move", 5.0, 5.5, "rita"),
        ("move", 5.5, 10.5, "rita"),
    ]
