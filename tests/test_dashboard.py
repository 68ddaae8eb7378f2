"""Dashboard tests with Streamlit's AppTest: every page, error paths, generate → train → analyse.

The pages run in this process (AppTest); dataset generation and training run as real
``ei-keras`` subprocesses, as in the dashboard, on tiny data.
"""

import json
import shutil
import sys
import threading
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

import ei_keras  # noqa: E402
from dashboard import (  # noqa: E402
    analysis, cache, comparisons, forms, jobs, live_session, sources, words)
from dashboard.workspace import (  # noqa: E402
    MAX_UPLOAD_MB,
    WORKSPACE_ENV,
    default_model,
    save_model_upload,
)
from ei_keras.errors import EiKerasError  # noqa: E402
from ei_keras.inference.traces import ANY_FORMAT, reading_times, simulated_trace  # noqa: E402
from ei_keras.simulation import KNOWN_NAMES, label  # noqa: E402
from ei_keras.simulation.priors import prior_midpoints  # noqa: E402
from ei_keras import generate_dataset  # noqa: E402
from tiny_test_set import hot_test_set  # noqa: E402

APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 180
# A tiny dataset: 10 s prefixes of 40 readings, a coarse trajectory.
TINY = {"n_samples": 64, "seed": 3, "prefix_lengths": [10.0], "prefix_n_points": 40,
        "n_times": 101}
