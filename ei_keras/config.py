"""Dataset configuration: defaults, deep merge of a partial config, validation.

A config is a plain JSON-compatible dict, so it can be stored in every HDF5 file it
produced. :func:`resolve_dataset_config` turns a partial config into a full, checked one;
anything wrong raises :class:`~ei_keras.errors.EiKerasError` with a one-line message that
names the field, the value received and what is allowed.
"""

import copy
import json
import math

from ei_keras.errors import EiKerasError
from ei_keras.simulation import LATENT_NAMES
from ei_keras.simulation.priors import DEFAULT_PARAM_RANGES
from ei_keras.simulation.simulator import CONDITION_LIMITS

DEFAULT_DATASET_CONFIG = {
    "n_samples": 2000,
    "seed": 0,
    "t_max": 2000.0,
    "n_times": 401,
    "prefix_lengths": [10.0, 30.0, 60.0, 300.0],
    "prefix_n_points": 100,
    "use_adaptive_n_points": False,
    "target_dt": 0.3,
    "infer_params": ["activity", "k_d"],
    "param_ranges": {name: list(bounds) for name, bounds in DEFAULT_PARAM_RANGES.items()},
    "measurement_model": {
        "noise_std": 0.01,
        "use_probe_lag": True,
        "use_offset": True,
        "add_noise": True,
    },
    # Readings in any format: every sample its own prefix length L and reading interval
    # dt (see README "Dataset files"); written as the any_format/ group when enabled.
    "any_format": {
        "enabled": False,
        "prefix_length_s": [2.0, 600.0],
        "reading_interval_s": [0.1, 10.0],
        "sampling": "log-uniform",
        "min_readings": 3,
        "max_readings": 1201,
        "timing_jitter": 0.0,
        "drop_fraction": 0.0,
    },
}

# Always inferred; the nuisance parameters may be added.
REQUIRED_TARGETS = ("activity", "k_d")
# Domain of each parameter range: (lowest, highest, low end must be > lowest). The
# simulator's own limits, with activity > 0 (it is drawn log-uniformly); initial_pH is
# the measured value, and true pH0 = measured - offset is checked separately.
_PARAM_DOMAINS = {
    **{name: (low, high, name == "activity") for name, (low, high) in CONDITION_LIMITS.items()},
    "tau_probe": (0.0, math.inf, False),
    "pH_offset": (-2.0, 2.0, False),
}
# The switch that must be on for a nuisance parameter to vary (and be inferable).
_NUISANCE_SWITCHES = {"tau_probe": "use_probe_lag", "pH_offset": "use_offset"}
# How any-format samples draw L and dt: log-uniform in [low, high], or from a list.
ANY_FORMAT_SAMPLINGS = ("log-uniform", "grid")
# Readings per any-format sample at most: the padded width of its arrays, which a chunk
# of 1000 cases holds in memory several times; well below 1e5 also keeps jittered times
# (at least 2 % of an interval apart) distinct when stored as float32.
MAX_READINGS_LIMIT = 20_000


def _fail(field, value, allowed):
    raise EiKerasError(f"config field '{field}': got {value!r}; allowed: {allowed}")


def _merge(defaults, override, prefix=""):
    merged = copy.deepcopy(defaults)
    for key, value in override.items():
        field = prefix + str(key)
        if key not in defaults:
            known = ", ".join(defaults)
            raise EiKerasError(f"config field '{field}': unknown key; allowed keys: {known}")
        if isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                _fail(field, value, "a mapping with keys " + ", ".join(defaults[key]))
            merged[key] = _merge(defaults[key], value, field + ".")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value, field, minimum):
    if isinstance(value, float) and value.is_integer():
        return _integer(int(value), field, minimum)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        _fail(field, value, f"an integer >= {minimum}")
    return value


def _positive(value, field):
    if not _is_number(value) or value <= 0:
        _fail(field, value, "a finite number > 0")
    return float(value)


def _boolean(value, field):
    if not isinstance(value, bool):
        _fail(field, value, "true or false")
    return value


