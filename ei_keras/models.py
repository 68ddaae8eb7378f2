"""The ei_keras network: pH trace + known conditions → Gaussian over the latent parameters.

``build_model`` wires the registered layers into a functional ``keras.Model``. With
``encoding="bins"`` (the ``"binned"`` architecture: any length, any reading rate):

    pH (batch, steps), t (batch, steps), known (batch, 5)   (NaN marks padding)
      → TraceBins: n_bins bins even in sqrt(t / t_last), mean pH change and counts
      → TCNEncoder (residual dilated Conv1D, "same" padding: bounded local features)
      → WeightedTemporalPooling over the bins ──────────────────┐
        (+ optional global_dilations stack, averaged: whole-trace features)
      known → Standardize ─┬─ concat → MLP ─────────────────────┴→ concat → MLP
      TraceFormat (length, readings, spacing) ┘
      → mean, log_var → GaussianPosterior  = output "posterior" (batch, 2 p)
      bin weights → BinnedReadingAttention = output "attention" (batch, steps)

With ``encoding="readings"`` (the fixed-format ``"compact"``/``"recipe"`` architectures
of the old-vs-new study) PrefixFeatures feeds every reading to a causal TCN instead, and
ReadingAttention spreads the weights of its downsampled steps.

All statistics (pH, time and known-input scaling; target transforms and standardisation)
live in layer configs, so a saved ``.keras`` file maps raw readings to physical units on
its own: :func:`decode_predictions` reads them back with the model's target codec
(:mod:`ei_keras.targets`).
"""

import functools
import inspect
import math
import os
from pathlib import Path

import keras
import numpy as np

from ei_keras.layers import (
    AverageTemporalPooling,
    BinnedReadingAttention,
    GaussianPosterior,
    PrefixFeatures,
    ReadingAttention,
    Standardize,
    TCNEncoder,
    TraceBins,
    TraceFormat,
    WeightedTemporalPooling,
)
from ei_keras.layers.sublayers import direct_calls
from ei_keras.config import ARCHITECTURES
from ei_keras.settings import ConfigError
from ei_keras.targets import LOG_VAR_MAX, LOG_VAR_MIN, forward_transform
from ei_keras.simulation import KNOWN_NAMES
from ei_keras.simulation.priors import DEFAULT_PARAM_RANGES

TARGET_NAMES = ("activity", "k_d")
# Targets trained in a transformed space: log10 for the log-uniform activity, a logit
# over the prior range for the bounded ones, so every summary and every draw of the
# posterior is physically valid without clipping. Others are standardised as they are.
TARGET_TRANSFORMS = {"activity": "log10", "k_d": "logit", "tau_probe": "logit",
                     "pH_offset": "logit"}
REFERENCE_INPUT = "initial_pH"

def input_pool_for(n_points, max_encoder_steps):
    """Readings averaged per encoder input step so at most ``max_encoder_steps`` remain."""
    if max_encoder_steps is None:
        return 1
    if not max_encoder_steps >= 1:
        raise ValueError(f"max_encoder_steps must be >= 1 or None; got {max_encoder_steps!r}")
    return max(1, math.ceil(n_points / max_encoder_steps))


