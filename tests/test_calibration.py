"""ei-keras calibrate: one factor per parameter on the posterior σ, fitted on held-out
traces, so the 90 % intervals that ``infer`` gives hold 90 % of the truths; saved in the
model and read back by a fresh process."""

import json
import subprocess
import sys

import numpy as np
import pytest

import ei_keras
from ei_keras.errors import EiKerasError
from ei_keras.models import model_info
from ei_keras.evaluation.calibration import calibrate
from ei_keras.targets import forward_transform
from tiny_test_set import tiny_test_set


def cli(*args):
    return subprocess.run([sys.executable, "-m", "ei_keras.cli", *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration")
    path, data = tiny_test_set(folder, 600, seed=5)
    return folder, path, data


def interval_coverage_by_infer(model, data, level=90):
    """Share of truths inside ``infer``'s central interval, and the interval widths in
    the trained space (log10, logit)."""
    result = ei_keras.infer(model, data.t, data.pH, dict(zip(data.known_names, data.known.T)),
                            check_fit=False)
    info = model_info(ei_keras.inference.load_model(model))
    inside, widths = [], {}
    for j, name in enumerate(data.target_names):
        truth = data.targets[:, j]
        low, high = result[name][f"lo{level}"], result[name][f"hi{level}"]
        inside.append((low <= truth) & (truth <= high))
        space = info["transforms"][j], info["bounds"][j]
        widths[name] = forward_transform(*space[:1], high, space[1]) - forward_transform(
            *space[:1], low, space[1])
    return [float(np.mean(hit)) for hit in inside], widths, result


def test_calibrated_intervals_hold_90_percent_of_the_truths(held_out, tmp_path):
    folder, path, data = held_out
    model = folder / "model.keras"
    out = tmp_path / "calibrated.keras"
    done = cli("calibrate", "--model", model, "--data", path, "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "activity" in done.stdout and f"wrote {out}" in done.stdout
    before, widths_before, raw = interval_coverage_by_infer(model, data)
    after, widths_after, calibrated = interval_coverage_by_infer(out, data)
    report = calibrate(model, path, tmp_path / "again.keras")
    for j, name in enumerate(data.target_names):
        entry = report["parameters"][name]
        # the report's coverage is what infer's intervals give, before and after
        assert entry["before"]["coverage90"] == pytest.approx(before[j], abs=2 / 600)
        assert after[j] == pytest.approx(0.90, abs=2 / 600)
        assert entry["after"]["coverage90"] == pytest.approx(after[j], abs=2 / 600)
        # the medians stay; the width scales by the factor
        np.testing.assert_allclose(calibrated[name]["median"], raw[name]["median"], rtol=1e-9)
        np.testing.assert_allclose(widths_after[name] / widths_before[name],
                                   entry["std_scale"], rtol=1e-4)
    assert abs(report["parameters"]["activity"]["std_scale"] - 1) > 0.01  # untrained: not 1
    # a fresh process reads the factors and what they were fitted on from the file
    probe = subprocess.run([sys.executable, "-c", (
        "import json, sys, ei_keras\nfrom ei_keras.models import model_info, target_codec\n"
        "m = ei_keras.inference.load_model(sys.argv[1])\n"
        "print(json.dumps([target_codec(m).std_scale, "
        "model_info(m)['run_config']['calibration']['n']]))"), str(out)],
        capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[-2000:]
    scales, n = json.loads(probe.stdout.splitlines()[-1])
    assert scales == pytest.approx([report["parameters"][name]["std_scale"]
                                    for name in data.target_names])
    assert n == 600


def test_too_few_traces_or_overwriting_the_model_is_refused(held_out, tmp_path):
    folder, path, _ = held_out
    small, _ = tiny_test_set(tmp_path, 40, seed=6)
    with pytest.raises(EiKerasError, match="at least 500 held-out traces"):
        calibrate(folder / "model.keras", small, tmp_path / "out.keras")
    assert not (tmp_path / "out.keras").exists()
    done = cli("calibrate", "--model", folder / "model.keras", "--data", path,
               "--out", folder / "model.keras")
    assert done.returncode == 2 and "is the model itself" in done.stderr
