"""What the browser tests share: a real ``streamlit run`` server of the dashboard on a free
port, Debian's chromium, and helpers to wait for the app and take screenshots."""

import contextlib
import os
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
SERVER_START_S = 120  # generous: the CI machine has two shared cores

# Module marks of every browser test: marked, and skipped without chromium.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is missing (apt-get install chromium); CI installs it"),
]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(folder):
    """A headless dashboard server with an empty workspace in ``folder``; its base URL."""
    port = _free_port()
    env = dict(os.environ, EI_KERAS_WORKSPACE=str(folder / "workspace"), PYTHONUNBUFFERED="1")
    log = open(folder / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
         "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
            output = (folder / "server.log").read_text(errors="replace")[-3000:]
            process.kill()
            pytest.fail(f"streamlit did not start:\n{output}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def wait_idle(page, timeout):
    """Wait until the app is not running a script (the status widget disappears)."""
    time.sleep(0.4)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')",
        timeout=timeout)


def screenshot(page, name):
    """A full-page screenshot into ``test-artifacts/``, once plotly has drawn."""
    ARTIFACTS.mkdir(exist_ok=True)
    time.sleep(1.0)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