# The same with traces of every length (5–600 s) and reading interval (0.5–10 s).
TINY_ANY = dict(TINY, any_format={"enabled": True, "prefix_length_s": [5.0, 600.0],
                                  "reading_interval_s": [0.5, 10.0], "max_readings": 400})


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty workspace, no shipped model, fresh caches."""
    root = tmp_path / "workspace"
    monkeypatch.setenv(WORKSPACE_ENV, str(root))
    monkeypatch.setattr(analysis, "default_model", lambda: None)
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


@pytest.fixture(scope="module")
def any_format_run(tmp_path_factory):
    """A run directory with an any-format model trained for one epoch (in-process)."""
    from ei_keras.training import ANY_FORMAT, train

    base = tmp_path_factory.mktemp("any_format")
    data = generate_dataset(TINY_ANY, base / "tiny_any.h5", workers=1, progress=False)
    run_dir = base / "20200101-000000-anyformat-any-tiny00"
    train(data, ANY_FORMAT, "anyformat", run_dir, epochs=1, batch_size=32, verbose=0)
    return data, run_dir


def install_trained(workspace, trained_run):
    """Copy the trained run and its dataset into ``workspace``."""
    data, run_dir = trained_run
    (workspace / "datasets").mkdir(parents=True, exist_ok=True)
    shutil.copy(data, workspace / "datasets" / Path(data).name)
    shutil.copytree(run_dir, workspace / "runs" / run_dir.name)
    return workspace / "runs" / run_dir.name


def app(page=None):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page is not None:
        at.switch_page(f"app_pages/{page}.py")
        at.run()
    return at


def upload_linear_trace(at, length_s):
    """Upload on Analyse a CSV of 41 readings rising 0.05 pH/s over ``length_s``; run."""
    rows = "\n".join(f"{a:g},{7 + 0.05 * a:.4f}" for a in np.linspace(0, length_s, 41))
    at.file_uploader(key="analyse_csv").set_value(
        ("trace.csv", f"time,pH\n{rows}\n".encode(), "text/csv"))
    at.run()


def upload_saturating_trace(t):
    """Open Analyse, upload a CSV of readings at ``t`` rising as 7 + 1.5 (1 - e^(-t/400)), run."""
    at = app("analyse")
    at.segmented_control(key="analyse_source").set_value("Upload a CSV").run()
    rows = "\n".join(f"{a:g},{7 + 1.5 * (1 - np.exp(-a / 400)):.4f}" for a in t)
    at.file_uploader(key="analyse_csv").upload("trace.csv", f"time,pH\n{rows}\n".encode(),
                                                "text/csv")
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
    assert (workspace / "datasets" / f"{cache.DEMO_NAME}.h5").exists()
    assert [title.value for title in at.title] == ["Data"]
    for key in ("data_n_samples", "data_seed", "data_t_max", "data_n_times",
                "data_prefix_n_points", "data_target_dt", "data_noise_std",
                "data_range_activity_low", "data_range_k_d_high",
                "data_range_tau_probe_high", "data_range_pH_offset_low"):
        assert at.number_input(key=key) is not None
    assert at.text_input(key="data_prefix_lengths").value == "10, 30, 60, 300"
    assert at.multiselect(key="data_infer_params").value == ["activity", "k_d"]
    for key in ("data_adaptive_n_points", "data_add_noise", "data_probe_lag",
                "data_probe_offset", "data_any_format"):
        assert at.toggle(key=key) is not None
    assert "data_preview_chart" in chart_keys(at)
    assert not at.button(key="data_generate").disabled
    assert at.dataframe[0].value["name"].tolist() == [cache.DEMO_NAME]


@pytest.mark.parametrize("key, value, label", [
    ("data_n_samples", 0, "Number of samples: got 0"),
    ("data_n_times", 1, "Points on the full trajectory: got 1"),
    ("data_range_activity_low", 5.0, "Prior range of Activity: got [5.0, 1.0]"),
    ("data_noise_std", -0.1, "Noise σ [pH]: got -0.1"),
])
def test_invalid_setting_shows_message_and_blocks_generate(workspace, key, value, label):
    at = app()
    at.number_input(key=key).set_value(value).run()
    assert_clean(at)
    assert label in messages(at.error)
    assert at.button(key="data_generate").disabled
    assert "data_preview_chart" not in chart_keys(at)


def test_every_dataset_and_training_setting_has_a_form_entry(workspace):
    """The forms are made from the typed settings: a new setting needs no page edit."""
    from ei_keras.config import DatasetConfig
    from ei_keras.settings import settings_of
    from ei_keras.config import TrainConfig

    def keys(cls, prefix):
        for field in settings_of(cls):
            if "section" in field.metadata:
                yield from keys(field.metadata["section"], prefix)
            elif field.metadata["fields"]:
                yield from keys(field.metadata["fields"], prefix)
            elif field.metadata["kind"] == "ranges":
                yield from (f"{prefix}range_{name}_{end}" for name in field.default_factory()
                            for end in ("low", "high"))
            elif field.name != "preset":
                yield forms.widget_key(prefix, field)

    at = app()
    missing = [key for key in keys(DatasetConfig, "data_") if key not in at.session_state]
    at = app("train")
    missing += [key for key in keys(TrainConfig, "train_improved_") if key not in at.session_state]
    assert not missing


def test_invalid_prefix_lengths_and_targets_are_explained(workspace):
    at = app()
    at.text_input(key="data_prefix_lengths").set_value("10, soon").run()
    assert "Prefix lengths [s]: got '10, soon'" in messages(at.error)
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
    at.text_input(key="data_name").set_value(cache.DEMO_NAME).run()
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
    assert at.selectbox(key="train_dataset").value == cache.DEMO_NAME
    assert at.selectbox(key="train_prefix").value == 30.0
    assert set(at.radio(key="train_preset").options) == set(forms.presets()) >= {
        "improved", "baseline"}
    assert at.number_input(key="train_improved_epochs").value == 200
    at.radio(key="train_preset").set_value("baseline").run()
    assert at.number_input(key="train_baseline_batch_size").value == 128
    assert not at.button(key="train_start").disabled
    assert "No runs yet" in messages(at.info)


def test_invalid_hyperparameter_blocks_start(workspace):
    at = app("train")
    at.number_input(key="train_improved_lr").set_value(0.0).run()
    assert_clean(at)
    assert "Learning rate: got 0.0; allowed: a finite number > 0" in messages(at.error)
    assert at.button(key="train_start").disabled
    at.number_input(key="train_improved_lr").set_value(0.001).run()
    at.number_input(key="train_improved_dropout").set_value(1.5).run()
    assert "Dropout: got 1.5; allowed: a finite number >= 0 and < 1" in messages(at.error)
    at.number_input(key="train_improved_dropout").set_value(None).run()
    at.text_input(key="train_improved_filters").set_value("16, x").run()
    assert "Channels per TCN block: got '16, x'" in messages(at.error)
    at.text_input(key="train_improved_filters").set_value("16, 16, 16").run()
    assert not at.error and not at.button(key="train_start").disabled


def test_an_optional_number_set_by_the_preset_can_be_emptied_to_none(workspace, monkeypatch):
    launched = []
    monkeypatch.setattr(jobs, "launch", lambda argv, job_dir, log, meta: launched.append(
        meta["overrides"]))
    at = app("train")
    clipnorm = "train_improved_clipnorm"  # Gradient clip: 5 in the preset; none: no clipping
    assert at.number_input(key=clipnorm).value == 5.0
    at.number_input(key=clipnorm).set_value(None).run()
    assert_clean(at)
    assert at.number_input(key=clipnorm).value is None
    assert not at.error and not at.button(key="train_start").disabled
    at.button(key="train_start").click().run()
    assert launched == [{"global_clipnorm": None}]
    at.number_input(key=clipnorm).set_value(2.5).run()  # and back to a number
    assert at.number_input(key=clipnorm).value == 2.5 and not at.error
    assert forms.training_overrides("improved", {"global_clipnorm": None}) == {
        "global_clipnorm": None}
    # a number that may not be none keeps its number: it is no empty-able box
    at.number_input(key="train_improved_lr").set_value(None).run()
    assert at.number_input(key="train_improved_lr").value == 0.001


def test_failed_and_killed_runs_show_the_job_s_own_state(workspace):
    runs = workspace / "runs"
    for name, status in (("failed", {"state": "failed", "message": "MemoryError: cannot "
                                     "allocate 12 GB", "pid": 999999999}),
                         ("killed", {"state": "running", "pid": 999999999, "done": 1})):
        run_dir = runs / f"20200101-000000-improved-30s-{name}"
        run_dir.mkdir(parents=True)
        (run_dir / "job.json").write_text(json.dumps({
            "kind": "train", "dataset_name": "demo", "prefix_length": 30.0,
            "preset": "improved", "pid": 999999999, "started": time.time()}))
        (run_dir / "status.json").write_text(json.dumps(dict(status, kind="train")))
        # A run that failed while training has its config.json (without, it was refused).
        (run_dir / "config.json").write_text(json.dumps({"train": {"warmup_epochs": 0}}))
    at = app("train")
    assert_clean(at)
    assert at.dataframe[0].value["status"].tolist() == ["crashed", "crashed"]
    assert "pid 999999999) ended without reporting how" in messages(at.error)  # newest first
    at.selectbox(key="train_view").set_value("20200101-000000-improved-30s-failed").run()
    text = messages(at.error)
    assert "crashed" in text and "training failed: MemoryError: cannot allocate 12 GB" in text


def test_a_run_refused_before_training_shows_why(workspace, monkeypatch):
    """The run's own one line (status.json), not "ended before it reported any state"."""
    from ei_keras.cli import main

    cache.ensure_demo_dataset()
    demo = workspace / "datasets" / f"{cache.DEMO_NAME}.h5"
    gone = Path(shutil.copy(demo, demo.with_name("gone.h5")))

    def launch(argv, job_dir, log, meta):  # the child's CLI, in this process
        (job_dir / jobs.LAUNCH_FILE).write_text(json.dumps(dict(meta, pid=999999999,
                                                                started=time.time())))
        gone.unlink()  # deleted before the run read it
        assert main([str(a) for a in argv]) == 2
    monkeypatch.setattr(jobs, "launch", launch)
    run_dir = jobs.start_training(gone, 30, "improved", {"epochs": 1})
    assert sorted(p.name for p in run_dir.iterdir()) == ["job.json", "overrides.json",
                                                         "status.json"]
    why = f"dataset {gone}: no such file"
    assert jobs.run_info(run_dir)["state"] == "refused"
    assert jobs.run_info(run_dir)["message"] == why
    at = app("train")
    assert_clean(at)
    assert f"refused before training began: {why}" in messages(at.error)
    assert "crashed" not in messages(at.error)


