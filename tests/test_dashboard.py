"""Dashboard tests with Streamlit's AppTest: every page, error paths, generate → train → analyse.

The pages run in this process (AppTest); dataset generation and training run as real
``ei-keras`` subprocesses, as in the dashboard, on tiny data.
"""

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard import figures, services  # noqa: E402
from ei_keras import generate_dataset  # noqa: E402

APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 180
# A tiny dataset: 10 s prefixes of 40 readings, a coarse trajectory.
TINY = {"n_samples": 64, "seed": 3, "prefix_lengths": [10.0], "prefix_n_points": 40,
        "n_times": 101}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty workspace, no shipped model, fresh caches."""
    root = tmp_path / "workspace"
    monkeypatch.setenv(services.WORKSPACE_ENV, str(root))
    monkeypatch.setattr(services, "default_model", lambda: None)
    st.cache_data.clear()
    st.cache_resource.clear()
    return root


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run directory with a model trained for one epoch on a tiny dataset (in-process)."""
    from ei_keras.training import train

    base = tmp_path_factory.mktemp("trained")
    data = generate_dataset(TINY, base / "tiny.h5", workers=1, progress=False)
    run_dir = base / "20200101-000000-improved-10s-tiny00"
    train(data, 10.0, "improved", run_dir, epochs=1, batch_size=32, verbose=0)
    return data, run_dir


def install_trained(workspace, trained_run):
    """Copy the trained run and its dataset into ``workspace``."""
    data, run_dir = trained_run
    (workspace / "datasets").mkdir(parents=True, exist_ok=True)
    shutil.copy(data, workspace / "datasets" / "tiny.h5")
    shutil.copytree(run_dir, workspace / "runs" / run_dir.name)
    return workspace / "runs" / run_dir.name


def app(page=None):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page is not None:
        at.switch_page(f"app_pages/{page}.py")
        at.run()
    return at


def chart_keys(at):
    """Keys of the plotly charts on the page (element ids end with the key)."""
    return {chart.proto.id.split("-", 2)[-1] for chart in at.get("plotly_chart")}


def messages(elements):
    return " | ".join(str(element.value) for element in elements)


def assert_clean(at):
    assert not at.exception, at.exception
    text = messages(at.error) + messages(at.markdown) + messages(at.code)
    assert "Traceback" not in text


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ---------------------------------------------------------------------------------------
# Data page
# ---------------------------------------------------------------------------------------

def test_first_open_creates_demo_dataset_and_shows_every_setting(workspace):
    at = app()
    assert_clean(at)
    assert (workspace / "datasets" / f"{services.DEMO_NAME}.h5").exists()
    assert [title.value for title in at.title] == ["Data"]
    for key in ("data_n_samples", "data_seed", "data_t_max", "data_n_times",
                "data_prefix_n_points", "data_target_dt", "data_noise_std",
                "data_range_activity_low", "data_range_k_d_high",
                "data_range_tau_probe_high", "data_range_pH_offset_low"):
        assert at.number_input(key=key) is not None
    assert at.text_input(key="data_prefix_lengths").value == "10, 30, 60, 300"
    assert at.multiselect(key="data_infer_params").value == ["activity", "k_d"]
    for key in ("data_adaptive", "data_add_noise", "data_probe_lag", "data_offset"):
        assert at.toggle(key=key) is not None
    assert "data_preview_chart" in chart_keys(at)
    assert not at.button(key="data_generate").disabled
    assert at.dataframe[0].value["name"].tolist() == [services.DEMO_NAME]


@pytest.mark.parametrize("key, value, field", [
    ("data_n_samples", 0, "n_samples"),
    ("data_n_times", 1, "n_times"),
    ("data_range_activity_low", 5.0, "param_ranges.activity"),
    ("data_noise_std", -0.1, "measurement_model.noise_std"),
])
def test_invalid_setting_shows_message_and_blocks_generate(workspace, key, value, field):
    at = app()
    at.number_input(key=key).set_value(value).run()
    assert_clean(at)
    assert f"'{field}'" in messages(at.error)
    assert at.button(key="data_generate").disabled
    assert "data_preview_chart" not in chart_keys(at)


