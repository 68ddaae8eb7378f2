"""``ei-keras evaluate`` and ``ei-keras infer`` end to end on a tiny saved model."""

import json
import subprocess
import sys

import numpy as np
import pytest

import ei_keras
from ei_keras.cli import main
from tiny_test_set import hot_test_set, tiny_test_set


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


def test_evaluate_leaves_out_extrapolations_unless_allowed_and_counts_them(tmp_path, capsys):
    model, data, prefix = hot_test_set(tmp_path)
    outside = prefix.known[:, list(prefix.known_names).index("temperature_C")] > 40.0
    n, k = len(outside), int(outside.sum())
    args = ["evaluate", "--model", str(model), "--data", str(data), "--n-forecast", "2",
            "--n-baseline", "1", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "default")]) == 0
    assert f"left out {k} traces with known inputs outside" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "default" / "metrics.json").read_text())
    assert metrics["n_test"] == n - k
    assert (metrics["domain"]["n_left_out"], metrics["domain"]["n_extrapolated"]) == (k, 0)
    assert "model_within_ranges" not in metrics["parameters"]["activity"]

    assert main([*args, "--out", str(tmp_path / "allowed"), "--allow-extrapolation"]) == 0
    assert f"{k} of {n} answers are extrapolations" in capsys.readouterr().out
    flagged = json.loads((tmp_path / "allowed" / "metrics.json").read_text())
    assert flagged["n_test"] == n
    assert (flagged["domain"]["n_left_out"], flagged["domain"]["n_extrapolated"]) == (0, k)
    for name in ("activity", "k_d"):  # the others alone: as scored without the flag
        assert flagged["parameters"][name]["model_within_ranges"]["coverage90"] == \
            pytest.approx(metrics["parameters"][name]["model"]["coverage90"])


def test_exact_check_leaves_out_extrapolations_unless_allowed(tmp_path):
    from ei_keras.evaluation.exact import exact_check

    model, data, prefix = hot_test_set(tmp_path)
    n = 6
    outside = prefix.known[:n, list(prefix.known_names).index("temperature_C")] > 40.0
    assert 0 < outside.sum() < n  # the seed gives both kinds among the first traces
    common = dict(prefix_length=30, n_samples=200, forecast=False)
    kept = exact_check(model, data, n, **common)
    assert [trace["row"] for trace in kept["traces"]] == np.flatnonzero(~outside).tolist()
    assert kept["n"] == n - outside.sum() and kept["domain"]["n_left_out"] == outside.sum()
    allowed = exact_check(model, data, n, allow_extrapolation=True, **common)
    assert [trace["extrapolated"] for trace in allowed["traces"]] == outside.tolist()
    assert allowed["domain"]["n_extrapolated"] == outside.sum()


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


@pytest.mark.parametrize("known, named", [
    ({"substrate_mm": 30}, "'substrate_mm'"),  # misspelt: named, not reported as missing
    ({"substrate_mM": 30, "colour": "blue"}, "'colour'"),
])
def test_infer_cli_refuses_unknown_known_keys_naming_them(tiny, tmp_path, capsys, known, named):
    folder, _, _ = tiny
    csv = tmp_path / "trace.csv"
    csv.write_text("time,pH\n0,7.0\n1,7.1\n2,7.2\n")
    status = main(["infer", "--model", str(folder / "model.keras"), "--csv", str(csv),
                   "--known", json.dumps(known)])
    stderr = capsys.readouterr().err
    assert status == 2 and named in stderr
    assert "substrate_mM, grams_urease_powder, volume_L, temperature_C, initial_pH" in stderr


def test_infer_cli_cuts_a_long_trace_as_the_package_does_and_says_so(tmp_path, capsys):
    t = np.arange(0.0, 1201.0, 2.0)
    csv = tmp_path / "long.csv"
    csv.write_text("time,pH\n" + "".join(f"{a:g},{7 + 1.5 * (1 - np.exp(-a / 400)):.4f}\n"
                                         for a in t))
    status = main(["infer", "--csv", str(csv), "--substrate-mM", "30", "--grams", "0.2",
                   "--volume-L", "0.5", "--temperature-C", "30", "--initial-pH", "7.0"])
    out = capsys.readouterr().out
    assert status in (0, None), out
    assert "601 readings over 1200 s" in out and "domain: FLAGGED" in out
    assert "the trace runs to 1200 s; only its first" in out
    assert "k_d [1/s]" in out and "] 1/s" in out  # values with their units
    assert "inf" not in out.replace("information", "")


def test_infer_cli_sharpens_a_long_trace_unless_asked_for_the_network_alone(tmp_path, capsys):
    from ei_keras.inference.traces import simulated_trace

    known = dict(substrate_mM=30.0, grams_urease_powder=0.2, volume_L=0.5, temperature_C=30.0,
                 initial_pH=7.02)
    run = simulated_trace(known, dict(activity=0.05, k_d=1e-3, tau_probe=5.0, pH_offset=0.02),
                          600.0, 1.0, noise_std=0.01, seed=0)
    csv = tmp_path / "run.csv"
    csv.write_text("time,pH\n" + "".join(f"{a:g},{b:.4f}\n" for a, b in zip(run["t"], run["pH"])))
    flags = ["infer", "--csv", str(csv), "--substrate-mM", "30", "--grams", "0.2",
             "--volume-L", "0.5", "--temperature-C", "30", "--initial-pH", "7.02"]
    widths = {}
    for label, extra in (("default", []), ("network", ["--network-only"])):
        out_json = tmp_path / f"{label}.json"
        assert main([*flags, *extra, "--json", str(out_json)]) in (0, None)
        printed = capsys.readouterr().out
        result = json.loads(out_json.read_text())
        assert ("note: the readings pin down" in printed) == (label == "default")
        assert bool(result["domain"]["sharpened"]) == (label == "default")
        widths[label] = result["k_d"]["hi90"] - result["k_d"]["lo90"]
    assert widths["default"] < 0.8 * widths["network"]
