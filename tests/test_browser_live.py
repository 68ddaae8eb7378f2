"""The Live page in a real browser: a real ``streamlit run`` server driven by Debian's chromium.

Replays a simulated run (300 s at one reading a second) at 100× to its end, reads the
page's settle note, pauses and restarts it, and saves a screenshot of each step in
``test-artifacts/``. The server set-up is shared with ``test_browser.py`` (``browser_app``).
"""

import re
import time

import pytest
from browser_app import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    screenshot,
    wait_idle,
)

LONG_MS = 60_000  # generous: the CI machine has two shared cores

pytestmark = BROWSER_MARKS


def _idle(page, timeout=LONG_MS):
    wait_idle(page, timeout)


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


def test_live_replay_runs_to_its_end_pauses_and_resumes_in_chromium(server):
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
            screenshot(page, "live-01-open.png")

            # 100×: the slider's handle, moved to its end with the keyboard.
            handle = page.locator("input[type=range]")  # the speed slider, the only one
            handle.focus()
            handle.press("End")
            _speed_is(page, 100)

            page.get_by_role("button", name="Start", exact=True).click()
            page.locator(".st-key-live_status").get_by_text("Running").wait_for()
            page.locator(".stPlotlyChart .js-plotly-plot").nth(1).wait_for()
            screenshot(page, "live-02-running.png")

            # 300 s at 100×: about 3 s of wall time. Whether the answer holds still at the
            # end depends on the model and on how readings were batched into updates; the
            # page must say which, and claim a settled answer only while it is settled.
            page.locator(".st-key-live_status").get_by_text("Finished").wait_for()
            _idle(page)
            assert _readings(page) == 301
            note = page.locator(".st-key-live_settled").inner_text()
            assert re.search(r"^(Settled at t = \d+ s|Not settled yet)", note, re.M), note
            settled_now = "Settled at t =" in note and "not settled now" not in note
            assert ("waiting longer no longer changes the answer" in note) == settled_now, note
            assert page.get_by_text("Traceback").count() == 0
            assert page.locator(".stPlotlyChart .js-plotly-plot").count() == 2
            screenshot(page, "live-03-settled.png")

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
            screenshot(page, "live-04-paused.png")
            page.get_by_role("button", name="Resume", exact=True).click()
            page.locator(".st-key-live_status").get_by_text("Running").wait_for()
            page.wait_for_function(
                "(held) => { const m = /(\\d+) readings/.exec("
                "document.querySelector('.st-key-live_status').innerText);"
                " return m && Number(m[1]) > held; }", arg=held)
            assert page.get_by_text("Traceback").count() == 0
        finally:
            browser.close()