def test_runs_get_unique_directories_and_stop_writes_the_stop_file(workspace, monkeypatch):
    launched = []
    monkeypatch.setattr(jobs, "launch", lambda argv, job_dir, log, meta: launched.append(
        ([str(a) for a in argv], job_dir)))
    cache.ensure_demo_dataset()
    demo = workspace / "datasets" / f"{cache.DEMO_NAME}.h5"
    first = jobs.start_training(demo, 30, "improved", {"epochs": 2})
    second = jobs.start_training(demo, 30, "improved", {"epochs": 2})
    assert first != second and first.parent == second.parent == workspace / "runs"
    argv = launched[0][0]
    assert argv[0] == "train"
    assert argv[argv.index("--out") + 1] == str(first)
    assert json.loads((first / "overrides.json").read_text()) == {"epochs": 2}
    jobs.request_stop(first)
    assert (first / "stop").exists() and not (second / "stop").exists()
    with pytest.raises(EiKerasError, match="no 7 s prefix"):
        jobs.start_training(demo, 7, "improved")


def test_any_format_training_is_offered_and_launched(workspace, any_format_run, monkeypatch):
    launched = []
    monkeypatch.setattr(jobs, "launch", lambda argv, job_dir, log, meta: launched.append(
        ([str(a) for a in argv], meta)))
    install_trained(workspace, any_format_run)
    at = app("train")
    assert_clean(at)
    assert at.selectbox(key="train_prefix").options == [
        "10 s prefix", sources.format_label(ANY_FORMAT)]
    data = workspace / "datasets" / "tiny_any.h5"
    run_dir = jobs.start_training(data, ANY_FORMAT, "anyformat", {"epochs": 1})
    argv, meta = launched[0]
    assert argv[argv.index("--prefix-length") + 1] == "any" and meta["prefix_length"] == "any"
    assert "-anyformat-any-" in run_dir.name
    fixed = generate_dataset(TINY, workspace / "datasets" / "fixed.h5", workers=1,
                             progress=False)
    with pytest.raises(EiKerasError, match="no any-format traces"):
        jobs.start_training(fixed, ANY_FORMAT, "anyformat")


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
    forecast = messages(at.markdown)
    assert "time to pH 8.5: median" in forecast or "not reached within 2000 s" in forecast
    assert "inf" not in forecast
    table = at.dataframe[0].value
    assert list(table["parameter"]) == [label("activity"), label("k_d")]
    assert np.isfinite(table["truth"]).all()