def architecture_kwargs(architecture, n_points):
    """``build_model`` keyword arguments of a named preset for prefixes of ``n_points``."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {sorted(ARCHITECTURES)}; got {architecture!r}")
    kwargs = dict(ARCHITECTURES[architecture])
    kwargs["input_pool"] = input_pool_for(n_points, kwargs.pop("max_encoder_steps"))
    return kwargs


def default_normalization(known_names=KNOWN_NAMES, target_names=TARGET_NAMES,
                          bounds=None):
    """Unit statistics (no rescaling) for the given names; for tests and quick starts.

    ``bounds`` maps a target name to its prior ``[low, high]``; targets with a logit
    transform need one (default: the package's default priors).
    """
    bounds = {**DEFAULT_PARAM_RANGES, **(bounds or {})}
    transforms = [TARGET_TRANSFORMS.get(name, "identity") for name in target_names]
    return {
        "known_names": list(known_names),
        "known_mean": [0.0] * len(known_names),
        "known_std": [1.0] * len(known_names),
        "reference_index": (list(known_names).index(REFERENCE_INPUT)
                            if REFERENCE_INPUT in known_names else None),
        "ph_center": 0.0,
        "ph_scale": 1.0,
        "time_scale": 1.0,
        "dt_scale": 1.0,
        "target_names": list(target_names),
        "transforms": transforms,
        "bounds": [list(map(float, bounds[name])) if transform == "logit" else None
                   for name, transform in zip(target_names, transforms)],
        "target_loc": [0.0] * len(target_names),
        "target_scale": [1.0] * len(target_names),
        "domain": None,
    }


def _safe_std(values, axis=None):
    std = np.std(values, axis=axis)
    return np.where(np.isfinite(std) & (std > 0), std, 1.0)


def fit_normalization(t, pH, known, targets, known_names=KNOWN_NAMES,
                      target_names=TARGET_NAMES, bounds=None, domain=None):
    """Statistics for :func:`build_model` from training arrays (NaN padding ignored).

    The pH channel is the reading minus the measured initial pH (known input
    ``initial_pH``; the probe offset cancels), scaled by its standard deviation; time is
    divided by the largest reading time (about the prefix length) and the spacing by its
    median; known inputs and transformed targets are standardised per column.

    Args:
        t: reading times ``(n, steps)`` in seconds.
        pH: readings ``(n, steps)``.
        known: ``(n, len(known_names))``.
        targets: ``(n, len(target_names))`` in physical units.
        known_names: names of the known columns.
        target_names: names of the target columns.
        bounds: prior ``[low, high]`` per target name (for the logit transforms).
        domain: what the data covered (see :func:`ei_keras.inference.domain.training_domain`),
            stored in the model for its domain guard.

    Returns:
        a JSON-able dict accepted by :func:`build_model`.
    """
    t, pH = np.asarray(t, np.float64), np.asarray(pH, np.float64)
    known, targets = np.asarray(known, np.float64), np.asarray(targets, np.float64)
    if t.shape != pH.shape or t.ndim != 2:
        raise ValueError(f"t and pH must share a 2-D shape; got {t.shape} and {pH.shape}")
    if known.shape != (len(pH), len(known_names)):
        raise ValueError(f"known must be ({len(pH)}, {len(known_names)}); got {known.shape}")
    if targets.shape != (len(pH), len(target_names)):
        raise ValueError(f"targets must be ({len(pH)}, {len(target_names)}); got {targets.shape}")
    stats = default_normalization(known_names, target_names, bounds)
    stats["domain"] = domain
    reference = stats["reference_index"]
    if reference is None:
        stats["ph_center"] = float(np.nanmean(pH))
        delta = pH - stats["ph_center"]
    else:
        delta = pH - known[:, reference:reference + 1]
    stats["ph_scale"] = float(_safe_std(delta[np.isfinite(delta)]))
    stats["time_scale"] = float(np.nanmax(t)) if np.nanmax(t) > 0 else 1.0
    spacing = np.diff(t, axis=1)
    spacing = spacing[np.isfinite(spacing) & (spacing > 0)]
    stats["dt_scale"] = float(np.median(spacing)) if spacing.size else 1.0
    stats["known_mean"] = np.mean(known, axis=0).tolist()
    stats["known_std"] = _safe_std(known, axis=0).tolist()
    transformed = np.stack([forward_transform(tr, targets[:, j], stats["bounds"][j])
                            for j, tr in enumerate(stats["transforms"])], axis=1)
    stats["target_loc"] = np.mean(transformed, axis=0).tolist()
    stats["target_scale"] = _safe_std(transformed, axis=0).tolist()
    return stats


def build_model(normalization=None, *, filters=(32, 48, 64), kernel_size=3, dilations=(1, 2, 4),
                pool_sizes=(1, 2, 2), input_pool=1, dropout=0.0, known_units=(32,),
                head_units=(64,), pooling="weighted", attention_units=None, early_bias=1.0,
                early_bias_decay=0.2, log_var_min=LOG_VAR_MIN, log_var_max=LOG_VAR_MAX,
                encoding="readings", n_bins=64, padding="causal", global_dilations=(),
                name="ei_keras_posterior", run_config=None):
    """Build the (uncompiled) network; the defaults are the ``"compact"`` architecture.

    Args:
        normalization: statistics and names from :func:`fit_normalization` (default:
            :func:`default_normalization`, i.e. no rescaling).
        filters: channels of each TCN block.
        kernel_size: causal convolution width.
        dilations: dilation of each TCN block.
        pool_sizes: mask-aware average downsampling before each TCN block.
        input_pool: readings averaged per encoder step before the first block (see
            :func:`input_pool_for`).
        dropout: dropout rate inside the TCN blocks.
        known_units: widths of the MLP on the standardised known inputs.
        head_units: widths of the MLP after concatenating pooled sequence and known inputs.
        pooling: ``"weighted"`` (attention with an early-time bias) or ``"average"``.
        attention_units: hidden width of the attention scorer (None: half the channels).
        early_bias: initial strength of the attention's early-time bias.
        early_bias_decay: decay length of that bias in normalised time.
        log_var_min: lower log-variance clamp recorded for decoding (match the loss).
        log_var_max: upper log-variance clamp recorded for decoding (match the loss).
        encoding: ``"readings"`` (every reading is an encoder step; fixed formats) or
            ``"bins"`` (readings averaged into ``n_bins`` time bins; any format).
        n_bins: bins of the ``"bins"`` encoding.
        padding: ``"causal"`` or ``"same"`` TCN convolutions.
        global_dilations: dilations of a second TCN stack (``filters[-1]`` channels each)
            on the encoder's output, averaged over all steps and concatenated to the
            attention pooling's output: the head then sees features spanning the whole
            trace (e.g. early against late slope, where k_d shows) while the attention
            still weighs the encoder's local features. Empty: no such stack.
        name: model name.
        run_config: the dataset and training configs, stored in the output layer (see
            :class:`~ei_keras.layers.GaussianPosterior`).

    Returns:
        ``keras.Model`` with inputs ``{"pH": (batch, steps), "t": (batch, steps),
        "known": (batch, n_known)}`` (pH may also be ``(batch, steps, 1)``; NaN readings
        are padding) and outputs ``{"posterior": (batch, 2 p), "attention": (batch,
        steps)}``. ``posterior`` is ``[mean, log_var]`` of the standardised transformed
        targets, the ``y_pred`` of :class:`ei_keras.losses.RegularizedGaussianNLL`.
    """
    if pooling not in ("weighted", "average"):
        raise ValueError(f"pooling must be 'weighted' or 'average'; got {pooling!r}")
    if encoding not in ("readings", "bins"):
        raise ValueError(f"encoding must be 'readings' or 'bins'; got {encoding!r}")
    if encoding == "bins":  # the attention maps each encoder step back to one bin's readings
        for label, value in (("Downsampling per block", tuple(pool_sizes)),
                             ("Readings per encoder step", (input_pool,))):
            if any(size != 1 for size in value):
                raise ConfigError(
                    f"{label}: got {' '.join(map(str, value))}; the bins encoding needs 1 "
                    f"(one encoder step per time bin)")
    stats = default_normalization() if normalization is None else normalization
    known_names, target_names = stats["known_names"], stats["target_names"]

    ph_in = keras.Input((None,), name="pH")
    t_in = keras.Input((None,), name="t")
    known_in = keras.Input((len(known_names),), name="known")

    if encoding == "bins":
        features = TraceBins(
            n_bins, ph_scale=stats["ph_scale"], time_scale=stats["time_scale"],
            reference_index=stats["reference_index"], ph_center=stats["ph_center"],
            name="features")([ph_in, t_in, known_in])
    else:
        features = PrefixFeatures(
            ph_scale=stats["ph_scale"], time_scale=stats["time_scale"],
            dt_scale=stats["dt_scale"], reference_index=stats["reference_index"],
            ph_center=stats["ph_center"], name="features")([ph_in, t_in, known_in])
    encoder = TCNEncoder(filters, kernel_size, dilations, pool_sizes, input_pool, dropout,
                         padding=padding, name="encoder")
    sequence = encoder(features)
    if pooling == "weighted":
        pool = WeightedTemporalPooling(attention_units, early_bias, early_bias_decay,
                                       name="pooling")
    else:
        pool = AverageTemporalPooling(name="pooling")
    pooled, weights = pool(sequence, return_attention=True)
    if global_dilations:
        whole = TCNEncoder((filters[-1],) * len(global_dilations), kernel_size,
                           tuple(global_dilations), (1,) * len(global_dilations), 1, dropout,
                           padding=padding, name="global_encoder")(sequence)
        whole = AverageTemporalPooling(name="global_pooling")(whole)
        pooled = keras.layers.Concatenate(name="attention_and_global")([pooled, whole])

    context = Standardize(stats["known_mean"], stats["known_std"], known_names,
                          name="known_standardize")(known_in)
    if encoding == "bins":
        trace_format = TraceFormat(stats["time_scale"], stats["dt_scale"],
                                   name="trace_format")([ph_in, t_in])
        context = keras.layers.Concatenate(name="known_and_format")([context, trace_format])
    for index, units in enumerate(known_units):
        context = keras.layers.Dense(units, activation="relu", name=f"known_dense{index}")(context)
    hidden = keras.layers.Concatenate(name="merge")([pooled, context])
    for index, units in enumerate(head_units):
        hidden = keras.layers.Dense(units, activation="relu", name=f"head_dense{index}")(hidden)
    # Zero-initialised heads start every prediction at the prior of the standardised
    # targets (mean 0, variance 1), so the first steps see a loss near its floor.
    mean = keras.layers.Dense(len(target_names), kernel_initializer="zeros", name="mean")(hidden)
    log_var = keras.layers.Dense(len(target_names), kernel_initializer="zeros",
                                 name="log_var")(hidden)
    posterior = GaussianPosterior(
        target_names, stats["transforms"], stats["target_loc"], stats["target_scale"],
        log_var_min, log_var_max, bounds=stats.get("bounds"), domain=stats.get("domain"),
        run_config=run_config, name="posterior")([mean, log_var])
    if encoding == "bins":
        attention = BinnedReadingAttention(n_bins, name="attention")([weights, ph_in, t_in])
    else:
        attention = ReadingAttention(encoder.downsampling, name="attention")(
            [weights, ph_in, t_in])
    return keras.Model(
        inputs={"pH": ph_in, "t": t_in, "known": known_in},
        outputs={"posterior": posterior, "attention": attention}, name=name)


def save_model(model, path):
    """Save ``model`` as a ``.keras`` file that loads cleanly under every backend.

    Keras writes the saving backend's *resolved* ``jit_compile`` into the file (True after
    compiling with ``"auto"`` on jax), and a jax-saved file then runs ``torch.compile``
    (minutes on CPU) at its first predict under torch. This writes ``"auto"`` instead, so
    each backend resolves it for itself. The file is written aside and renamed into place,
    so a reader never sees half a file.

    Args:
        model: a Keras model (compiled or not).
        path: destination ending in ``.keras``.

    Returns:
        the path, as a ``pathlib.Path``.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"path must end in .keras; got {os.fspath(path)!r}")
    compile_config = getattr(getattr(model, "_compile_config", None), "config", None)
    if isinstance(compile_config, dict) and "jit_compile" in compile_config:
        compile_config["jit_compile"] = "auto"
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# Largest batch :func:`predict_batch` runs layer by layer (autograd stays on under torch,
# so a big batch would keep every activation alive); larger ones go to predict_on_batch.
DIRECT_BATCH = 16


