"""Dataset configuration: typed settings, defaults, merge of a partial config, validation.

:class:`DatasetConfig` (with its :class:`MeasurementModel` and :class:`AnyFormat`
sections) declares every setting once, with its label, help, unit and allowed values
(see :mod:`ei_keras.settings`); the ``generate`` flags and the dashboard's Data form are
made from it. Files and HDF5 attributes hold its plain JSON-compatible dict:
:func:`resolve_dataset_config` turns a partial dict into a full, checked one; anything
wrong raises :class:`~ei_keras.settings.ConfigError` with a one-line message that names
the setting, the value received and what is allowed.
"""

import dataclasses
import json
import math

from ei_keras.settings import (
    ConfigError,
    check_fields,
    checked,
    fail,
    field_named,
    from_dict,
    is_number,
    refuse,
    section,
    setting,
    shown,
    title,
    to_dict,
)
from ei_keras.simulation import LABELS, LATENT_NAMES, UNITS
from ei_keras.simulation.priors import DEFAULT_PARAM_RANGES
from ei_keras.simulation.simulator import CONDITION_LIMITS
from ei_keras.targets import LOG_VAR_MAX, LOG_VAR_MIN

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


def _distinct_positive(value):
    return (isinstance(value, (list, tuple)) and all(is_number(v) and v > 0 for v in value)
            and len(set(value)) == len(value))


@dataclasses.dataclass(frozen=True)
class MeasurementModel:
    """How the simulated probe reads the true pH."""

    noise_std: float = setting(0.01, "Noise σ", "standard deviation of the reading noise",
                               unit="pH", minimum=0.0, needs="add_noise")
    use_probe_lag: bool = setting(True, "Probe lag", "the probe follows the true pH with a "
                                  "first-order delay (time constant tau_probe)",
                                  flag="--probe-lag")
    use_offset: bool = setting(True, "Probe offset", "a calibration offset on every reading",
                               flag="--probe-offset")
    add_noise: bool = setting(True, "Add noise", "add Gaussian noise to the readings")

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class AnyFormat:
    """Readings in any format: every sample its own prefix length L and reading interval
    dt (see README "Dataset files"); written as the any_format/ group when enabled."""

    enabled: bool = setting(False, "Also any-format traces", "also write readings in any "
                            "format (the data for a model that reads any trace)",
                            flag="--any-format")
    prefix_length_s: list = setting(
        lambda: [2.0, 600.0], "Any-format prefix lengths",
        "L: LO HI, drawn log-uniformly; with grid sampling the lengths to draw from, e.g. "
        "10 30 60 120 300 600", kind="numbers", unit="s", flag="--prefix-range",
        needs="enabled")
    reading_interval_s: list = setting(
        lambda: [0.1, 10.0], "Any-format reading intervals",
        "dt: LO HI, drawn log-uniformly; with grid sampling the intervals to draw from, e.g. "
        "0.1 0.3 1 2 5", kind="numbers", unit="s", flag="--interval-range", needs="enabled")
    sampling: str = setting("log-uniform", "Format sampling", "how L and dt are drawn: "
                            "log-uniformly between LO and HI, or uniformly from the grid of "
                            "values", choices=ANY_FORMAT_SAMPLINGS, needs="enabled")
    min_readings: int = setting(3, "Fewest readings per trace", "fewest readings per any-"
                                "format trace (dt is lowered to fit)",
                                minimum=2, needs="enabled")
    max_readings: int = setting(1201, "Most readings per trace", "most readings per any-format "
                                "trace (dt is raised to fit)",
                                minimum=2, maximum=MAX_READINGS_LIMIT, needs="enabled")
    timing_jitter: float = setting(0.0, "Timing jitter", "standard deviation of the timing "
                                   "error, as a fraction of dt", minimum=0.0, needs="enabled")
    drop_fraction: float = setting(0.0, "Dropped readings", "probability of dropping each "
                                   "reading but the first", minimum=0.0, below=1.0,
                                   needs="enabled")

    def __post_init__(self):
        check_fields(self)
        for name in ("prefix_length_s", "reading_interval_s"):
            object.__setattr__(self, name, self._format_values(name))
        if self.max_readings < self.min_readings:
            fail(field_named(AnyFormat, "max_readings"), self.max_readings,
                 f"an integer from {title(field_named(AnyFormat, 'min_readings'))} "
                 f"({self.min_readings}) to {MAX_READINGS_LIMIT}")

    def _format_values(self, name):
        """Seconds for L or dt: [low, high] (log-uniform) or the distinct values of a grid."""
        field, value = field_named(AnyFormat, name), getattr(self, name)
        if self.sampling == "grid":
            if not value or not _distinct_positive(value):
                fail(field, value, "a non-empty list of distinct finite numbers > 0 (seconds) "
                     "for grid sampling")
            return sorted(float(v) for v in value)
        allowed = "[low, high] with 0 < low <= high (seconds) for log-uniform sampling"
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            fail(field, value, allowed)
        low, high = value
        if not (is_number(low) and is_number(high)) or not 0 < low <= high:
            fail(field, value, allowed)
        return [float(low), float(high)]


