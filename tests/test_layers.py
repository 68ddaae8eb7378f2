"""ei_keras.layers: shapes, masks, NumPy references, config and .keras round trips."""

import numpy as np
import pytest

import ei_keras  # noqa: F401  (registers the layers, sets the default backend)
import keras
from keras import ops

from ei_keras.layers import (
    AverageTemporalPooling,
    GaussianPosterior,
    PrefixFeatures,
    ReadingAttention,
    Standardize,
    TCNBlock,
    TCNEncoder,
    WeightedTemporalPooling,
)
from ei_keras.targets import inverse_transform
from ei_keras.losses import LOG_VAR_MIN

pytestmark = pytest.mark.backend


def np_(x):
    return ops.convert_to_numpy(x)


def seq(batch=3, steps=12, channels=4, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, steps, channels)).astype("float32")


def right_mask(lengths, steps):
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def roundtrip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    return clone


# --- WeightedTemporalPooling -------------------------------------------------------------

@pytest.mark.parametrize("steps", [1, 7, 300])
def test_pooling_shapes_and_weights_sum_to_one(steps):
    x = seq(steps=steps)
    pooled, weights = WeightedTemporalPooling()(x, return_attention=True)
    assert pooled.shape == (3, 4) and weights.shape == (3, steps)
    np.testing.assert_allclose(np_(weights).sum(axis=1), 1.0, atol=1e-6)
    assert WeightedTemporalPooling()(x).shape == (3, 4)


def test_pooling_matches_numpy_reference_with_early_bias():
    x = seq(batch=2, steps=9, channels=6, seed=1)
    layer = WeightedTemporalPooling(hidden_units=3, early_bias=1.5, early_bias_decay=0.3)
    pooled, weights = layer(x, return_attention=True)
    w1, b1 = [np_(v) for v in layer.score_hidden.weights]
    w2, b2 = [np_(v) for v in layer.score_out.weights]
    logits = (np.maximum(x @ w1[0] + b1, 0) @ w2[0] + b2)[..., 0]
    logits = logits + 1.5 * np.exp(-np.linspace(0, 1, 9) / 0.3)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(np_(weights), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np_(pooled), (expected[..., None] * x).sum(1), rtol=1e-5, atol=1e-5)


def test_early_bias_prefers_early_steps_for_any_length():
    # Constant input: the learned logits are equal, only the bias orders the weights,
    # and it depends on normalised time, so first/last is the same for any length.
    for steps in (10, 1000):
        _, weights = WeightedTemporalPooling()(np.ones((1, steps, 2), "float32"),
                                               return_attention=True)
        weights = np_(weights)[0]
        assert np.all(np.diff(weights) <= 1e-9)
        np.testing.assert_allclose(weights[0] / weights[-1], np.exp(1.0 - np.exp(-5.0)),
                                   rtol=1e-5)


