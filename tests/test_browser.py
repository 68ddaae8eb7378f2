"""End to end in a real browser: a real ``streamlit run`` server driven by Debian's chromium.

Clicks through Data (generate a tiny dataset), Train (a 2-epoch run, waited for) and
Analyse (attention and uncertainty figures), waiting for specific elements, and saves a
screenshot of each step in ``test-artifacts/``.
"""

import pytest
from browser_app import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    screenshot,
    wait_idle,
)

LONG_MS = 300_000  # generous: the CI machine has two shared cores

pytestmark = BROWSER_MARKS


def _idle(page, timeout=LONG_MS):
    wait_idle(page, timeout)


def _commit(page, label, value):
    """Type into a text or number input found by its label and submit it (Enter)."""
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    _idle(page)


def test_generate_train_analyse_in_chromium(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2600})
            page.set_default_timeout(LONG_MS)

            # First open: the demo dataset is created and the preview drawn.
            page.goto(server)
            page.get_by_role("heading", name="Datasets in the workspace").wait_for()
            page.locator(".stPlotlyChart .js-plotly-plot").first.wait_for()
            _idle(page)
            screenshot(page, "01-data-first-open.png")
            assert page.url.endswith("/data")  # "/" opens Data, at Data's own address
            page.goto(f"{server}/train")
            page.get_by_role("heading", name="Start a run").wait_for()
            assert page.get_by_text("Page not found").count() == 0

            # A model does not exist yet: Analyse says how to get one (or shows the shipped one).
            page.get_by_role("link", name="Analyse").click()
            page.get_by_role("heading", name="Model").wait_for()
            page.get_by_text("No trained model yet").or_(
                page.locator(".st-key-analyse_attention .js-plotly-plot")).first.wait_for()
            screenshot(page, "02-analyse-before-training.png")

            # Data: generate a tiny dataset.
            page.get_by_role("link", name="Data").click()
            page.get_by_role("heading", name="Generate a new dataset").wait_for()
            _idle(page)
            _commit(page, "Dataset name", "tiny")
            _commit(page, "Number of samples", 64)
            _commit(page, "Points on the full trajectory", 101)
            _commit(page, "Readings per prefix", 40)
            _commit(page, "Prefix lengths [s]", "10")
            page.get_by_role("button", name="Generate").click()
            # 64 samples take about a second (the generator imports no keras): the job may
            # end before the page shows it running.
            page.get_by_text("Generating").or_(page.get_by_text("Dataset tiny is ready")) \
                .first.wait_for()
            screenshot(page, "03-data-generating.png")
            page.get_by_text("Dataset tiny is ready").wait_for()
            screenshot(page, "04-data-generated.png")

            # Train: a 2-epoch run on it, waited for.
            page.get_by_role("link", name="Train").click()
            page.get_by_role("heading", name="Start a run").wait_for()
            _idle(page)
            page.locator(".st-key-train_dataset").click()
            page.get_by_role("option", name="tiny (64 samples)").click()
            _idle(page)
            page.get_by_text("Training settings (preset values; change any)").click()
            _commit(page, "Epochs (maximum)", 2)
            _commit(page, "Batch size", 32)
            page.get_by_role("button", name="Start training").click()
            page.locator(".st-key-train_run_panel").get_by_text("running").first.wait_for()
            screenshot(page, "05-train-running.png")
            page.get_by_text("Finished. Best val_loss").wait_for()
            page.locator(".stPlotlyChart .js-plotly-plot").first.wait_for()
            _idle(page)
            screenshot(page, "06-train-finished.png")

            # Analyse: the run's model on a dataset case: attention, posterior, uncertainty.
            page.get_by_role("link", name="Analyse").click()
            page.get_by_role("heading", name="What the network sees and infers").wait_for()
            page.locator(".st-key-analyse_attention .js-plotly-plot").wait_for()
            page.locator(".st-key-analyse_posterior .js-plotly-plot").wait_for()
            page.locator(".st-key-analyse_forecast .js-plotly-plot").wait_for()
            page.get_by_text("Observed coverage of the 90 % intervals").wait_for()
            assert page.locator(".st-key-analyse_uncertainty .js-plotly-plot").count() == 2
            assert page.get_by_text("Traceback").count() == 0
            _idle(page)
            page.set_viewport_size({"width": 1400, "height": 3600})  # the page scrolls inside
            screenshot(page, "07-analyse.png")
        finally:
            browser.close()
