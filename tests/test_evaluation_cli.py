"""``ei-keras evaluate`` and ``ei-keras infer`` end to end on a tiny saved model."""

import json
import subprocess
import sys

import numpy as np
import pytest

import ei_keras
from ei_keras.cli import main
from tiny_test_set import tiny_test_set


def cli(*args):
    return subprocess.run([sys.executable, "-m", "ei_keras.cli", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    return (folder, *tiny_test_set(folder, 24, 11))


def test_evaluate_writes_metrics_and_report(tiny):
    folder, data, _ = tiny
    out = folder / "report"
    result = cli("evaluate", "--model", str(folder / "model.keras"), "--data", str(data),
                 "--out", str(out), "--n-forecast", "4", "--n-baseline", "3", "--no-progress")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == 24 and metrics["data_seed"] == 11
    for name in ("activity", "k_d"):
        entry = metrics["parameters"][name]
        assert {"mae", "rmse", "r2", "nll", "crps", "coverage90"} <= set(entry["model"])
        assert {"mae", "rmse", "r2"} <= set(entry["least_squares_subset"])
    assert {"rmse", "rmse_at_300s", "rmse_at_1000s", "rmse_at_2000s"} <= set(
        metrics["forecast"]["model"])
    report = (out / "report.html").read_text()
    assert report.count("plotly-graph-div") >= 4 and "seed 11" in report


def test_infer_cli_reads_a_csv_and_writes_json(tiny, tmp_path):
    folder, _, prefix = tiny
    csv = tmp_path / "trace.csv"
    rows = "\n".join(f"{t / 60:.6f},{p:.4f}" for t, p in zip(prefix.t[0], prefix.pH[0]))
    csv.write_text("Time (min),pH\n" + rows + "\n")
    known = dict(zip(prefix.known_names, prefix.known[0].astype(float).tolist()))
    out = tmp_path / "result.json"
    result = cli("infer", "--model", str(folder / "model.keras"), "--csv", str(csv), "--minutes",
                 "--known", json.dumps(known), "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "activity" in result.stdout and "time to pH 8.5" in result.stdout or \
        "not reached" in result.stdout
    saved = json.loads(out.read_text())
    assert saved["activity"]["lo90"] <= saved["activity"]["median"] <= saved["activity"]["hi90"]
    assert len(saved["attention"]) == prefix.t.shape[1]


@pytest.mark.parametrize("content, message", [
    ("time,pH\n0,7.0\n2,7.1\n1,7.2\n", "increase"),
    ("time,pH\n0,7.0\n1,nan\n2,7.2\n", "NaN"),
    ("a,b\n0,7.0\n1,7.1\n2,7.2\n", "which column"),
    ("time,pH\n0,7.0\n600,7.1\n1200,7.2\n", "trained on prefixes of 30 s"),
])
def test_infer_cli_bad_traces_give_one_line_errors(tiny, tmp_path, capsys, content, message):
    folder, _, _ = tiny
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    status = main(["infer", "--model", str(folder / "model.keras"), "--csv", str(csv),
                   "--substrate-mM", "30", "--grams", "0.1", "--volume-L", "0.5",
                   "--temperature-C", "30", "--initial-pH", "7.0"])
    stderr = capsys.readouterr().err
    assert status == 2
    assert message in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
