"""Any-format end to end on tiny data, through the installed CLI: generate → train on every
length and rate → evaluate per format cell → infer a trace of its own format."""

import json
import subprocess
import sys

import numpy as np
import pytest

import ei_keras
from ei_keras.data import load_any_format


def cli(*args, cwd):
    done = subprocess.run([sys.executable, "-m", "ei_keras.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("anyformat")
    common = ["--infer-params", "activity", "k_d", "tau_probe", "pH_offset", "--any-format",
              "--prefix-lengths", "--no-progress", "--workers", "1"]
    cli("generate", "--out", root / "train.h5", "--n-samples", 300, "--seed", 11,
        "--prefix-range", 2, 120, "--interval-range", 0.2, 5, *common, cwd=root)
    cli("generate", "--out", root / "test.h5", "--n-samples", 120, "--seed", 12,
        "--format-grid", "--prefix-range", 10, 60, "--interval-range", 0.3, 2, *common, cwd=root)
    cli("train", "--data", root / "train.h5", "--prefix-length", "any", "--preset", "anyformat",
        "--epochs", 2, "--out", root / "run", cwd=root)
    return root


@pytest.mark.backend
def test_training_on_every_format_records_the_domain(trained):
    config = json.loads((trained / "run" / "config.json").read_text())
    assert config["data"]["prefix_length"] == "any"
    domain = config["normalization"]["domain"]
    data = load_any_format(trained / "train.h5")
    assert domain["prefix_length_s"][1] == pytest.approx(float(np.nanmax(data.t)), rel=1e-6)
    assert domain["readings"] == [int(data.lengths.min()), int(data.lengths.max())]
    assert domain["param_ranges"]["substrate_mM"] == [1.0, 100.0]
    history = [json.loads(line) for line in (trained / "run" / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1, 2]


@pytest.mark.backend
def test_evaluate_reports_every_format_cell(trained):
    out = cli("evaluate", "--model", trained / "run" / "best.keras", "--data", trained / "test.h5",
              "--out", trained / "evaluation", "--n-forecast", 8, "--n-baseline", 2,
              "--no-progress", cwd=trained)
    metrics = json.loads((trained / "evaluation" / "metrics.json").read_text())
    cells = {(c["prefix_length_s"], c["reading_interval_s"]) for c in metrics["by_format"]}
    assert cells == {(10.0, 0.3), (10.0, 2.0), (60.0, 0.3), (60.0, 2.0)}
    assert sum(c["n"] for c in metrics["by_format"]) == 120
    for cell in metrics["by_format"]:
        for scores in cell["parameters"].values():
            assert 0 <= scores["coverage90"] <= 1 and scores["rmse"] >= 0
    assert set(metrics["attention_information"]["median_spearman"]) == {
        "activity", "k_d", "tau_probe", "pH_offset", "all"}
    assert "every 0.3 s" in out and "By trace format" in (
        trained / "evaluation" / "report.html").read_text()


@pytest.mark.backend
def test_a_trained_any_format_model_answers_inside_physics(trained):
    data = load_any_format(trained / "test.h5")
    row = int(np.argmax(data.lengths))
    valid = np.isfinite(data.t[row])
    known = dict(zip(data.known_names, data.known[row].astype(float)))
    result = ei_keras.infer(trained / "run" / "best.keras", data.t[row, valid],
                            data.pH[row, valid], known)
    for name, (low, high) in {"k_d": (0, 5e-3), "tau_probe": (0, 30),
                              "pH_offset": (-0.1, 0.1)}.items():
        assert low < result[name]["lo95"][0] < result[name]["hi95"][0] < high
    assert {"ok", "flags", "checked"} <= set(result["domain"])
    fan = ei_keras.forecast(trained / "run" / "best.keras", data.t[row, valid],
                            data.pH[row, valid], known, n_draws=20, n_times=51)[0]
    assert np.all(np.isfinite(fan["median"])) and "domain" in fan