def test_dataset_uncertainty_honours_allow_extrapolation(workspace, tmp_path):
    """Cases outside the trained ranges: left out and counted, or scored and flagged."""
    model, data, prefix = hot_test_set(tmp_path)
    outside = prefix.known[:, list(prefix.known_names).index("temperature_C")] > 40.0
    n, k = len(outside), int(outside.sum())
    run = workspace / "runs" / "20200101-000000-improved-30s-hot000"
    run.mkdir(parents=True)
    shutil.copy(model, run / "best.keras")
    (run / "status.json").write_text(json.dumps({"kind": "train", "state": "finished"}))
    (run / "config.json").write_text("{}")
    (workspace / "datasets").mkdir()
    shutil.copy(data, workspace / "datasets" / "hot.h5")
    at = app("analyse")
    at.number_input(key="analyse_case").set_value(int(np.argmin(outside))).run()
    assert_clean(at)
    assert not at.checkbox(key="analyse_allow_extrapolation").value
    note = messages(at.info)
    assert f"{k} of the {n} cases have known inputs outside the ranges" in note
    assert "Temperature = " in note and "temperature_C" not in note
    assert f"(over {n - k} cases)." in messages(at.caption)
    at.checkbox(key="analyse_allow_extrapolation").check().run()
    assert_clean(at)
    assert f"{k} of the {n} cases are extrapolations" in messages(at.warning)
    coverage = messages(at.caption)
    assert f"(over {n} cases); within the trained ranges: " in coverage
    assert f"(over {n - k} cases)." in coverage


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
    upload_linear_trace(at, 20.0)
    assert_clean(at)
    # The dashboard passes the whole trace: the package refuses it for a 10 s fixed model.
    assert "the trace runs to 20 s" in messages(at.error)
    assert "analyse_attention_chart" not in chart_keys(at)
    upload_linear_trace(at, 10.0)
    assert_clean(at)
    assert {"analyse_attention_chart", "analyse_posterior_chart"} <= chart_keys(at)


def domain_text(at):
    """The domain report: the green "checked" line or the warning listing the flags."""
    return messages(at.success) + " | " + messages(at.warning)


def test_analyse_long_simulated_trace_with_an_any_format_model(workspace, any_format_run):
    install_trained(workspace, any_format_run)
    at = app("analyse")
    assert_clean(at)
    assert "any trace of 3 or more readings" in messages(at.caption)
    at.segmented_control(key="analyse_source").set_value("Simulate a run").run()
    at.number_input(key="analyse_sim_length").set_value(300.0).run()
    at.number_input(key="analyse_sim_interval").set_value(1.0).run()
    assert_clean(at)
    assert not at.error, messages(at.error)
    assert "301 readings over 300 s" in messages(at.caption)
    assert "Checked:" in domain_text(at)
    assert {"analyse_attention_chart", "analyse_posterior_chart",
            "analyse_forecast_chart"} <= chart_keys(at)
    # Beside the attention: one rank correlation per parameter.
    assert [metric.label for metric in at.metric] == ["ρ activity", "ρ k_d"]
    table = at.dataframe[0].value
    for _, row in table.iterrows():
        low, high = (float(v) for v in row["90 % interval"].split(" – "))
        assert low <= row["median"] <= high
    k_d = table[table["parameter"] == label("k_d")].iloc[0]
    assert float(k_d["95 % interval"].split(" – ")[0]) >= 0  # bounded: never below 0


def test_known_inputs_outside_the_training_ranges(workspace, any_format_run):
    install_trained(workspace, any_format_run)
    at = app("analyse")
    at.segmented_control(key="analyse_source").set_value("Simulate a run").run()
    at.number_input(key="analyse_sim_substrate_mM").set_value(500.0).run()
    assert_clean(at)
    error = messages(at.error)
    assert "Urea (substrate) = 500 mM is outside the range" in error
    assert "Allow extrapolation" in error and "allow_extrapolation=True" not in error
    assert "analyse_attention_chart" not in chart_keys(at)
    at.checkbox(key="analyse_allow_extrapolation").check().run()
    assert_clean(at)
    assert not at.error, messages(at.error)
    warning = messages(at.warning)
    assert "Read these before trusting the answer" in warning
    assert "Urea (substrate) = 500 mM is outside the range" in warning
    assert "extrapolation" in warning
    assert {"analyse_attention_chart", "analyse_forecast_chart"} <= chart_keys(at)


def test_a_csv_longer_than_the_trained_maximum_is_cut_by_the_package(workspace,
                                                                      any_format_run):
    install_trained(workspace, any_format_run)
    at = upload_saturating_trace(np.arange(0.0, 1201.0, 2.0))
    assert_clean(at)
    assert not at.error, messages(at.error)
    assert "601 readings over 1200 s" in messages(at.caption)
    assert "the trace runs to 1200 s; only its first" in messages(at.warning)
    assert "analyse_attention_chart" in chart_keys(at)


