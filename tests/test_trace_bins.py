"""Binned encoding of traces of any length: against a slow NumPy loop, padding-exact,
and the any-format model built on it (backend-marked: runs under every backend)."""

import math

import keras
import numpy as np
import pytest

from ei_keras.data.batches import LengthBatches
from ei_keras.layers import BinnedReadingAttention, TraceBins, TraceFormat
from ei_keras.models import architecture_kwargs, build_model, default_normalization


def np_(x):
    return keras.ops.convert_to_numpy(x)


def slow_bins(t, ph, reference, n_bins, ph_scale, time_scale):
    """One trace, reading by reading: the channels TraceBins documents."""
    valid = np.isfinite(t) & np.isfinite(ph)
    t_last = t[valid].max()
    out = np.zeros((n_bins, 5))
    members = [[] for _ in range(n_bins)]
    for time, value in zip(t[valid], ph[valid]):
        index = min(int(math.floor(math.sqrt(time / t_last) * n_bins)), n_bins - 1)
        members[index].append((time, value))
    for index, readings in enumerate(members):
        if readings:
            times, values = np.array(readings).T
            mean_time = times.mean() / time_scale
            out[index] = [((values - reference) / ph_scale).mean(), mean_time,
                          math.sqrt(mean_time), math.log1p(len(readings)) / math.log1p(1000), 1]
    return out


@pytest.mark.backend
def test_trace_bins_match_a_slow_loop_and_ignore_padding():
    rng = np.random.default_rng(0)
    t = np.full((3, 40), np.nan, np.float32)
    ph = np.full((3, 40), np.nan, np.float32)
    for row, (m, length) in enumerate([(40, 30.0), (7, 2.0), (3, 600.0)]):
        t[row, :m] = np.sort(rng.uniform(0, length, m)).astype(np.float32)
        t[row, 0] = 0.0
        ph[row, :m] = 7 + rng.uniform(0, 1, m)
    known = np.tile([30, 0.2, 0.5, 30, 7.0], (3, 1)).astype(np.float32)
    layer = TraceBins(16, ph_scale=0.5, time_scale=600.0, reference_index=4)
    out = np_(layer([ph, t, known]))
    for row in range(3):
        expected = slow_bins(t[row].astype(float), ph[row].astype(float), 7.0, 16, 0.5, 600.0)
        np.testing.assert_allclose(out[row], expected, rtol=1e-5, atol=1e-6)
    # padding more NaN columns changes nothing
    wider = [np.concatenate([a, np.full((3, 25), np.nan, np.float32)], axis=1) for a in (ph, t)]
    np.testing.assert_array_equal(np_(layer([wider[0], wider[1], known])), out)


@pytest.mark.backend
def test_attention_spreads_bin_weights_over_their_readings():
    t = np.array([[0.0, 1.0, 2.0, 3.0, 100.0, np.nan]], np.float32)
    ph = np.where(np.isfinite(t), 7.0, np.nan).astype(np.float32)
    weights = np.zeros((1, 4), np.float32)
    weights[0, 0], weights[0, 3] = 0.25, 0.75  # bins of sqrt(t / 100): 0-6.25, ..., 56-100
    out = np_(BinnedReadingAttention(4)([weights, ph, t]))
    np.testing.assert_allclose(out, [[0.0625] * 4 + [0.75, 0.0]], rtol=1e-6)
    weights[0, 1] = 1.0  # on an empty bin: not a reading's, so the rest is renormalised
    out = np_(BinnedReadingAttention(4)([weights, ph, t]))
    np.testing.assert_allclose(out, [[0.0625] * 4 + [0.75, 0.0]], rtol=1e-6)


@pytest.mark.backend
def test_trace_format_is_length_count_and_spacing():
    t = np.array([[0.0, 2.0, 4.0, np.nan]], np.float32)
    ph = np.array([[7.0, 7.1, 7.2, np.nan]], np.float32)
    out = np_(TraceFormat(time_scale=600.0, dt_scale=1.0)([ph, t]))
    np.testing.assert_allclose(out[0], [math.log1p(4) / math.log1p(600), math.log(3) / math.log(1000),
                                        math.log(2.0) / math.log(100)], rtol=1e-5)


@pytest.mark.backend
@pytest.mark.parametrize("global_dilations", [(), (4, 16)])
def test_binned_model_gives_the_same_answer_padded_and_roundtrips(tmp_path, global_dilations):
    model = build_model(default_normalization(), **architecture_kwargs("binned", 100),
                        global_dilations=global_dilations)
    rng = np.random.default_rng(1)
    for name in ("mean", "log_var"):  # zero-initialised heads answer alike for any trace
        kernel = model.get_layer(name).kernel
        kernel.assign(rng.normal(0.0, 0.3, kernel.shape).astype("float32"))
    t = np.linspace(0, 45, 60, dtype=np.float32)[None]
    ph = (7 + 0.01 * t + rng.normal(0, 0.01, t.shape)).astype(np.float32)
    known = np.array([[30, 0.2, 0.5, 30, 7.0]], np.float32)
    single = model.predict_on_batch({"pH": ph, "t": t, "known": known})
    other = model.predict_on_batch({"pH": ph + 0.05 * (t / 45) ** 2, "t": t, "known": known})
    assert np.abs(other["posterior"] - single["posterior"]).max() > 1e-4
    pad = np.full((1, 30), np.nan, np.float32)
    padded = model.predict_on_batch({"pH": np.concatenate([ph, pad], 1),
                                     "t": np.concatenate([t, pad], 1), "known": known})
    np.testing.assert_allclose(padded["posterior"], single["posterior"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(padded["attention"][:, :60], single["attention"], atol=1e-7)
    assert np.all(padded["attention"][:, 60:] == 0)
    path = tmp_path / "binned.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    again = loaded.predict_on_batch({"pH": ph, "t": t, "known": known})
    np.testing.assert_allclose(again["posterior"], single["posterior"], rtol=1e-6, atol=1e-7)


def test_length_batches_group_lengths_and_cover_every_trace_once():
    rng = np.random.default_rng(2)
    lengths = rng.integers(3, 400, 1000)
    t = np.full((1000, 400), np.nan, np.float32)
    for row, m in enumerate(lengths):
        t[row, :m] = np.arange(m)
    known, y = np.zeros((1000, 5)), np.arange(1000, dtype=float)[:, None]
    batches = LengthBatches(t, t.copy(), known, y, 32, shuffle=True, seed=0)
    seen = np.concatenate([batches[i][1]["posterior"][:, 0] for i in range(len(batches))])
    assert sorted(seen.astype(int).tolist()) == list(range(1000))
    assert batches.padding_fraction() < 0.15
    width = [batches[i][0]["pH"].shape[1] for i in range(len(batches))]
    assert min(width) < max(width)  # batches are trimmed to their own longest trace
    assert width[0] != width[1]  # so tensorflow's adapter leaves the width unfixed
    first = [batches[i][1]["posterior"][0, 0] for i in range(3)]
    batches.on_epoch_end()
    assert first != [batches[i][1]["posterior"][0, 0] for i in range(3)]
