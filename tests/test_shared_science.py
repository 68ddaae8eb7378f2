"""The science the dashboard shows comes from the package: the dataset preview is the
generator's own output, the calibration on a dataset is the evaluation's, traces are
built by one module."""

import dataclasses
import json

import numpy as np
import pytest

import ei_keras
from ei_keras.data import load_prefix, load_trajectories, preview
from ei_keras.errors import EiKerasError
from ei_keras.evaluation.evaluate import evaluate, evaluate_dataset, extrapolation_rows
from ei_keras.inference import traces
from ei_keras.simulation import LATENT_NAMES, label
from ei_keras.simulation.priors import prior_midpoints
from tiny_test_set import hot_test_set, tiny_test_set

CONFIG = {"seed": 7, "prefix_lengths": [10, 30], "prefix_n_points": 21, "n_times": 51}


def test_preview_is_what_the_generator_writes(tmp_path):
    path = ei_keras.generate_dataset(dict(CONFIG, n_samples=3), tmp_path / "d.h5",
                                     workers=1, progress=False)
    shown = preview(CONFIG, 3)
    for length in (10.0, 30.0):
        np.testing.assert_array_equal(shown["prefixes"][length]["pH"],
                                      load_prefix(path, length).pH)
    trajectory = load_trajectories(path)
    np.testing.assert_array_equal(shown["trajectory"]["pH_measured"], trajectory.pH_measured)
    assert shown["parameters"][0]["activity"] == trajectory.latent[0, 0]
    # Noise drawn per group: the readings at t = 0 of the two prefixes differ.
    first = [shown["prefixes"][length]["pH"][:, 0] for length in (10.0, 30.0)]
    assert not np.allclose(*first)
    with pytest.raises(EiKerasError, match="n_cases"):
        preview(CONFIG, 0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shared")
    return (folder, *tiny_test_set(folder, 24, 5))


def test_calibration_on_a_dataset_is_the_evaluation_s(tiny):
    folder, data, _ = tiny
    metrics = evaluate(folder / "model.keras", data, folder / "report", n_forecast=2,
                       n_baseline=1, n_information=1, progress=False)
    fractions = []
    result = evaluate_dataset(folder / "model.keras", data, 30.0, progress=fractions.append)
    assert result["n"] == 24 and fractions == [1.0]
    for name in ("activity", "k_d"):
        assert result[name]["calibration"] == json.loads(json.dumps(
            metrics["calibration"][name]))
        assert np.all(result[name]["lo90"] <= result[name]["hi90"])
    assert evaluate_dataset(folder / "model.keras", data, 30.0, n_max=5)["n"] == 5


def test_dataset_evaluation_leaves_out_or_flags_extrapolations_as_infer_does(tmp_path):
    model, path, data = hot_test_set(tmp_path)
    temperature = data.known[:, list(data.known_names).index("temperature_C")]
    outside = temperature > 40.0
    n, k = len(outside), int(outside.sum())
    assert 0 < k < n
    # one trace at a time, infer refuses exactly these without the switch
    row = int(np.argmax(outside))
    known = dict(zip(data.known_names, data.known[row].astype(float)))
    with pytest.raises(EiKerasError, match="temperature_C = .* outside the range"):
        ei_keras.infer(model, data.t[row], data.pH[row], known)
    assert not ei_keras.infer(model, data.t[row], data.pH[row], known,
                              allow_extrapolation=True)["domain"]["ok"]

    left_out = evaluate_dataset(model, path, 30.0)
    assert left_out["n"] == n - k and not left_out["extrapolated"].any()
    assert left_out["domain"] == {"allow_extrapolation": False, "n_outside": k,
                                  "n_left_out": k, "n_extrapolated": 0,
                                  "example": left_out["domain"]["example"]}
    assert left_out["domain"]["example"].startswith("temperature_C = ")
    activity = list(data.latent_names).index("activity")
    np.testing.assert_array_equal(left_out["activity"]["truth"],
                                  data.latent[~outside, activity])
    assert left_out["activity"]["calibration_within_ranges"] is None

    flagged = evaluate_dataset(model, path, 30.0, allow_extrapolation=True)
    assert flagged["n"] == n and flagged["extrapolated"].tolist() == outside.tolist()
    assert (flagged["domain"]["n_extrapolated"], flagged["domain"]["n_left_out"]) == (k, 0)
    for name in ("activity", "k_d"):  # without the flagged ones: the cases left out above
        np.testing.assert_allclose(flagged[name]["median"][~outside],
                                   left_out[name]["median"], rtol=1e-5)
        assert flagged[name]["calibration_within_ranges"]["nominal"] == \
            left_out[name]["calibration"]["nominal"]
    # n_max counts the cases looked at, scored or left out
    assert evaluate_dataset(model, path, 30.0, n_max=3)["n"] == 3 - int(outside[:3].sum())
    only_outside = dataclasses.replace(data, known=data.known[outside])
    with pytest.raises(EiKerasError, match=f"all {k} traces have known inputs outside"):
        extrapolation_rows(ei_keras.inference.load_model(model), only_outside, k, False,
                           path)


def test_traces_from_a_simulation_a_dataset_and_a_csv(tiny, tmp_path):
    _, data, prefix = tiny
    middle = prior_midpoints()
    assert middle["activity"] == pytest.approx(np.sqrt(1e-3 * 1.0))
    simulated = traces.simulated_trace(middle, middle, 30.0, 0.5, seed=3)
    assert len(simulated["t"]) == 61 and set(simulated["truth"]) == set(LATENT_NAMES)
    np.testing.assert_array_equal(simulated["pH"], traces.simulated_trace(
        middle, middle, 30.0, 0.5, seed=3)["pH"])
    with pytest.raises(EiKerasError, match=label("activity")):
        traces.simulated_trace(middle, dict(middle, activity=-1.0), 30.0, 1.0)
    case = traces.dataset_trace(traces.load_traces(data, 30.0), 2, load_trajectories(data))
    np.testing.assert_array_equal(case["pH"], prefix.pH[2])
    assert case["source"] == "dataset, case 2" and len(case["trajectory"]["t"]) == 101
    csv = tmp_path / "trace.csv"
    csv.write_text("time,pH\n" + "".join(f"{t:g},{p:.4f}\n"
                                         for t, p in zip(case["t"], case["pH"])))
    read = traces.csv_trace(csv, case["known"])
    np.testing.assert_allclose(read["pH"], case["pH"], atol=1e-4)
    assert read["truth"] is None and read["source"] == "trace.csv"