def test_a_csv_denser_than_trained_is_thinned_by_the_package_with_a_note(workspace,
                                                                         any_format_run):
    install_trained(workspace, any_format_run)  # trained on at most 400 readings
    at = upload_saturating_trace(np.arange(0.0, 300.05, 0.25))  # 1201 readings
    assert_clean(at)
    assert not at.error, messages(at.error)
    assert "Used one reading in 3 (401 of 1201)" in messages(at.info)
    assert "analyse_attention_chart" in chart_keys(at)


def test_any_format_dataset_traces(workspace, any_format_run):
    install_trained(workspace, any_format_run)
    at = app("analyse")
    assert at.selectbox(key="analyse_dataset").value == "tiny_any"
    assert at.selectbox(key="analyse_prefix").value == ANY_FORMAT
    at.number_input(key="analyse_case").set_value(5).run()
    assert_clean(at)
    assert not at.error, messages(at.error)
    data = cache.traces_cached(workspace / "datasets" / "tiny_any.h5", ANY_FORMAT)
    assert f"{int(data.lengths[5])} readings over" in messages(at.caption)
    assert {"analyse_attention_chart", "analyse_recovery_chart",
            "analyse_calibration_chart"} <= chart_keys(at)
    at.selectbox(key="analyse_prefix").set_value(10.0).run()
    assert_clean(at)
    assert "analyse_calibration_chart" in chart_keys(at)


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


def test_upload_limit_is_configured(monkeypatch):
    from ei_keras.inference.model_file import MAX_ARCHIVE_MB

    config = (ROOT / "dashboard" / ".streamlit" / "config.toml").read_text()
    assert f"maxUploadSize = {MAX_UPLOAD_MB}" in config
    assert "showEmailPrompt = false" in config  # else a first run with a display stops there
    assert MAX_UPLOAD_MB == MAX_ARCHIVE_MB
    monkeypatch.setattr("dashboard.workspace.MAX_UPLOAD_MB", 1)  # the check, not 256 MB
    with pytest.raises(EiKerasError, match="limit"):
        save_model_upload(b"PK" + b"0" * (1024 * 1024), "big.keras")


# The coloured box each verdict of the exact check is shown in.
VERDICT_BOXES = {"agrees": "success", "sharper": "info", "wider": "info", "shifted": "warning",
                 "unreliable": "error"}


def test_exact_check_shows_verdict_and_ess_once_per_trace(workspace, trained_run, monkeypatch):
    calls = []

    def refine(*args, **kwargs):  # the package's, counted and with fewer draws (fast)
        calls.append(1)
        return ei_keras.refine(*args, **dict(kwargs, n_samples=400))

    monkeypatch.setattr(analysis, "refine", refine)
    install_trained(workspace, trained_run)
    at = app("analyse")
    assert "few seconds" in messages(at.caption)
    assert "analyse_exact_chart" not in chart_keys(at)
    at.button(key="analyse_exact_button").click().run()
    assert_clean(at)
    assert len(calls) == 1 and "analyse_exact_chart" in chart_keys(at)
    check = at.session_state["analyse_exact_result"]["result"]
    assert set(check["exact"]) == set(check["network"]) == {"activity", "k_d"}
    box = messages(getattr(at, VERDICT_BOXES[check["verdict"]]))
    assert check["reason"] in box
    if check["verdict"] == "unreliable":
        assert "trust neither blindly" in box
    ess = next(metric for metric in at.metric if metric.label == "ESS")
    assert ess.value == f"{check['ess']:.0f}"
    at.run()  # a rerun shows the kept answer without computing it again
    assert len(calls) == 1 and "analyse_exact_chart" in chart_keys(at)
    at.number_input(key="analyse_case").set_value(1).run()  # another trace: forgotten
    assert_clean(at)
    assert "analyse_exact_result" not in at.session_state
    assert "analyse_exact_chart" not in chart_keys(at)


