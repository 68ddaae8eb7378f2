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
# The same with traces of every length (5–600 s) and reading interval (0.5–10 s).
TINY_ANY = dict(TINY, any_format={"enabled": True, "prefix_length_s": [5.0, 600.0],
                                  "reading_interval_s": [0.5, 10.0], "max_readings": 400})


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
    for key in ("data_adaptive", "data_add_noise", "data_probe_lag", "data_offset",
                "data_any_format"):
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
    assert set(at.radio(key="train_preset").options) == set(services.presets()) >= {
        "improved", "baseline"}
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


def test_any_format_training_is_offered_and_launched(workspace, any_format_run, monkeypatch):
    launched = []
    monkeypatch.setattr(services, "_launch", lambda argv, job_dir, log, meta: launched.append(
        (argv, meta)))
    install_trained(workspace, any_format_run)
    at = app("train")
    assert_clean(at)
    assert at.selectbox(key="train_prefix").options == [
        "10 s prefix", services.format_label(services.ANY_FORMAT)]
    data = workspace / "datasets" / "tiny_any.h5"
    run_dir = services.start_training(data, services.ANY_FORMAT, "anyformat", {"epochs": 1})
    argv, meta = launched[0]
    assert argv[argv.index("--prefix-length") + 1] == "any" and meta["prefix_length"] == "any"
    assert "-anyformat-any-" in run_dir.name
    fixed = generate_dataset(TINY, workspace / "datasets" / "fixed.h5", workers=1,
                             progress=False)
    with pytest.raises(services.EiKerasError, match="no any-format traces"):
        services.start_training(fixed, services.ANY_FORMAT, "anyformat")


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
    # The dashboard passes the whole trace: the package refuses it for a 10 s fixed model.
    assert "the trace runs to 20 s" in messages(at.error)
    assert "analyse_attention_chart" not in chart_keys(at)
    t = np.linspace(0, 10, 41)
    rows = "\n".join(f"{a:g},{7 + 0.05 * a:.4f}" for a in t)
    at.file_uploader(key="analyse_csv").set_value(
        ("trace.csv", f"time,pH\n{rows}\n".encode(), "text/csv"))
    at.run()
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
    k_d = table[table["parameter"] == services.label("k_d")].iloc[0]
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
    at = app("analyse")
    at.segmented_control(key="analyse_source").set_value("Upload a CSV").run()
    t = np.arange(0.0, 1201.0, 2.0)
    rows = "\n".join(f"{a:g},{7 + 1.5 * (1 - np.exp(-a / 400)):.4f}" for a in t)
    at.file_uploader(key="analyse_csv").upload("long.csv", f"time,pH\n{rows}\n".encode(),
                                                "text/csv")
    at.run()
    assert_clean(at)
    assert not at.error, messages(at.error)
    assert "601 readings over 1200 s" in messages(at.caption)
    assert "the trace runs to 1200 s; only its first" in messages(at.warning)
    assert "analyse_attention_chart" in chart_keys(at)


def test_any_format_dataset_traces(workspace, any_format_run):
    install_trained(workspace, any_format_run)
    at = app("analyse")
    assert at.selectbox(key="analyse_dataset").value == "tiny_any"
    assert at.selectbox(key="analyse_prefix").value == services.ANY_FORMAT
    at.number_input(key="analyse_case").set_value(5).run()
    assert_clean(at)
    assert not at.error, messages(at.error)
    data = services.load_any_format_cached(workspace / "datasets" / "tiny_any.h5")
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
    assert f"maxUploadSize = {services.MAX_UPLOAD_MB}" in config
    assert services.MAX_UPLOAD_MB == MAX_ARCHIVE_MB
    monkeypatch.setattr(services, "MAX_UPLOAD_MB", 1)  # the check, without 256 MB of bytes
    with pytest.raises(services.EiKerasError, match="limit"):
        services.save_upload(b"PK" + b"0" * (1024 * 1024), "big.keras")


# The coloured box each verdict of the exact check is shown in.
VERDICT_BOXES = {"agrees": "success", "sharper": "info", "wider": "info", "shifted": "warning",
                 "unreliable": "error"}