def _check_prefix_lengths(value, allow_empty=False):
    field = "prefix_lengths"
    if allow_empty:
        allowed = "a list of distinct finite numbers > 0 (seconds), empty for none"
    else:
        allowed = ("a non-empty list of distinct finite numbers > 0 (seconds); "
                   "empty only with any_format.enabled")
    if not isinstance(value, (list, tuple)) or not (value or allow_empty):
        _fail(field, value, allowed)
    if not all(_is_number(length) and length > 0 for length in value):
        _fail(field, value, allowed)
    lengths = sorted(float(length) for length in value)
    if len(set(lengths)) != len(lengths):
        _fail(field, value, allowed)
    return lengths


def _check_format_values(value, field, sampling):
    """Seconds for L or dt: [low, high] (log-uniform) or the distinct values of a grid."""
    if sampling == "grid":
        allowed = "a non-empty list of distinct finite numbers > 0 (seconds) for grid sampling"
        if not isinstance(value, (list, tuple)) or not value:
            _fail(field, value, allowed)
        if not all(_is_number(v) and v > 0 for v in value) or len(set(value)) != len(value):
            _fail(field, value, allowed)
        return sorted(float(v) for v in value)
    allowed = "[low, high] with 0 < low <= high (seconds) for log-uniform sampling"
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        _fail(field, value, allowed)
    low, high = value
    if not (_is_number(low) and _is_number(high)) or not 0 < low <= high:
        _fail(field, value, allowed)
    return [float(low), float(high)]


def _check_any_format(section):
    """The any_format sub-config, normalised (floats, grid values sorted)."""
    prefix = "any_format."
    checked = dict(section)
    _boolean(section["enabled"], prefix + "enabled")
    sampling = section["sampling"]
    if sampling not in ANY_FORMAT_SAMPLINGS:
        _fail(prefix + "sampling", sampling, " or ".join(map(repr, ANY_FORMAT_SAMPLINGS)))
    for key in ("prefix_length_s", "reading_interval_s"):
        checked[key] = _check_format_values(section[key], prefix + key, sampling)
    low = checked["min_readings"] = _integer(section["min_readings"], prefix + "min_readings", 2)
    high = section["max_readings"]
    if isinstance(high, float) and high.is_integer():
        high = int(high)
    if not isinstance(high, int) or isinstance(high, bool) or not low <= high <= MAX_READINGS_LIMIT:
        _fail(prefix + "max_readings", section["max_readings"],
              f"an integer from min_readings ({low}) to {MAX_READINGS_LIMIT}")
    checked["max_readings"] = high
    jitter = section["timing_jitter"]
    if not _is_number(jitter) or jitter < 0:
        _fail(prefix + "timing_jitter", jitter,
              "a finite number >= 0 (standard deviation as a fraction of the interval)")
    checked["timing_jitter"] = float(jitter)
    drop = section["drop_fraction"]
    if not _is_number(drop) or not 0 <= drop < 1:
        _fail(prefix + "drop_fraction", drop, "a number in [0, 1) (probability per reading)")
    checked["drop_fraction"] = float(drop)
    return checked


def _check_param_ranges(ranges):
    checked = {}
    for name, bounds in ranges.items():
        field = f"param_ranges.{name}"
        lowest, highest, open_low = _PARAM_DOMAINS[name]
        low_rule = f"{lowest} < low" if open_low else f"{lowest} <= low"
        allowed = f"[low, high] with {low_rule} <= high <= {highest}"
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            _fail(field, bounds, allowed)
        low, high = bounds
        if not (_is_number(low) and _is_number(high)) or low > high or high > highest:
            _fail(field, bounds, allowed)
        if low < lowest or (open_low and low == lowest):
            _fail(field, bounds, allowed)
        checked[name] = [float(low), float(high)]
    return checked


