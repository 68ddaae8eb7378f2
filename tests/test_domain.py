"""The domain guard's rules, on hand-made traces and a hand-made training domain."""

import numpy as np
import pytest

from ei_keras import EiKerasError
from ei_keras.inference.domain import (
    check_traces,
    finish,
    misfit_flags,
    prior_edge_flags,
    thin_dense,
    training_domain,
)

DOMAIN = {
    "param_ranges": {"substrate_mM": [1.0, 100.0], "grams_urease_powder": [0.01, 0.5],
                     "volume_L": [0.1, 1.0], "temperature_C": [20.0, 40.0],
                     "initial_pH": [6.5, 7.5], "activity": [1e-3, 1.0], "k_d": [0.0, 5e-3]},
    "noise_std": 0.01, "prefix_length_s": [2.0, 600.0], "reading_interval_s": [0.1, 10.0],
    "readings": [3, 1201],
}
KNOWN = np.array([[30.0, 0.2, 0.5, 30.0, 7.0]], np.float32)


def check(t, pH, known=KNOWN, **kwargs):
    return check_traces(DOMAIN, np.atleast_2d(t), np.atleast_2d(pH), known, **kwargs)


def test_an_ordinary_trace_passes_every_check():
    t = np.arange(0, 60.0, 1.0)
    _, _, (report,) = check(t, 7.0 + 0.01 * t)
    assert report["flags"] == [] and report["readings"] == 60
    assert report["length_s"] == 59.0 and report["reading_interval_s"] == pytest.approx(1.0)


def test_known_inputs_outside_training_are_refused_unless_allowed():
    known = KNOWN.copy()
    known[0, 0] = 500.0
    t = np.arange(10.0)
    with pytest.raises(EiKerasError, match="substrate_mM = 500 is outside.*allow_extrapolation"):
        check(t, np.full(10, 7.1), known)
    _, _, (report,) = check(t, np.full(10, 7.1), known, allow_extrapolation=True)
    assert any("extrapolation" in flag for flag in report["flags"])


def test_ph_outside_the_chemistry_is_refused():
    with pytest.raises(EiKerasError, match="3–12"):
        check(np.arange(5.0), np.array([7.0, 7.1, 12.5, 7.2, 7.3]))


def test_a_long_trace_is_cut_at_the_trained_maximum_and_flagged():
    t = np.arange(0, 900.0, 1.0)
    t_used, pH_used, (report,) = check(t, np.full(t.shape, 7.2))
    assert np.all(np.isnan(t_used[0, t > 606])) and np.all(np.isnan(pH_used[0, t > 606]))
    assert np.isfinite(t_used[0, t <= 600]).all()
    assert "only its first 600 s" in report["flags"][0] and "293 later readings" in report["flags"][0]


def test_a_trace_with_more_readings_than_trained_is_thinned_with_a_note_not_a_flag():
    t = np.arange(0, 600.05, 0.1)  # 6001 readings; trained on at most 1201
    pH = 7.0 + 0.001 * t
    t_used, pH_used, (report,) = check(t, pH)
    kept = np.isfinite(t_used[0])
    np.testing.assert_array_equal(np.flatnonzero(kept), np.arange(0, 6001, 4))  # <= 1.25 × 1201
    assert np.array_equal(np.isfinite(pH_used[0]), kept) and pH_used[0, 4] == np.float32(pH[4])
    assert report["flags"] == [] and report["readings"] == 1501
    assert report["reading_interval_s"] == pytest.approx(0.4, rel=1e-4)
    assert report["notes"] == [
        "used one reading in 4 (1501 of 6001): the model was trained on at most 1201 readings "
        "a trace and reads more as less noisy than they are; the intervals are a little wider "
        "than all readings would allow"]
    _, _, (within,) = check(t[:1501], pH[:1501])
    assert within["notes"] == [] and within["readings"] == 1501
    _, _, (beyond,) = check(t[:1502], pH[:1502])
    assert beyond["notes"] and beyond["readings"] == 751
    # A whole dataset (as ei-keras evaluate scores it) is thinned the same way.
    rows_t = np.full((2, 6001), np.nan)
    rows_t[0], rows_t[1, :1000] = t, t[:1000]
    rows_pH = 7.0 + 0.001 * rows_t
    thinned_t, thinned_pH, every = thin_dense(DOMAIN, rows_t, rows_pH)
    np.testing.assert_array_equal(every, [4, 1])
    np.testing.assert_array_equal(np.isfinite(thinned_t[0]), kept)
    np.testing.assert_array_equal(thinned_t[1], rows_t[1])
    assert np.array_equal(np.isfinite(thinned_pH), np.isfinite(thinned_t))


def test_formats_outside_training_are_flagged_in_words_a_user_can_act_on():
    _, _, (short,) = check(np.linspace(0, 0.5, 100), np.full(100, 7.1))
    assert any("minutes" in flag for flag in short["flags"])
    assert any("one reading every 0.00505 s" in flag for flag in short["flags"])
    _, _, (sparse,) = check(np.array([0.0, 30.0, 60.0]), np.full(3, 7.1))
    assert any("one reading every 30 s" in flag for flag in sparse["flags"])


def test_misfit_takes_the_best_candidate():
    pH = np.array([[7.0, 7.1, 7.2, 7.3]])
    good = np.vstack([pH[0] + 0.5, pH[0] + 0.005])  # the second candidate explains it
    bad = np.vstack([pH[0] + 0.5, pH[0] - 0.05])
    reports = finish(misfit_flags(DOMAIN, np.vstack([pH, pH]), [good, bad],
                                  [{"flags": [], "checked": []} for _ in range(2)]))
    assert reports[0]["ok"] and reports[0]["misfit_rms"] == pytest.approx(0.005)
    assert not reports[1]["ok"] and "5.0× the noise" in reports[1]["flags"][0]


def test_an_interval_past_the_trained_range_is_flagged_in_the_parameters_space():
    summaries = {"activity": {"lo90": np.array([2e-4, 2e-3]), "hi90": np.array([5e-4, 0.5])},
                 "k_d": {"lo90": np.array([1e-5, 0.0]), "hi90": np.array([4.9e-3, 5e-3])}}
    reports = finish(prior_edge_flags(DOMAIN, summaries, {"activity": "log10", "k_d": "logit"},
                                      [{"flags": []}, {"flags": []}]))
    assert not reports[0]["ok"] and "activity interval" in reports[0]["flags"][0]
    assert reports[1]["ok"]


def test_training_domain_reads_the_data_it_was_trained_on():
    class Data:
        t = np.array([[0.0, 1.0, 2.0, np.nan], [0.0, 5.0, 10.0, 15.0]], np.float32)
        pH = np.where(np.isfinite(t), 7.0, np.nan)
        config = {"measurement_model": {"noise_std": 0.02}, "param_ranges": DOMAIN["param_ranges"]}
    domain = training_domain(Data)
    assert domain["prefix_length_s"] == [2.0, 15.0]
    assert domain["reading_interval_s"] == [1.0, 5.0] and domain["readings"] == [3, 4]
    assert domain["noise_std"] == 0.02 and domain["param_ranges"]["k_d"] == [0.0, 5e-3]