def test_invalid_prefix_lengths_and_targets_are_explained(workspace):
    at = app()
    at.text_input(key="data_prefix_lengths").set_value("10, soon").run()
    assert "prefix_lengths" in messages(at.error)
    at.text_input(key="data_prefix_lengths").set_value("10, 30").run()
    at.toggle(key="data_probe_lag").set_value(False).run()
    at.multiselect(key="data_infer_params").set_value(["activity", "k_d", "tau_probe"]).run()
    assert_clean(at)
    assert "tau_probe cannot be inferred" in messages(at.error)
    assert at.button(key="data_generate").disabled
    at.text_input(key="data_name").set_value("../escape").run()
    assert "dataset name" in messages(at.error)


def test_existing_dataset_name_is_refused(workspace):
    at = app()
    at.text_input(key="data_name").set_value(services.DEMO_NAME).run()
    at.button(key="data_generate").click().run()
    assert_clean(at)
    assert "exists already" in messages(at.error)


# ---------------------------------------------------------------------------------------
# Train page
# ---------------------------------------------------------------------------------------

def test_train_page_widgets(workspace):
    at = app("train")
    assert_clean(at)
    assert [title.value for title in at.title] == ["Train"]
    assert at.selectbox(key="train_dataset").value == services.DEMO_NAME
    assert at.selectbox(key="train_prefix").value == 30.0
    assert set(at.radio(key="train_preset").options) == {"improved", "baseline"}
    assert at.number_input(key="train_improved_epochs").value == 200
    at.radio(key="train_preset").set_value("baseline").run()
    assert at.number_input(key="train_baseline_batch_size").value == 128
    assert not at.button(key="train_start").disabled
    assert "No runs yet" in messages(at.info)


def test_invalid_hyperparameter_blocks_start(workspace):
    at = app("train")
    at.number_input(key="train_improved_learning_rate").set_value(0.0).run()
    assert_clean(at)
    assert "learning_rate" in messages(at.error)
    assert at.button(key="train_start").disabled


def test_crashed_run_shows_a_readable_message(workspace):
    run_dir = workspace / "runs" / "20200101-000000-improved-30s-dead00"
    run_dir.mkdir(parents=True)
    (run_dir / "job.json").write_text(json.dumps({
        "kind": "train", "dataset_name": "demo", "prefix_length": 30.0, "preset": "improved",
        "pid": 999999999, "started": time.time()}))
    (run_dir / "exit_code").write_text("1")
    (run_dir / "train.log").write_text(
        "Epoch 1/5\nTraceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
        "    boom()\nMemoryError: cannot allocate 12 GB\n")
    at = app("train")
    assert_clean(at)
    text = messages(at.error)
    assert "crashed" in text and "MemoryError: cannot allocate 12 GB" in text
    assert at.dataframe[0].value["status"].tolist() == ["crashed"]


def test_readable_error_prefers_the_cli_line_and_never_shows_frames():
    log = "Traceback (most recent call last):\n  File \"a.py\", line 2\nValueError: bad\n"
    assert services.readable_error(log) == "the process stopped with an error: ValueError: bad"
    cli = "loading\nei-keras train: error: dataset x.h5: no such file\n"
    assert services.readable_error(cli, 2) == "ei-keras train: error: dataset x.h5: no such file"
    assert "signal 9" in services.readable_error("", -9)
    assert "File" not in services.log_tail(log)


def test_runs_get_unique_directories_and_stop_writes_the_stop_file(workspace, monkeypatch):
    launched = []
    monkeypatch.setattr(services, "_launch", lambda argv, job_dir, log, meta: launched.append(
        (argv, job_dir)))
    services.ensure_demo_dataset()
    demo = workspace / "datasets" / f"{services.DEMO_NAME}.h5"
    first = services.start_training(demo, 30, "improved", {"epochs": 2})
    second = services.start_training(demo, 30, "improved", {"epochs": 2})
    assert first != second and first.parent == second.parent == workspace / "runs"
    argv = launched[0][0]
    assert argv[:4] == [sys.executable, "-m", "ei_keras.cli", "train"]
    assert argv[argv.index("--out") + 1] == str(first)
    assert json.loads((first / "overrides.json").read_text()) == {"epochs": 2}
    services.request_stop(first)
    assert (first / "stop").exists() and not (second / "stop").exists()
    with pytest.raises(services.EiKerasError, match="no 7 s prefix"):
        services.start_training(demo, 7, "improved")