def predict_batch(model, inputs):
    """``model.predict_on_batch(inputs)`` for a few traces, sooner on the torch backend.

    On torch ``predict_on_batch`` runs the model eagerly, and ``Layer.__call__`` (input
    conversion, mask and autocast handling, name scopes) costs about 0.1–0.15 ms per call,
    nearly half the time of one trace through the binned model's 17 layers and the ~20
    sublayers inside them (TCN blocks and their convolutions), which need none of it once
    built (float32, no masks). There, for a functional model and at most
    :data:`DIRECT_BATCH` rows, this runs each layer's ``call`` through the model's graph
    (Keras's own ``_run_through_graph``, ``training=False`` where a layer takes it) and,
    inside :func:`~ei_keras.layers.sublayers.direct_calls`, each sublayer's ``call`` too (a
    convolution's with its bias added by broadcasting): the same outputs to the bit (a test
    checks it), 6 → 2.5 ms for one trace (``benchmarks/bench_inference.py``). On jax and
    tensorflow ``predict_on_batch`` runs a compiled function (0.7 and 2.8 ms for one trace
    here; eager calls would take 20–40 ms) and is used as it is, as it is for other models
    and larger batches.

    Args:
        model: a built Keras model.
        inputs: the dict of numpy arrays ``predict_on_batch`` would take.

    Returns:
        dict of numpy arrays, one per output.
    """
    rows = len(next(iter(inputs.values())))
    run = getattr(model, "_run_through_graph", None)
    if (keras.backend.backend() != "torch" or rows > DIRECT_BATCH or run is None
            or not isinstance(getattr(model, "output", None), dict)):
        return dict(model.predict_on_batch(inputs))
    with direct_calls():
        outputs = run({name: keras.ops.convert_to_tensor(value)
                       for name, value in inputs.items()}, operation_fn=_direct_call)
    return {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}