def test_exact_check_shows_verdict_and_ess_once_per_trace(workspace, trained_run, monkeypatch):
    calls = []

    def refine(*args, **kwargs):  # the package's, counted and with fewer draws (fast)
        calls.append(1)
        return services.ei_keras.refine(*args, **dict(kwargs, n_samples=400))

    monkeypatch.setattr(services, "refine", refine)
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

    monkeypatch.setattr(services, "refine", refine)
    at = app("analyse")
    outcome["error"] = services.EiKerasError(
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
    t = np.arange(10.0)
    attention = np.r_[np.full(8, 1 / 8), 0, 0]  # the last two readings were cut
    information = {"activity": np.linspace(1, 4, 8), "k_d": np.linspace(0, 9, 8)}
    figure = figures.attention_figure(t, 7 + 0.1 * t, attention, information,
                                      {"activity": 0.5, "k_d": float("nan")}, used=8)
    lines = {trace.name: trace for trace in figure.data if trace.xaxis == "x2"}
    assert set(lines) == {"attention (scaled)", "activity information (ρ = 0.50 with attention)",
                          "k_d [1/s] information (ρ n/a with attention)"}
    assert all(max(trace.y) == 1 and len(trace.x) == 8 for trace in lines.values())
    assert len(figure.layout.shapes) == 2  # the unread readings shaded in both panels
    assert len(figures.attention_figure(t, t, attention).data) == 2


def test_exact_figure_overlays_both_posteriors():
    exact = {"activity": {"median": 0.05, "lo50": 0.045, "hi50": 0.055, "lo90": 0.04,
                          "hi90": 0.06},
             "k_d": {"median": 1e-3, "lo50": 8e-4, "hi50": 1.2e-3, "lo90": 5e-4, "hi90": 2e-3}}
    network = {"activity": dict(exact["activity"], lo90=0.01, hi90=0.2), "k_d": exact["k_d"]}
    figure = figures.exact_figure(network, exact, {"activity": 0.05, "k_d": None})
    assert figure.layout.xaxis.type == "log" and figure.layout.xaxis2.type != "log"
    names = {trace.name for trace in figure.data if trace.showlegend}
    assert names == {f"{who}: {what}" for who in ("network", "exact")
                     for what in ("50 % interval", "90 % interval", "median")} | {"truth"}
    wide = next(trace for trace in figure.data if trace.name == "network: 90 % interval")
    assert tuple(wide.x) == (0.01, 0.2) and wide.xaxis == "x"


def test_package_messages_in_dashboard_words():
    text = services.in_dashboard_words(
        "substrate_mM = 500 is outside the range the model was trained on (1–100); the answer "
        "would be an extrapolation. Pass allow_extrapolation=True (CLI: --allow-extrapolation) "
        "to get it anyway, flagged")
    assert text.startswith("Urea (substrate) = 500 mM is outside")
    assert text.endswith("Tick “Allow extrapolation” to get an answer anyway, flagged as one.")
    assert "say so with the “Time in minutes” switch" in services.in_dashboard_words(
        "if the times are in minutes, say so (CLI: --minutes)")
    assert services.reading_times(300, 1.0)[-1] == 300
    assert len(services.reading_times(30, 30 / 99)) == 100
    fixed = {"any_format": False, "prefix_length": 30.0, "domain": None}
    dataset = {"any_format": True, "prefix_lengths": [10.0, 30.0, 60.0]}
    assert services.dataset_formats(dataset, fixed) == [30.0, 10.0, services.ANY_FORMAT, 60.0]
    assert services.dataset_formats(dataset, dict(fixed, any_format=True))[0] == services.ANY_FORMAT
    assert services.simulation_defaults(fixed) == (30.0, 30 / 99)


# ---------------------------------------------------------------------------------------
# Live page (the shipped any-format model; AppTest reruns the page, so each run is a tick)
# ---------------------------------------------------------------------------------------

@pytest.fixture
def live_workspace(tmp_path, monkeypatch):
    """An empty workspace with the shipped model available, fresh caches."""
    if services.default_model() is None:
        pytest.skip("this ei_keras has no shipped model")
    root = tmp_path / "workspace"
    monkeypatch.setenv(services.WORKSPACE_ENV, str(root))
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
    at.slider(key="live_speed").set_value(100).run()
    at.button(key="live_start").click().run()
    deadline = time.monotonic() + 90
    while not live_state(at)["done"]:
        assert time.monotonic() < deadline, "the replay did not finish in 90 s"
        live_tick(at, 0.2)
    state = live_state(at)
    assert state["live"].n_readings == 301  # 300 s at one reading a second, all fed
    assert len(state["live"].history) >= 3  # one update per tick, a few readings each
    settled_at = state["result"]["settled_at"]
    assert settled_at is not None and 60 <= settled_at <= 300
    assert f"Settled at t = {settled_at:g} s" in messages(at.success)
    table = state["live"].history_table()
    width = table["activity_hi90"] / table["activity_lo90"]
    assert width[-1] < width[0]  # the funnel narrowed
    assert at.button(key="live_resume").disabled and at.button(key="live_pause").disabled


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
    assert state["settings"]["trace"]["source"].startswith(services.DEMO_NAME)
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

    trace = services.simulated_trace(services.prior_midpoints(), services.prior_midpoints(),
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


def test_live_figures_build_from_plain_data():
    t = np.arange(0.0, 30.0)
    grid = np.linspace(0, 100, 21)
    fan = {"t": grid, "median": 7 + grid / 50, "lo": 7 + grid / 60, "hi": 7 + grid / 40,
           "threshold": 8.5}
    figure = figures.live_trace_figure(t, 7 + t / 50, fan, np.full(30, 1 / 30), settled_at=20.0)
    names = {trace.name for trace in figure.data}
    assert {"readings", "forecast median", "forecast 90 % band", "attention"} <= names
    assert min(next(tr for tr in figure.data if tr.name == "forecast median").x) >= 25
    assert "settled at t = 20 s" in figure.layout.title.text
    history = {"elapsed_s": np.array([10.0, 20.0]), "activity_lo90": np.array([0.01, 0.02]),
               "activity_hi90": np.array([0.1, 0.05]), "activity_median": np.array([0.03] * 2),
               "k_d_lo90": np.zeros(2), "k_d_hi90": np.ones(2), "k_d_median": np.ones(2) / 2,
               "time_to_threshold_lo": np.array([100.0, 120.0]),
               "time_to_threshold_hi": np.array([np.inf, 300.0]),
               "time_to_threshold_median": np.array([500.0, 200.0])}
    figure = figures.live_funnel_figure(history, 8.5, {"activity": 0.03, "k_d": 0.5}, 20.0)
    assert figure.layout.yaxis.type == "log"
    hi = [tr for tr in figure.data if tr.yaxis == "y3"][0].y
    assert np.isnan(hi[0]) and hi[1] == 300.0  # "not reached" is a gap, not infinity