# ---------------------------------------------------------------------------------------
# Analyse page
# ---------------------------------------------------------------------------------------

def test_analyse_without_a_model_says_how_to_get_one(workspace):
    at = app("analyse")
    assert_clean(at)
    text = messages(at.info)
    assert "No trained model yet" in text and "Train" in text and "shipped default" in text
    assert at.selectbox(key="analyse_model").options == ["Upload a .keras file…"]


def test_analyse_dataset_trace_shows_attention_uncertainty_and_forecast(workspace, trained_run):
    install_trained(workspace, trained_run)
    at = app("analyse")
    assert_clean(at)
    assert at.selectbox(key="analyse_model").value.startswith("Run 20200101")
    assert at.selectbox(key="analyse_dataset").value == "tiny"
    assert {"analyse_attention_chart", "analyse_posterior_chart", "analyse_forecast_chart",
            "analyse_recovery_chart", "analyse_calibration_chart"} <= chart_keys(at)
    assert "Time to pH" in messages(at.markdown) or "not reached" in messages(at.markdown)
    table = at.dataframe[0].value
    assert list(table["parameter"]) == [services.label("activity"), services.label("k_d")]
    assert np.isfinite(table["truth"]).all()


def test_analyse_simulated_and_csv_traces(workspace, trained_run):
    install_trained(workspace, trained_run)
    at = app("analyse")
    at.segmented_control(key="analyse_source").set_value("Simulate a run").run()
    assert_clean(at)
    assert {"analyse_attention_chart", "analyse_posterior_chart",
            "analyse_forecast_chart"} <= chart_keys(at)
    assert "analyse_recovery_chart" not in chart_keys(at)
    at.number_input(key="analyse_sim_activity").set_value(-1.0).run()
    assert "must be > 0" in messages(at.error)

    at.segmented_control(key="analyse_source").set_value("Upload a CSV").run()
    assert "Upload a CSV file" in messages(at.info)
    at.file_uploader(key="analyse_csv").upload("bad.csv", b"when,what\n1,2\n", "text/csv")
    at.run()
    assert_clean(at)
    assert "cannot tell which column" in messages(at.error) or "time" in messages(at.error)
    t = np.linspace(0, 20, 41)
    rows = "\n".join(f"{a:g},{7 + 0.05 * a:.4f}" for a in t)
    at.file_uploader(key="analyse_csv").set_value(
        ("trace.csv", f"time,pH\n{rows}\n".encode(), "text/csv"))
    at.run()
    assert_clean(at)
    assert "only the first 10 s" in messages(at.info)
    assert {"analyse_attention_chart", "analyse_posterior_chart"} <= chart_keys(at)


def test_uploaded_model_is_checked(workspace, trained_run):
    run_dir = install_trained(workspace, trained_run)
    at = app("analyse")
    at.selectbox(key="analyse_model").set_value("Upload a .keras file…").run()
    at.file_uploader(key="analyse_model_upload").upload("evil.keras", b"import os", "x")
    at.run()
    assert_clean(at)
    assert "not a .keras file" in messages(at.error)
    at.file_uploader(key="analyse_model_upload").set_value(
        ("good.keras", (run_dir / "best.keras").read_bytes(), "application/zip"))
    at.run()
    assert_clean(at)
    assert "analyse_attention_chart" in chart_keys(at)


def test_upload_limit_is_configured():
    config = (ROOT / "dashboard" / ".streamlit" / "config.toml").read_text()
    assert f"maxUploadSize = {services.MAX_UPLOAD_MB}" in config
    with pytest.raises(services.EiKerasError, match="limit"):
        services.save_upload(b"PK" + b"0" * (services.MAX_UPLOAD_MB * 1024 * 1024), "big.keras")


# ---------------------------------------------------------------------------------------
# The whole path with real subprocesses
# ---------------------------------------------------------------------------------------