def test_pooling_mask_gives_exact_zero_and_matches_unpadded():
    x = seq(steps=10)
    lengths = [4, 10, 1]
    layer = WeightedTemporalPooling()
    pooled, weights = layer(x, mask=right_mask(lengths, 10), return_attention=True)
    pooled, weights = np_(pooled), np_(weights)
    for row, length in enumerate(lengths):
        assert np.all(weights[row, length:] == 0.0)
        alone, alone_w = layer(x[row:row + 1, :length], return_attention=True)
        np.testing.assert_allclose(pooled[row], np_(alone)[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(weights[row, :length], np_(alone_w)[0], rtol=1e-5, atol=1e-7)


def test_pooling_honours_a_keras_mask_in_a_functional_model():
    inputs = keras.Input((None, 3))
    masked = keras.layers.Masking(mask_value=0.0)(inputs)
    pooled, weights = WeightedTemporalPooling(name="pool")(masked, return_attention=True)
    model = keras.Model(inputs, {"pooled": pooled, "weights": weights})
    x = seq(batch=2, steps=6, channels=3)
    x[0, 4:] = 0.0
    out = model.predict_on_batch(x)
    assert np.all(out["weights"][0, 4:] == 0.0)
    np.testing.assert_allclose(out["weights"].sum(1), 1.0, atol=1e-6)


def test_pooling_config_roundtrip_and_training_moves_the_bias():
    layer = WeightedTemporalPooling(hidden_units=2, early_bias=0.5, early_bias_decay=0.1,
                                    name="p")
    clone = roundtrip(layer)
    assert clone.hidden_units == 2 and clone.early_bias == 0.5
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, layer(inputs))
    model.compile("adam", "mse")
    before = float(np_(layer.early_bias_strength))
    x = seq(batch=8, steps=5)
    model.fit(x, np.ones((8, 4), "float32"), epochs=2, verbose=0)
    assert float(np_(layer.early_bias_strength)) != before


@pytest.mark.parametrize("kwargs, text", [
    ({"hidden_units": 0}, "hidden_units"), ({"early_bias_decay": 0.0}, "early_bias_decay")])
def test_pooling_rejects_bad_arguments(kwargs, text):
    with pytest.raises(ValueError, match=text):
        WeightedTemporalPooling(**kwargs)


def test_average_pooling_is_the_masked_mean():
    x = seq(steps=5)
    pooled, weights = AverageTemporalPooling()(x, mask=right_mask([2, 5, 5], 5),
                                               return_attention=True)
    np.testing.assert_allclose(np_(pooled)[0], x[0, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(np_(weights)[0], [0.5, 0.5, 0, 0, 0])
    roundtrip(AverageTemporalPooling())


# --- TCN ---------------------------------------------------------------------------------

def test_tcn_block_is_causal_and_downsamples_with_ceil():
    block = TCNBlock(8, kernel_size=3, dilation_rate=2)
    x = seq(steps=11)
    y = np_(block(x))
    x2 = x.copy()
    x2[:, 6:] += 5.0
    np.testing.assert_allclose(np_(block(x2))[:, :6], y[:, :6], rtol=1e-6, atol=1e-6)
    assert TCNBlock(8, pool_size=3)(x).shape == (3, 4, 8)
    roundtrip(TCNBlock(8, 5, 2, 2, 0.1))


def test_tcn_encoder_shapes_mask_and_padding_invariance():
    encoder = TCNEncoder(filters=(4, 6), dilations=(1, 2), pool_sizes=(2, 2), input_pool=2)
    assert encoder.downsampling == 8
    x = seq(batch=2, steps=21, channels=3)
    y = np_(encoder(x))
    assert y.shape == (2, 3, 6)
    mask = right_mask([21, 9], 21)
    out_mask = np_(encoder.compute_mask(x, mask))
    np.testing.assert_array_equal(out_mask, [[True, True, True], [True, True, False]])
    x_padded = x.copy()
    x_padded[1, 9:] = 0.0
    padded = np_(encoder(x_padded, mask=mask))
    alone = np_(encoder(x[1:, :9]))
    np.testing.assert_allclose(padded[1, :2], alone[0], rtol=1e-5, atol=1e-6)
    assert encoder.compute_output_shape((None, 21, 3)) == (None, 3, 6)
    roundtrip(encoder)


@pytest.mark.parametrize("kwargs, text", [
    ({"filters": ()}, "filters"), ({"filters": (4,), "dilations": (1, 2)}, "one entry per block"),
    ({"input_pool": 0}, "input_pool"), ({"dropout": 1.0}, "dropout")])
def test_tcn_encoder_rejects_bad_arguments(kwargs, text):
    args = {"filters": (4, 4), "dilations": (1, 2), "pool_sizes": (1, 1)}
    args.update(kwargs)
    if "filters" in kwargs and "dilations" not in kwargs:
        args["dilations"] = args["pool_sizes"] = tuple(1 for _ in args["filters"])
    with pytest.raises(ValueError, match=text):
        TCNEncoder(**args)


# --- features, standardisation, outputs --------------------------------------------------

def test_prefix_features_channels_match_numpy_and_nan_marks_padding():
    t = np.tile(np.array([0.0, 0.5, 1.0, 2.0], "float32"), (2, 1))
    ph = np.array([[7.0, 7.1, 7.2, 7.3], [6.9, 7.0, np.nan, np.nan]], "float32")
    known = np.array([[0, 0, 0, 0, 7.0], [0, 0, 0, 0, 6.8]], "float32")
    layer = PrefixFeatures(ph_scale=0.5, time_scale=2.0, dt_scale=0.25, reference_index=4)
    features = np_(layer([ph[..., None], t, known]))
    np.testing.assert_allclose(features[0, :, 0], (ph[0] - 7.0) / 0.5, rtol=1e-5)
    np.testing.assert_allclose(features[0, :, 1], t[0] / 2.0)
    np.testing.assert_allclose(features[0, :, 2], np.array([0.5, 0.5, 0.5, 1.0]) / 0.25)
    assert np.all(features[1, 2:] == 0.0)
    np.testing.assert_array_equal(np_(layer.compute_mask([ph, t, known])),
                                  [[True] * 4, [True, True, False, False]])
    assert roundtrip(layer).reference_index == 4
    with pytest.raises(ValueError, match="ph_scale"):
        PrefixFeatures(ph_scale=0.0)


def test_standardize_matches_numpy_and_validates():
    layer = Standardize([1.0, 2.0], [2.0, 4.0], names=["a", "b"])
    np.testing.assert_allclose(np_(layer(np.array([[3.0, 2.0]], "float32"))), [[1.0, 0.0]])
    assert roundtrip(layer).names == ["a", "b"]
    with pytest.raises(ValueError, match="std"):
        Standardize([0.0], [0.0])


def test_gaussian_posterior_encodes_and_decodes_physical_units():
    layer = GaussianPosterior(["activity", "k_d"], ["log10", "identity"], [-1.5, 2e-3],
                              [0.8, 1e-3])
    targets = np.array([[0.01, 1e-3], [0.5, 4e-3]])
    z = layer.codec.encode(targets)
    y_pred = np.concatenate([z, np.log(np.full_like(z, 0.04))], axis=1)
    decoded = layer.codec.decode(y_pred)
    np.testing.assert_allclose(decoded["activity"]["median"], targets[:, 0], rtol=1e-6)
    np.testing.assert_allclose(decoded["k_d"]["mean"], targets[:, 1], rtol=1e-6)
    np.testing.assert_allclose(decoded["k_d"]["std"], 0.2 * 1e-3, rtol=1e-6)
    np.testing.assert_allclose(decoded["activity"]["scale"], 0.2 * 0.8, rtol=1e-6)
    # Log-normal mean and std against a Monte-Carlo draw.
    draws = inverse_transform("log10", decoded["activity"]["loc"][1] + 0.16 *
                              np.random.default_rng(0).normal(size=400_000))
    assert abs(draws.mean() / decoded["activity"]["mean"][1] - 1) < 3e-3
    assert abs(draws.std() / decoded["activity"]["std"][1] - 1) < 1e-2
    # The decoder clamps the log-variance as the loss does.
    wild = layer.codec.decode(np.array([[0.0, 0.0, -50.0, 50.0]]))
    np.testing.assert_allclose(wild["activity"]["scale"], 0.8 * np.exp(LOG_VAR_MIN / 2),
                               rtol=1e-6)
    np.testing.assert_allclose(wild["k_d"]["scale"], 1e-3 * np.exp(5.0), rtol=1e-6)
    assert roundtrip(layer).transforms == ["log10", "identity"]
    with pytest.raises(ValueError, match="transforms"):
        GaussianPosterior(["a"], ["log"])


def test_reading_attention_spreads_block_weights_over_valid_readings():
    weights = np.array([[0.5, 0.3, 0.2], [0.6, 0.4, 0.0]], "float32")
    t = np.tile(np.arange(7, dtype="float32"), (2, 1))
    ph = np.ones((2, 7), "float32")
    ph[1, 4:] = np.nan
    out = np_(ReadingAttention(3)([weights, ph, t]))
    np.testing.assert_allclose(out[0], [0.5 / 3] * 3 + [0.1] * 3 + [0.2], rtol=1e-6)
    np.testing.assert_allclose(out[1], [0.2] * 3 + [0.4, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-6)
    roundtrip(ReadingAttention(3))