def _check_true_initial_pH(ranges, use_offset):
    """The simulator gets measured − offset: keep it within the simulator's limits."""
    offset_low, offset_high = ranges["pH_offset"] if use_offset else (0.0, 0.0)
    low, high = ranges["initial_pH"][0] - offset_high, ranges["initial_pH"][1] - offset_low
    lowest, highest = CONDITION_LIMITS["initial_pH"]
    if low < lowest or high > highest:
        _fail("param_ranges.initial_pH", ranges["initial_pH"],
              f"a measured range that minus pH_offset stays within [{lowest:g}, {highest:g}] "
              f"(true pH0 would span [{low:g}, {high:g}])")


def _check_infer_params(value, measurement_model):
    field = "infer_params"
    allowed = f"a list with {', '.join(REQUIRED_TARGETS)} and optionally tau_probe, pH_offset"
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        _fail(field, value, allowed)
    if len(set(value)) != len(value) or not set(value) <= set(LATENT_NAMES):
        _fail(field, value, allowed)
    if not set(REQUIRED_TARGETS) <= set(value):
        _fail(field, value, allowed)
    for name, switch in _NUISANCE_SWITCHES.items():
        if name in value and not measurement_model[switch]:
            raise EiKerasError(
                f"config field '{field}': got {list(value)!r}; {name} cannot be inferred "
                f"because measurement_model.{switch} is false (it is fixed at 0)"
            )
    return [name for name in LATENT_NAMES if name in value]


def resolve_dataset_config(config=None):
    """Full, validated dataset config: ``config`` deep-merged over the defaults.

    Parameters
    ----------
    config : mapping, optional
        A partial config; missing keys take :data:`DEFAULT_DATASET_CONFIG` values.

    Returns
    -------
    dict
        A new JSON-compatible dict with every key, numbers normalised (``prefix_lengths``
        and any-format grid values sorted ascending, ``infer_params`` in the order of
        ``LATENT_NAMES``).

    Raises
    ------
    EiKerasError
        For an unknown key at any level or an invalid value; the message names the field,
        the value and the allowed range.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise EiKerasError(f"config must be a JSON object (mapping); got {type(config).__name__}")
    merged = _merge(DEFAULT_DATASET_CONFIG, config)
    model = merged["measurement_model"]
    for key in ("use_probe_lag", "use_offset", "add_noise"):
        _boolean(model[key], f"measurement_model.{key}")
    if not _is_number(model["noise_std"]) or model["noise_std"] < 0:
        _fail("measurement_model.noise_std", model["noise_std"], "a finite number >= 0 (pH)")
    model["noise_std"] = float(model["noise_std"])
    merged["n_samples"] = _integer(merged["n_samples"], "n_samples", 1)
    merged["seed"] = _integer(merged["seed"], "seed", 0)
    merged["t_max"] = _positive(merged["t_max"], "t_max")
    merged["n_times"] = _integer(merged["n_times"], "n_times", 2)
    merged["any_format"] = _check_any_format(merged["any_format"])
    merged["prefix_lengths"] = _check_prefix_lengths(
        merged["prefix_lengths"], allow_empty=merged["any_format"]["enabled"])
    merged["prefix_n_points"] = _integer(merged["prefix_n_points"], "prefix_n_points", 2)
    _boolean(merged["use_adaptive_n_points"], "use_adaptive_n_points")
    merged["target_dt"] = _positive(merged["target_dt"], "target_dt")
    merged["param_ranges"] = _check_param_ranges(merged["param_ranges"])
    _check_true_initial_pH(merged["param_ranges"], model["use_offset"])
    merged["infer_params"] = _check_infer_params(merged["infer_params"], model)
    return merged


def load_dataset_config(path):
    """Read a JSON config file and resolve it with :func:`resolve_dataset_config`.

    Parameters
    ----------
    path : str or os.PathLike
        A JSON file holding a (partial) dataset config.

    Returns
    -------
    dict
        The resolved config.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except json.JSONDecodeError as error:
        raise EiKerasError(f"config file {path}: not valid JSON ({error})") from None
    except OSError as error:
        raise EiKerasError(f"config file {path}: cannot be read ({error.strerror})") from None
    return resolve_dataset_config(config)