def test_exact_check_errors_and_verdict_boxes(workspace, trained_run, monkeypatch):
    install_trained(workspace, trained_run)
    outcome = {}

    def refine(model, t, pH, known, **kwargs):
        if "error" in outcome:
            raise outcome["error"]
        stats = {"median": 0.05, "mean": 0.05, "std": 0.01, "lo50": 0.045, "hi50": 0.055,
                 "lo90": 0.035, "hi90": 0.065, "lo95": 0.03, "hi95": 0.07}
        verdict = outcome["verdict"]
        return {"activity": stats, "k_d": stats, "network": {"activity": stats, "k_d": stats},
                "comparison": {name: {"verdict": verdict, "width_ratio": 1.0,
                                      "shift_sigma": 0.1, "shift_network_sigma": 0.1}
                               for name in ("activity", "k_d")},
                "ess": 42.0, "verdict": verdict, "reason": f"the reason for {verdict}",
                "diagnostics": {"n_draws": 2000, "noise_std": 0.01, "seconds": 0.5}}

    monkeypatch.setattr(analysis, "refine", refine)
    at = app("analyse")
    outcome["error"] = EiKerasError(
        "substrate_mM = 500 is outside the range the model was trained on (1–100). Pass "
        "allow_extrapolation=True (CLI: --allow-extrapolation) to get it anyway, flagged")
    at.button(key="analyse_exact_button").click().run()
    assert_clean(at)
    error = messages(at.error)
    assert "Cannot run the exact check: Urea (substrate) = 500 mM is outside" in error
    assert "Allow extrapolation" in error and "allow_extrapolation" not in error
    assert "analyse_exact_chart" not in chart_keys(at)
    assert "analyse_forecast_chart" in chart_keys(at)  # the rest of the page still runs
    outcome["error"] = np.linalg.LinAlgError("Singular matrix")
    at.button(key="analyse_exact_button").click().run()
    assert_clean(at)
    assert "the exact posterior could not be computed (LinAlgError: Singular matrix)" in \
        messages(at.error)
    del outcome["error"]
    for case, (verdict, kind) in enumerate(VERDICT_BOXES.items(), start=1):
        outcome["verdict"] = verdict
        at.number_input(key="analyse_case").set_value(case).run()
        at.button(key="analyse_exact_button").click().run()
        assert_clean(at)
        box = messages(getattr(at, kind))
        assert f"the reason for {verdict}" in box, (verdict, kind)
        assert ("trust neither blindly" in box) == (verdict == "unreliable")
        assert next(m for m in at.metric if m.label == "ESS").value == "42"


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
    started = jobs.generation_jobs()
    assert len(started) == 1 and started[0]["name"] == "tiny"
    job = wait_for(lambda: next((j for j in jobs.generation_jobs()
                                 if j["state"] != jobs.RUNNING), None), TIMEOUT, "generation")
    assert job["state"] == jobs.FINISHED, job["message"]
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
    run = wait_for(lambda: next((r for r in jobs.list_runs()
                                 if r["state"] != jobs.RUNNING), None), TIMEOUT, "training")
    assert run["state"] == jobs.FINISHED, run["message"]
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
    info = wait_for(lambda: next((c for c in comparisons.list_comparisons()
                                  if c["state"] != jobs.RUNNING), None), TIMEOUT, "compare")
    assert info["state"] == jobs.FINISHED, info["message"]
    at.run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert table["run"].tolist()[0] == "improved-10s" and len(table) == len(info["planned"])
    assert "compare_chart" in chart_keys(at)


def test_package_messages_in_dashboard_words():
    text = words.in_dashboard_words(
        "substrate_mM = 500 is outside the range the model was trained on (1–100); the answer "
        "would be an extrapolation. Pass allow_extrapolation=True (CLI: --allow-extrapolation) "
        "to get it anyway, flagged")
    assert text.startswith("Urea (substrate) = 500 mM is outside")
    assert text.endswith("Tick “Allow extrapolation” to get an answer anyway, flagged as one.")
    assert "say so with the “Time in minutes” switch" in words.in_dashboard_words(
        "if the times are in minutes, say so (CLI: --minutes)")
    assert words.in_dashboard_words(
        "the readings pin down k_d and tau_probe: their intervals come from the local fit"
    ).startswith("the readings pin down deactivation rate k_d and probe time constant: their")
    assert reading_times(300, 1.0)[-1] == 300
    assert len(reading_times(30, 30 / 99)) == 100
    fixed = {"any_format": False, "prefix_length": 30.0, "domain": None}
    dataset = {"any_format": True, "prefix_lengths": [10.0, 30.0, 60.0]}
    assert sources.dataset_formats(dataset, fixed) == [30.0, 10.0, ANY_FORMAT, 60.0]
    assert sources.dataset_formats(dataset, dict(fixed, any_format=True))[0] == ANY_FORMAT
    assert sources.simulation_defaults(fixed) == (30.0, 30 / 99)


# ---------------------------------------------------------------------------------------
# Live page (the shipped any-format model; AppTest reruns the page, so each run is a tick)
# ---------------------------------------------------------------------------------------

@pytest.fixture
def live_workspace(tmp_path, monkeypatch):
    """An empty workspace with the shipped model available, fresh caches."""
    if default_model() is None:
        pytest.skip("this ei_keras has no shipped model")
    root = tmp_path / "workspace"
    monkeypatch.setenv(WORKSPACE_ENV, str(root))
    st.cache_data.clear()
    st.cache_resource.clear()
    return root


def live_state(at):
    return at.session_state["live_run"]


def live_tick(at, pause=0.3):
    time.sleep(pause)
    at.run()
    assert_clean(at)
    return live_state(at)