def _direct_call(operation):
    """The bare ``call`` of a built layer (``training=False`` bound where it takes one)."""
    if not isinstance(operation, keras.layers.Layer) or not operation.built:
        return operation
    if _takes_training(type(operation)):
        return functools.partial(operation.call, training=False)
    return operation.call


@functools.lru_cache(maxsize=None)
def _takes_training(layer_class):
    return "training" in inspect.signature(layer_class.call).parameters


def posterior_layer(model):
    """The model's :class:`GaussianPosterior` layer (holds the target codec and domain)."""
    layer = model.get_layer("posterior")
    if not isinstance(layer, GaussianPosterior):
        raise ValueError(f"layer 'posterior' of {model.name!r} is a {type(layer).__name__}, "
                         f"not a GaussianPosterior; is this an ei_keras model?")
    return layer


def model_info(model):
    """What a saved model carries: known/target names, transforms, scales, its training
    domain and ``run_config`` (the dataset and training configs; None if not recorded)."""
    features = model.get_layer("features")
    known = model.get_layer("known_standardize")
    posterior = posterior_layer(model)
    return {
        "known_names": list(known.names),
        "target_names": list(posterior.target_names),
        "transforms": list(posterior.transforms),
        "bounds": posterior.bounds,
        "time_scale": features.time_scale,
        "any_format": isinstance(features, TraceBins),
        "domain": getattr(posterior, "domain", None),
        "run_config": posterior.run_config,
    }


def target_codec(model):
    """The :class:`~ei_keras.targets.TargetCodec` a model carries in its output layer."""
    return posterior_layer(model).codec


def decode_predictions(model, outputs):
    """Model outputs → per-target physical-unit summaries (see ``TargetCodec.decode``).

    Args:
        model: an ei_keras model (built or loaded).
        outputs: the dict returned by ``model(...)``/``model.predict(...)``, or the
            ``"posterior"`` array ``(n, 2 p)`` alone.

    Returns:
        ``{target_name: {"loc", "scale", "median", "mean", "std", "transform"}}``; ``loc``
        and ``scale`` are the Gaussian in transformed units (log10 for activity), the rest
        are physical units.
    """
    if isinstance(outputs, dict):
        outputs = outputs["posterior"]
    return target_codec(model).decode(keras.ops.convert_to_numpy(outputs))