def test_generate_train_analyse_with_subprocesses(workspace):
    at = app()
    at.text_input(key="data_name").set_value("tiny").run()
    at.number_input(key="data_n_samples").set_value(TINY["n_samples"]).run()
    at.number_input(key="data_n_times").set_value(TINY["n_times"]).run()
    at.number_input(key="data_prefix_n_points").set_value(TINY["prefix_n_points"]).run()
    at.text_input(key="data_prefix_lengths").set_value("10").run()
    at.button(key="data_generate").click().run()
    assert_clean(at)
    jobs = services.generation_jobs()
    assert len(jobs) == 1 and jobs[0]["name"] == "tiny"
    job = wait_for(lambda: next((j for j in services.generation_jobs()
                                 if j["state"] != services.RUNNING), None), TIMEOUT, "generation")
    assert job["state"] == services.FINISHED, job["message"]
    at.run()
    assert_clean(at)
    assert "tiny" in at.dataframe[0].value["name"].tolist()

    at.switch_page("app_pages/train.py")
    at.run()
    at.selectbox(key="train_dataset").set_value("tiny").run()
    assert at.selectbox(key="train_prefix").value == 10.0
    at.number_input(key="train_improved_epochs").set_value(2).run()
    at.number_input(key="train_improved_batch_size").set_value(32).run()
    at.button(key="train_start").click().run()
    assert_clean(at)
    run = wait_for(lambda: next((r for r in services.list_runs()
                                 if r["state"] != services.RUNNING), None), TIMEOUT, "training")
    assert run["state"] == services.FINISHED, run["message"]
    assert run["epoch"] == 2 and run["best_model"]
    at.run()
    assert_clean(at)
    assert at.dataframe[0].value["status"].tolist() == ["finished"]
    assert "train_curves" in chart_keys(at)

    at.switch_page("app_pages/analyse.py")
    at.run()
    assert_clean(at)
    assert at.selectbox(key="analyse_model").value.startswith(f"Run {run['id']}")
    assert {"analyse_attention_chart", "analyse_posterior_chart",
            "analyse_calibration_chart"} <= chart_keys(at)


def test_compare_page_runs_a_tiny_comparison(workspace):
    if not services.compare_available():
        pytest.skip("this ei_keras has no compare command, so the dashboard has no Compare page")
    at = app("compare")
    assert_clean(at)
    assert "test dataset" in messages(at.info)
    for name, seed in (("tiny_test", 4), ("tiny_train", 3)):
        generate_dataset(dict(TINY, seed=seed), workspace / "datasets" / f"{name}.h5",
                         workers=1, progress=False)
    at.run()
    at.selectbox(key="compare_data").set_value("tiny_train").run()
    at.selectbox(key="compare_test").set_value("tiny_train").run()
    assert "must differ" in messages(at.error)
    assert at.button(key="compare_start").disabled
    at.selectbox(key="compare_test").set_value("tiny_test").run()
    at.multiselect(key="compare_lengths").set_value([10.0]).run()
    at.multiselect(key="compare_presets").set_value(["improved"]).run()
    at.number_input(key="compare_epochs").set_value(1).run()
    at.button(key="compare_start").click().run()
    assert_clean(at)
    info = wait_for(lambda: next((c for c in services.list_comparisons()
                                  if c["state"] != services.RUNNING), None), TIMEOUT, "compare")
    assert info["state"] == services.FINISHED, info["message"]
    at.run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert table["run"].tolist()[0] == "improved-10s" and len(table) == len(info["planned"])
    assert "compare_chart" in chart_keys(at)


# ---------------------------------------------------------------------------------------
# Figures (no Streamlit)
# ---------------------------------------------------------------------------------------

def test_figures_build_from_plain_data():
    history = [{"epoch": e, "loss": 5.0 / e, "val_loss": 6.0 / e, "learning_rate": 1e-3}
               for e in range(1, 8)]
    figure = figures.training_figure(history, warmup_epochs=3, best_epoch=7)
    assert {trace.name for trace in figure.data} >= {"loss", "val_loss", "learning rate"}
    assert figure.layout.yaxis2.type == "linear"  # one rate: no log axis over nothing
    history[-1]["learning_rate"] = 1e-5
    assert figures.training_figure(history).layout.yaxis2.type == "log"
    posterior = {"activity": {"median": 0.1, "lo50": 0.05, "hi50": 0.2, "lo90": 0.02,
                              "hi90": 0.5, "lo95": 0.01, "hi95": 1.0}}
    figure = figures.posterior_figure(posterior, {"activity": 0.12})
    assert figure.layout.xaxis.type == "log"
    assert any(trace.name == "truth" for trace in figure.data)
