"""The Live page in a real browser: a real ``streamlit run`` server driven by Debian's chromium.

Replays a simulated run (300 s at one reading a second) at 100× until the page says the
answer has settled, pauses and restarts it, and saves a screenshot of each step in
``test-artifacts/``. The server set-up is that of ``test_browser.py``.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SERVER_START_S = 60
LONG_MS = 60_000  # generous: the CI machine has two shared cores

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is missing (apt-get install chromium); CI installs it"),
]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A headless streamlit server on a free port with an empty workspace; its base URL."""
    port = _free_port()
    env = dict(os.environ, EI_KERAS_WORKSPACE=str(tmp_path / "workspace"),
               PYTHONUNBUFFERED="1")
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
         "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.close()
            output = (tmp_path / "server.log").read_text(errors="replace")[-3000:]
            process.kill()
            pytest.fail(f"streamlit did not start:\n{output}")
        time.sleep(0.5)
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()


def _idle(page, timeout=LONG_MS):
    """Wait until the app is not running a script (the status widget disappears)."""
    time.sleep(0.4)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')",
        timeout=timeout)


def _shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    time.sleep(1.0)  # let plotly finish drawing
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _speed_is(page, value):
    """Wait until the speed slider shows ``value`` and the app has taken it."""
    page.wait_for_function(
        "(value) => document.querySelector('input[type=range]').value === String(value)",
        arg=value)
    _idle(page)


def _readings(page):
    """The number of readings fed so far, from the status line."""
    text = page.locator(".st-key-live_status").inner_text()
    return int(re.search(r"(\d+) readings", text).group(1))


def test_live_replay_settles_in_chromium(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2600})
            page.set_default_timeout(LONG_MS)
            page.goto(f"{server}/live")
            page.get_by_role("heading", name="Live").wait_for()
            page.get_by_text("Choose what to follow and press").wait_for()
            _idle(page)
            _shot(page, "live-01-open.png")

            # 100×: the slider's handle, moved to its end with the keyboard.
            handle = page.locator("input[type=range]")  # the speed slider, the only one
            handle.focus()
            handle.press("End")
            _speed_is(page, 100)

            page.get_by_role("button", name="Start", exact=True).click()
            page.locator(".st-key-live_status").get_by_text("Running").wait_for()
            page.locator(".stPlotlyChart .js-plotly-plot").nth(1).wait_for()
            _shot(page, "live-02-running.png")

            # 300 s at 100×: about 3 s of wall time; settles at about 150 s of the run.
            page.locator(".st-key-live_settled").get_by_text("Settled at t =").wait_for()
            page.locator(".st-key-live_status").get_by_text("Finished").wait_for()
            _idle(page)
            assert _readings(page) == 301
            assert page.get_by_text("Traceback").count() == 0
            assert page.locator(".stPlotlyChart .js-plotly-plot").count() == 2
            _shot(page, "live-03-settled.png")

            # Restart at 5×, pause: the readings stop coming; resume: they come again.
            handle.focus()
            handle.press("Home")
            for _ in range(4):
                handle.press("ArrowRight")
            _speed_is(page, 5)
            page.get_by_role("button", name="Start", exact=True).click()
            page.locator(".st-key-live_status").get_by_text("Running").wait_for()
            page.wait_for_function(
                "() => /([1-9]\\d+) readings/.test("
                "document.querySelector('.st-key-live_status').innerText)")
            page.get_by_role("button", name="Pause", exact=True).click()
            page.locator(".st-key-live_status").get_by_text("Paused").wait_for()
            _idle(page)
            held = _readings(page)
            time.sleep(2.0)
            assert _readings(page) == held
            _shot(page, "live-04-paused.png")
            page.get_by_role("button", name="Resume", exact=True).click()
            page.locator(".st-key-live_status").get_by_text("Running").wait_for()
            page.wait_for_function(
                "(held) => { const m = /(\\d+) readings/.exec("
                "document.querySelector('.st-key-live_status').innerText);"
                " return m && Number(m[1]) > held; }", arg=held)
            assert page.get_by_text("Traceback").count() == 0
        finally:
            browser.close()