# Architecture presets. "compact" is the default (CPU-friendly: mask-aware average
# downsampling inside the encoder and of long prefixes, so cost stays about flat beyond
# ``max_encoder_steps`` readings); "recipe" is the original full-size TCN, for GPUs.
ARCHITECTURES = {
    "compact": {
        "filters": (32, 48, 64), "kernel_size": 3, "dilations": (1, 2, 4),
        "pool_sizes": (1, 2, 2), "dropout": 0.0, "known_units": (32,), "head_units": (64,),
        "max_encoder_steps": 64,
    },
    "recipe": {
        "filters": (64, 128, 256), "kernel_size": 3, "dilations": (1, 2, 4),
        "pool_sizes": (1, 1, 1), "dropout": 0.1, "known_units": (64,), "head_units": (128,),
        "max_encoder_steps": None,
    },
    # Any trace length and reading rate: readings averaged into 64 bins (even in
    # sqrt(time)), a non-causal TCN whose receptive field spans 21 bins, so the attention
    # weighs local evidence; the trace's format enters the head beside the known inputs.
    "binned": {
        "filters": (32, 48, 64), "kernel_size": 3, "dilations": (1, 2, 2),
        "pool_sizes": (1, 1, 1), "dropout": 0.0, "known_units": (64,), "head_units": (128, 64),
        "max_encoder_steps": None, "encoding": "bins", "n_bins": 64, "padding": "same",
    },
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Network settings on top of the chosen architecture (:data:`ARCHITECTURES`):
    each is the ``build_model`` argument of that name; None keeps the architecture's."""

    filters: list | None = setting(None, "Channels per TCN block", "e.g. 32 48 64",
                                   kind="ints", minimum=1, optional=True)
    kernel_size: int | None = setting(None, "Convolution width", "readings (or bins) each "
                                      "convolution spans", kind="int", minimum=1,
                                      optional=True)
    dilations: list | None = setting(None, "Dilations", "dilation of each TCN block, e.g. "
                                     "1 2 4", kind="ints", minimum=1, optional=True)
    pool_sizes: list | None = setting(None, "Downsampling per block", "average pooling before "
                                      "each TCN block, e.g. 1 2 2", kind="ints", minimum=1,
                                      optional=True)
    input_pool: int | None = setting(None, "Readings per encoder step", "readings averaged "
                                     "before the first block", kind="int", minimum=1,
                                     optional=True)
    dropout: float | None = setting(None, "Dropout", "dropout rate inside the TCN blocks",
                                    kind="float", minimum=0.0, below=1.0, optional=True)
    known_units: list | None = setting(None, "Known-input widths", "widths of the MLP on the "
                                       "known inputs, e.g. 32", kind="ints", minimum=1,
                                       optional=True)
    head_units: list | None = setting(None, "Head widths", "widths of the MLP after merging "
                                      "trace and known inputs, e.g. 128 64", kind="ints",
                                      minimum=1, optional=True)
    attention_units: int | None = setting(None, "Attention width", "hidden width of the "
                                          "attention scorer (none: half the channels)",
                                          kind="int", minimum=1, optional=True)
    early_bias: float | None = setting(None, "Early-time bias", "initial strength of the "
                                       "attention's early-time bias", kind="float",
                                       optional=True)
    early_bias_decay: float | None = setting(None, "Early-bias decay", "decay length of that "
                                             "bias in normalised time", kind="float",
                                             above=0.0, optional=True)
    encoding: str | None = setting(None, "Encoding", "readings: every reading an encoder "
                                   "step; bins: readings averaged into time bins (any format)",
                                   choices=("readings", "bins"), optional=True)
    n_bins: int | None = setting(None, "Time bins", "bins of the bins encoding", kind="int",
                                 minimum=2, optional=True)
    padding: str | None = setting(None, "Convolution padding", "causal or same",
                                  choices=("causal", "same"), optional=True)
    global_dilations: list | None = setting(
        None, "Whole-trace dilations", "dilations of a second TCN stack on the encoder's "
        "output, averaged over the whole trace and given to the head beside the attention "
        "pooling, so it can compare early and late parts of a trace, e.g. 4 16 (none: no "
        "such stack)", kind="ints", minimum=1, optional=True)

    def __post_init__(self):
        check_fields(self)

    def overrides(self):
        """The settings given (not None), as ``build_model`` keyword arguments."""
        return {name: value for name, value in to_dict(self).items() if value is not None}


def parameter_label(name):
    """``Volume [L]``: a parameter's label with its unit."""
    unit = UNITS.get(name)
    return LABELS.get(name, name) + (f" [{unit}]" if unit else "")


def range_label(name):
    """``Prior range of Volume [L]``: how a parameter's prior range is named."""
    return f"Prior range of {parameter_label(name)}"


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """Every setting of a simulated dataset; ``to_dict`` is what its HDF5 file stores."""

    n_samples: int = setting(2000, "Number of samples", "how many urease runs are simulated",
                             minimum=1)
    seed: int = setting(0, "Seed", "random seed: same seed, same data (use another one for "
                        "a test set)", minimum=0)
    t_max: float = setting(2000.0, "End of the full trajectory", "where the simulated "
                           "run ends", unit="s", above=0.0)
    n_times: int = setting(401, "Points on the full trajectory", "time points "
                           "simulated up to its end", minimum=2)
    prefix_lengths: list = setting(
        lambda: [10.0, 30.0, 60.0, 300.0], "Prefix lengths", "the first seconds of each run "
        "the network reads, e.g. 10 30 60 300; none writes no fixed prefixes (allowed with "
        "any-format traces)", kind="numbers", unit="s", nargs="*")
    prefix_n_points: int = setting(100, "Readings per prefix", "readings in each fixed prefix",
                                   minimum=2)
    use_adaptive_n_points: bool = setting(
        False, "Adaptive readings", "more readings on long prefixes: max(readings per "
        "prefix, prefix length / target spacing)", flag="--adaptive-n-points")
    target_dt: float = setting(0.3, "Target spacing for adaptive readings", "reading "
                               "spacing of adaptive prefixes", unit="s", above=0.0,
                               needs="use_adaptive_n_points")
    infer_params: list = setting(
        lambda: ["activity", "k_d"], "Parameters to infer", "activity and k_d always; the "
        "probe's tau_probe and pH_offset optionally", kind="choices", choices=LATENT_NAMES)
    param_ranges: dict = setting(
        lambda: {name: list(bounds) for name, bounds in DEFAULT_PARAM_RANGES.items()},
        "Prior ranges", "each parameter is drawn uniformly between LOW and HIGH (activity "
        "log-uniformly); repeat for several", kind="ranges", flag="--param-range")
    measurement_model: MeasurementModel = section(MeasurementModel, "Measurement model")
    any_format: AnyFormat = section(AnyFormat, "Any format")

    def __post_init__(self):
        check_fields(self)
        object.__setattr__(self, "prefix_lengths", self._prefix_lengths())
        object.__setattr__(self, "param_ranges", self._param_ranges())
        self._check_true_initial_pH()
        object.__setattr__(self, "infer_params", self._infer_params())

    def to_dict(self):
        return to_dict(self)

    def _prefix_lengths(self):
        field, value = field_named(DatasetConfig, "prefix_lengths"), self.prefix_lengths
        if self.any_format.enabled:
            allowed = "a list of distinct finite numbers > 0 (seconds), empty for none"
        else:
            allowed = ("a non-empty list of distinct finite numbers > 0 (seconds); "
                       "empty only with any-format traces")
        if not _distinct_positive(value) or not (value or self.any_format.enabled):
            fail(field, value, allowed)
        return sorted(float(length) for length in value)

    def _param_ranges(self):
        checked = {}
        for name, bounds in self.param_ranges.items():
            if name not in _PARAM_DOMAINS:
                raise ConfigError(f"config key 'param_ranges.{name}': unknown key; allowed "
                                  f"keys: {', '.join(DEFAULT_PARAM_RANGES)}")
            lowest, highest, open_low = _PARAM_DOMAINS[name]
            low_rule = f"{lowest:g} < low" if open_low else f"{lowest:g} <= low"
            allowed = f"[low, high] with {low_rule} <= high <= {highest:g}"
            if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
                _range_fail(name, bounds, allowed)
            low, high = bounds
            if not (is_number(low) and is_number(high)) or low > high or high > highest:
                _range_fail(name, bounds, allowed)
            if low < lowest or (open_low and low == lowest):
                _range_fail(name, bounds, allowed)
            checked[name] = [float(low), float(high)]
        return checked

    def _check_true_initial_pH(self):
        """The simulator gets measured − offset: keep it within the simulator's limits."""
        ranges = self.param_ranges
        offset_low, offset_high = (ranges["pH_offset"] if self.measurement_model.use_offset
                                   else (0.0, 0.0))
        low, high = ranges["initial_pH"][0] - offset_high, ranges["initial_pH"][1] - offset_low
        lowest, highest = CONDITION_LIMITS["initial_pH"]
        if low < lowest or high > highest:
            _range_fail("initial_pH", ranges["initial_pH"],
                        f"a measured range that minus the probe offset stays within "
                        f"[{lowest:g}, {highest:g}] (true pH0 would span [{low:g}, {high:g}])")

    def _infer_params(self):
        field, value = field_named(DatasetConfig, "infer_params"), self.infer_params
        allowed = (f"a list with {', '.join(REQUIRED_TARGETS)} and optionally tau_probe, "
                   "pH_offset")
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            fail(field, value, allowed)
        if len(set(value)) != len(value) or not set(REQUIRED_TARGETS) <= set(value) <= set(
                LATENT_NAMES):
            fail(field, value, allowed)
        for name, switch in _NUISANCE_SWITCHES.items():
            if name in value and not getattr(self.measurement_model, switch):
                switch_label = title(field_named(MeasurementModel, switch))
                raise ConfigError(f"{title(field)}: got {shown(value)}; {name} cannot be "
                                  f"inferred because {switch_label} is off (it is fixed at 0)")
        return [name for name in LATENT_NAMES if name in value]


def _range_fail(name, bounds, allowed):
    refuse(range_label(name), bounds, allowed)


# The full default config as stored in files.
DEFAULT_DATASET_CONFIG = DatasetConfig().to_dict()


def dataset_config(config=None):
    """The :class:`DatasetConfig` of a (partial) JSON object merged over the defaults.

    Raises
    ------
    ConfigError
        For an unknown key at any level or an invalid value; the message names the
        setting, the value and the allowed range.
    """
    if config is None:
        config = {}
    if isinstance(config, DatasetConfig):
        return config
    if not isinstance(config, dict):
        raise ConfigError(f"config must be a JSON object (mapping); got {type(config).__name__}")
    return from_dict(DatasetConfig, config)


def resolve_dataset_config(config=None):
    """Full, validated dataset config: ``config`` merged over the defaults.

    Parameters
    ----------
    config : mapping or DatasetConfig, optional
        A partial config; missing keys take :data:`DEFAULT_DATASET_CONFIG` values.

    Returns
    -------
    dict
        A new JSON-compatible dict with every key, numbers normalised (``prefix_lengths``
        and any-format grid values sorted ascending, ``infer_params`` in the order of
        ``LATENT_NAMES``).

    Raises
    ------
    ConfigError
        For an unknown key at any level or an invalid value (see :func:`dataset_config`).
    """
    return dataset_config(config).to_dict()


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
        raise ConfigError(f"config file {path}: not valid JSON ({error})") from None
    except OSError as error:
        raise ConfigError(f"config file {path}: cannot be read ({error.strerror})") from None
    return resolve_dataset_config(config)


# The prefix length that selects a dataset's any-format traces (every length and rate).
ANY_FORMAT = "any"

PRESETS = {
    "improved": {
        "architecture": "compact", "pooling": "weighted", "batch_size": 256,
        "learning_rate": 1e-3, "weight_decay": 1e-5, "global_clipnorm": 5.0,
        "warmup_epochs": 5, "plateau_factor": 0.7, "plateau_patience": 10,
        "early_stopping_patience": 25,
    },
    # Any trace length and reading rate (train with prefix_length="any" on a dataset
    # generated with --any-format): the improved recipe on the binned architecture.
    "anyformat": {
        "architecture": "binned", "pooling": "weighted", "batch_size": 256,
        "learning_rate": 1e-3, "weight_decay": 1e-5, "global_clipnorm": 5.0,
        "warmup_epochs": 5, "plateau_factor": 0.7, "plateau_patience": 8,
        "early_stopping_patience": 20,
    },
    "baseline": {
        "architecture": "recipe", "pooling": "average", "batch_size": 128,
        "learning_rate": 5e-4, "weight_decay": 0.0, "global_clipnorm": 1.0,
        "warmup_epochs": 0, "plateau_factor": 0.5, "plateau_patience": 5,
        "early_stopping_patience": 15,
    },
}

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every training setting, each declared once with its label, help and allowed values
    (the ``train`` flags and the dashboard's Train form are made from them);
    :func:`resolve_config` fills it from a preset."""

    preset: str = setting("improved", "Preset", "the recipe the other settings start from",
                          choices=tuple(PRESETS))
    architecture: str = setting("compact", "Architecture", "network (see "
                                "ei_keras.models.ARCHITECTURES)", choices=tuple(ARCHITECTURES))
    pooling: str = setting("weighted", "Pooling", "temporal pooling",
                           choices=("weighted", "average"))
    model: dict = setting(dict, "Network overrides", "network settings on top of the "
                          'architecture, as JSON, e.g. {"filters": [16, 16, 16]}',
                          kind="mapping", fields=ModelConfig)
    epochs: int = setting(200, "Epochs (maximum)", "training ends earlier when early "
                          "stopping triggers", minimum=1)
    batch_size: int = setting(256, "Batch size", "samples per gradient step", minimum=1)
    learning_rate: float = setting(1e-3, "Learning rate", "peak rate, reached at the end of "
                                   "warmup", above=0.0, flag="--lr")
    weight_decay: float = setting(1e-5, "Weight decay", "decoupled AdamW weight decay "
                                  "(0: Adam)", minimum=0.0)
    global_clipnorm: float | None = setting(5.0, "Gradient clip (global norm)", "clip the "
                                            "norm of all gradients together (none: no "
                                            "clipping)", above=0.0, optional=True,
                                            flag="--clipnorm")
    epsilon: float = setting(1e-8, "Adam epsilon", "1e-8 as in torch (Keras's default is "
                             "1e-7)", above=0.0)
    warmup_epochs: int = setting(5, "Warmup epochs", "linear warmup of the learning rate "
                                 "(0: none)", minimum=0)
    warmup_per: str = setting("batch", "Warmup steps", "raise the learning rate every batch "
                              "or every epoch", choices=("batch", "epoch"))
    plateau_factor: float = setting(0.7, "Plateau factor", "learning-rate multiplier at each "
                                    "cut", above=0.0, below=1.0)
    plateau_patience: int = setting(10, "Plateau patience", "epochs without val_loss "
                                    "improvement before a cut (counted after warmup)",
                                    minimum=1)
    plateau_min_delta: float = setting(1e-4, "Plateau min delta", "relative improvement a "
                                       "plateau needs to see", minimum=0.0)
    min_lr: float = setting(1e-6, "Lowest learning rate", "plateau cuts stop here",
                            minimum=0.0)
    early_stopping_patience: int = setting(25, "Early-stopping patience", "epochs without "
                                           "improvement (after warmup) before stopping",
                                           minimum=1)
    log_var_min: float = setting(LOG_VAR_MIN, "Log-variance floor", "lower clamp of the "
                                 "predicted log-variance (loss and output layer)")
    log_var_max: float = setting(LOG_VAR_MAX, "Log-variance ceiling", "upper clamp of the "
                                 "predicted log-variance (loss and output layer)")
    target_variance: float = setting(0.1, "Target variance", "variance the loss penalty "
                                     "pulls toward", above=0.0)
    variance_weight: float = setting(0.01, "Variance penalty weight", "0: plain Gaussian "
                                     "NLL", minimum=0.0)
    val_fraction: float = setting(0.1, "Validation fraction", "share of the samples held "
                                  "out for validation", above=0.0, below=1.0)
    max_samples: int | None = setting(None, "Samples used (maximum)", "use only the first "
                                      "this many samples of the file (none: all)", kind="int",
                                      minimum=2, optional=True)
    seed: int = setting(0, "Seed", "seed of the split, initial weights, shuffling and "
                        "dropout")
    jit_compile: str | bool = setting("auto", "Compile (jit)", "passed to model.compile "
                                      "(auto: jax compiles, torch not)",
                                      choices=("auto", True, False))

    def __post_init__(self):
        check_fields(self)
        if not isinstance(self.model, dict):
            fail(field_named(TrainConfig, "model"), self.model,
                 "a JSON object of network settings (see ModelConfig)")
        object.__setattr__(self, "model", from_dict(ModelConfig, self.model,
                                                    where="model.").overrides())
        if not self.log_var_min < self.log_var_max:
            fail(field_named(TrainConfig, "log_var_min"), self.log_var_min,
                 f"a number below the log-variance ceiling ({self.log_var_max:g})")

    def to_dict(self):
        return dataclasses.asdict(self)


def resolve_config(preset="improved", **overrides):
    """A :class:`TrainConfig`: the preset's values with ``overrides`` on top.

    Raises:
        ConfigError: unknown preset or setting, or an invalid value (the message names it
            by its label).
    """
    preset = checked(field_named(TrainConfig, "preset"), preset)
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(f"unknown training setting(s) {', '.join(unknown)}; known: "
                          f"{', '.join(fields)}")
    values = dict(PRESETS[preset], preset=preset)
    values.update(overrides)
    return TrainConfig(**values)