def test_live_replay_grows_the_funnel_and_pause_stops_it(live_workspace):
    at = app("live")
    assert_clean(at)
    assert [title.value for title in at.title] == ["Live"]
    assert "press **Start**" in messages(at.info)
    at.slider(key="live_speed").set_value(20).run()
    at.button(key="live_start").click().run()
    assert_clean(at)
    assert not at.error, messages(at.error)
    sizes = []
    for _ in range(3):
        sizes.append(len(live_tick(at, 0.5)["live"].history))
    assert sizes[0] >= 1 and sizes[-1] > sizes[0]  # one update per tick: the funnel grows
    assert {"live_trace_chart", "live_funnel_chart"} <= chart_keys(at)
    assert "Running" in messages(at.markdown)

    at.button(key="live_pause").click().run()
    state = live_state(at)
    assert state["paused"] and at.button(key="live_pause").disabled
    held = (state["live"].n_readings, len(state["live"].history))
    for _ in range(2):
        state = live_tick(at, 0.7)
        assert (state["live"].n_readings, len(state["live"].history)) == held
    assert "Paused" in messages(at.markdown)

    at.button(key="live_resume").click().run()
    state = live_tick(at, 0.7)
    assert not state["paused"] and state["live"].n_readings > held[0]

    at.button(key="live_restart").click().run()
    assert_clean(at)
    assert live_state(at)["live"].n_readings < held[0]


def test_live_replay_runs_to_its_settled_point(live_workspace):
    at = app("live")
    # 10×: a tick (0.2 s of sleep plus the page's run, up to ~1.5 s on a busy machine) feeds
    # 2–15 s of the run, several updates per 60 s settle window. Updates 45 s or more apart
    # never let the rule see this run's answer hold still (LiveInference fed in chunks:
    # first settled at 114–229 s for 1–30 s chunks — the local fit keeps sharpening the
    # answer from 60 s on — never for 45 or 100 s); at 100×, and once at 20× in a
    # fresh-clone CI, slow ticks fed that much at once.
    at.slider(key="live_speed").set_value(10).run()
    at.button(key="live_start").click().run()
    deadline = time.monotonic() + 150
    while not live_state(at)["done"]:
        assert time.monotonic() < deadline, "the replay did not finish in 150 s"
        live_tick(at, 0.2)
    state = live_state(at)
    assert state["live"].n_readings == 301  # 300 s at one reading a second, all fed
    assert len(state["live"].history) >= 3  # one update per tick, a few readings each
    settled_at = state["result"]["settled_at"]
    assert settled_at is not None and 60 <= settled_at <= 300
    # Shown as a success only while the answer is settled (it may move again later on).
    shown = messages(at.success) if state["result"]["settled"] else messages(at.info)
    assert f"Settled at t = {settled_at:g} s" in shown
    live = state["live"]
    table = live.history_table()
    # The funnel narrowed: the whole run's answer is sharper than the first 20 s gave (the
    # first update's length depends on the machine's speed, so it is not the reference).
    early = ei_keras.infer(live.model, live.t[:21], live.pH[:21], live.known)["activity"]
    assert (table["activity_hi90"][-1] / table["activity_lo90"][-1]
            < early["hi90"][0] / early["lo90"][0])
    assert at.button(key="live_resume").disabled and at.button(key="live_pause").disabled


def test_a_pause_waits_for_the_update_in_flight_on_another_thread(monkeypatch):
    """Streamlit ran the Live page's ticking fragment on one thread while the Pause click's
    rerun ran on another: the page said "Paused, 10 readings", then the update in flight
    landed and it said 14. The run's lock makes the pause wait for that update."""
    if default_model() is None:
        pytest.skip("this ei_keras has no shipped model")
    midpoints = prior_midpoints()
    known = {name: midpoints[name] for name in KNOWN_NAMES}
    trace = simulated_trace(known, midpoints, 60.0, 1.0)
    state = live_session.live_start(cache.get_model(default_model()), trace["known"],
                                    trace=trace, speed=100.0, now=0.0)
    entered, release = threading.Event(), threading.Event()
    update = state["live"].update

    def held_update(t, pH):
        entered.set()
        release.wait(30)
        return update(t, pH)

    monkeypatch.setattr(state["live"], "update", held_update)
    ticker = threading.Thread(target=live_session.live_tick, args=(state,), kwargs={"now": 0.3})
    ticker.start()
    assert entered.wait(30)
    pauser = threading.Thread(target=live_session.live_pause, args=(state,), kwargs={"now": 0.3})
    pauser.start()
    pauser.join(0.5)
    assert pauser.is_alive() and not state["paused"]  # waiting for the update in flight
    release.set()
    ticker.join(30)
    pauser.join(30)
    assert state["paused"] and state["live"].n_readings == 31  # 30 s played at 100x
    assert not live_session.live_tick(state, now=5.0)  # and nothing after the pause
    assert state["live"].n_readings == 31


def test_live_random_prior_draw_and_dataset_trace(live_workspace):
    at = app("live")
    at.toggle(key="live_sim_random").set_value(True).run()
    assert "Drawn:" in messages(at.caption)
    at.number_input(key="live_sim_length").set_value(60.0).run()
    at.slider(key="live_speed").set_value(100).run()
    at.button(key="live_start").click().run()
    assert_clean(at)
    while not live_state(at)["done"]:
        live_tick(at, 0.3)
    assert live_state(at)["live"].n_readings == 61

    at.segmented_control(key="live_source").set_value("From a dataset").run()
    assert_clean(at)
    at.button(key="live_start").click().run()
    state = live_tick(at, 0.5)
    assert state["settings"]["trace"]["source"].startswith(cache.DEMO_NAME)
    assert state["live"].n_readings >= 3 and state["result"] is not None


def test_live_follows_a_growing_csv(live_workspace, tmp_path):
    log = tmp_path / "logger.csv"
    at = app("live")
    at.segmented_control(key="live_source").set_value("Follow a growing CSV file").run()
    assert at.button(key="live_start").disabled  # no path yet
    at.text_input(key="live_follow_path").set_value(str(log)).run()
    at.button(key="live_start").click().run()
    assert_clean(at)
    assert "Waiting for the file" in messages(at.info)

    trace = simulated_trace(prior_midpoints(), prior_midpoints(),
                                     120.0, 1.0)
    rows = [f"{t:g},{pH:.4f}\n" for t, pH in zip(trace["t"], trace["pH"])]
    log.write_text("time_s,pH\n" + "".join(rows[:40]) + "oops,line\n" + rows[40][:3])
    state = live_tick(at)
    assert state["live"].n_readings == 40 and len(state["live"].history) == 1
    assert "line 42 skipped" in messages(at.caption)
    with log.open("a") as handle:  # the partial line completed, and more
        handle.write(rows[40][3:] + "".join(rows[41:80]))
    state = live_tick(at)
    assert state["live"].n_readings == 80 and len(state["live"].history) == 2
    assert {"live_trace_chart", "live_funnel_chart"} <= chart_keys(at)

    log.write_text("time_s,pH\n" + "".join(rows[:10]))  # a new run in the same file
    state = live_tick(at)
    assert state["live"].n_readings == 10
    assert "starting over" in messages(at.caption)


# ---------------------------------------------------------------------------------------
# What a new user tripped over
# ---------------------------------------------------------------------------------------

def fake_dataset(name, n_samples, seed):
    return {"name": name, "n_samples": n_samples, "seed": seed}


def test_training_defaults_to_the_largest_set_not_named_or_used_as_a_test_set(workspace):
    datasets = [fake_dataset("test30", 6000, 2), fake_dataset("fresh", 600, 5),
                fake_dataset("demo", 2000, 0)]  # newest first
    assert comparisons.training_choice(datasets) == 2
    assert comparisons.training_choice(datasets[:1]) == 0  # a test set if there is nothing else
    assert comparisons.looks_like_test_set(fake_dataset("heldout", 10, 1))
    assert comparisons.looks_like_test_set(fake_dataset("fresh", 10, 1), used_for_testing={"fresh"})


def test_starting_a_run_shows_it(workspace, monkeypatch):
    def launch(argv, job_dir, log, meta):
        (job_dir / jobs.LAUNCH_FILE).write_text(json.dumps(dict(meta, pid=999999999,
                                                                started=time.time())))
    monkeypatch.setattr(jobs, "launch", launch)
    old = workspace / "runs" / "20200101-000000-improved-30s-old000"
    old.mkdir(parents=True)
    (old / "config.json").write_text("{}")
    at = app("train")
    assert at.selectbox(key="train_view").value == old.name
    at.button(key="train_start").click().run()
    assert_clean(at)
    new = at.selectbox(key="train_view").value
    assert new == max(d.name for d in (workspace / "runs").iterdir()) != old.name
    assert new in messages(at.markdown)  # the run panel's heading


def test_analyse_messages_name_the_controls_the_user_sees(workspace, any_format_run):
    install_trained(workspace, any_format_run)
    at = app("analyse")
    at.segmented_control(key="analyse_source").set_value("Simulate a run").run()
    at.number_input(key="analyse_sim_temperature_C").set_value(-30.0).run()
    error = messages(at.error)
    assert "Temperature" in error and "-30" in error
    assert "temperature_C" not in error and "case 0" not in error and "np.float" not in error
    at.segmented_control(key="analyse_source").set_value("Upload a CSV").run()
    at.file_uploader(key="analyse_csv").upload("odd.csv", b"when,what\n1,7\n2,7.1\n3,7.2\n",
                                               "text/csv")
    at.run()
    assert "which column" in messages(at.error) and "--" not in messages(at.error)
    t = np.arange(0.0, 31.0, 10.0)  # a 30 s trace, read as minutes by mistake
    rows = "".join(f"{a:g},{7 + 0.01 * a:.3f}\n" for a in t)
    at.file_uploader(key="analyse_csv").set_value(("short.csv", f"time,pH\n{rows}".encode(),
                                                   "text/csv"))
    at.toggle(key="analyse_csv_minutes").set_value(True).run()
    assert_clean(at)
    assert "With “Time in minutes” on, the 4 readings span 1800 s" in messages(at.warning)
    assert "switch “Time in minutes” off" in messages(at.warning)

