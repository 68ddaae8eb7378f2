"""The Data and Train pages' settings forms, made from the typed settings.

Every widget comes from a field of :class:`ei_keras.config.DatasetConfig` or
:class:`ei_keras.config.TrainConfig`: its label, unit, help and allowed values are the
field's metadata (see :mod:`ei_keras.settings`), so a new setting appears here, on the
command line and in validation at once. Widget keys are the page's prefix plus the
setting's flag name (``data_n_samples``, ``train_improved_lr``).
"""

import re

import streamlit as st

from ei_keras.config import (
    PRESETS,
    DatasetConfig,
    TrainConfig,
    parameter_label,
    resolve_config,
    resolve_dataset_config,
)
from ei_keras.errors import EiKerasError
from ei_keras.settings import field_named, flag_name, settings_of, title


def widget_key(prefix, field) -> str:
    """``prefix`` + the setting's flag name, e.g. ``data_`` + ``n_samples``."""
    return prefix + flag_name(field)[2:].replace("-", "_")


def parse_numbers(text, label) -> tuple[list | None, str | None]:
    """``"10, 30 60"`` → ``[10.0, 30.0, 60.0]``; or ``(None, message)``."""
    parts = [part for part in re.split(r"[,;\s]+", str(text).strip()) if part]
    try:
        return [float(part) for part in parts], None
    except ValueError:
        return None, (f"{label}: got {text!r}; allowed: numbers separated by commas, "
                      "e.g. 10, 30, 60")


def setting_input(field, value, key, *, disabled=False):
    """The widget of one setting showing ``value``: ``(new value, problem or None)``.

    A number that may be none is an empty box for none, and can be emptied whatever it
    shows first.
    """
    meta = field.metadata
    kind, label = meta["kind"], title(field)
    common = {"key": key, "help": meta["help"][:1].upper() + meta["help"][1:] + ".",
              "disabled": disabled}
    if kind == "bool":
        return st.toggle(label, value=bool(value), **common), None
    if kind in ("int", "float"):
        cast = int if kind == "int" else float
        shown = None if value is None else cast(value)
        if meta["optional"]:
            # Streamlit empties only a box made with value=None (an emptied box made with
            # a number gives that number back): make it so, and show the setting's value
            # through the box's session state, set once.
            if key not in st.session_state:
                st.session_state[key] = shown
            shown = None
        steps = {"step": 1} if kind == "int" else {"format": "%g", "step": None}
        number = st.number_input(label, value=shown, placeholder="none", **steps, **common)
        return None if number is None else cast(number), None
    if kind == "choice":
        options = [None] * meta["optional"] + list(meta["choices"])
        return st.selectbox(label, options, index=options.index(value),
                            format_func=lambda choice: "none" if choice is None else str(choice),
                            **common), None
    if kind == "choices":
        return st.multiselect(label, list(meta["choices"]), default=value, **common), None
    if kind in ("numbers", "ints"):
        text = st.text_input(label, value=", ".join(f"{v:g}" for v in value or []),
                             placeholder="none", **common)
        if meta["optional"] and not text.strip():
            return None, None
        numbers, problem = parse_numbers(text, label)
        if kind == "ints" and numbers and not all(v.is_integer() for v in numbers):
            return None, f"{label}: got {text!r}; allowed: whole numbers, e.g. 32, 48, 64"
        return (numbers if kind == "numbers" or problem else [int(v) for v in numbers]), problem
    raise ValueError(f"no widget for settings of kind {kind!r}")


def _switch_on(cls, field, prefix, values):
    """Whether the switch ``field`` needs is on: its widget's state, else its value."""
    switch = field_named(cls, field.metadata["needs"])
    return st.session_state.get(widget_key(prefix, switch), values[switch.name])


# ---------------------------------------------------------------------------------------
# Dataset configuration (Data page)
# ---------------------------------------------------------------------------------------

def default_config() -> dict:
    """A fresh copy of the full default dataset config."""
    return resolve_dataset_config({})


def config_error(partial) -> str | None:
    """The validation message of a (partial) dataset config, or None when valid.

    It is the one ``resolve_dataset_config`` gives: the setting's label, the value
    received and what is allowed.
    """
    try:
        resolve_dataset_config(partial)
    except EiKerasError as error:
        return str(error)
    return None


def resolve(config) -> dict:
    """The full validated config (see ``ei_keras.config.resolve_dataset_config``)."""
    return resolve_dataset_config(config)


def _show(problem, errors):
    if problem:
        errors.append(problem)
        st.error(problem, icon=":material/error:")


def _inputs(cls, fields, values, prefix, errors, wrap=lambda partial: partial) -> dict:
    """Widgets for ``fields`` of ``cls`` at ``values``; each is checked right under it
    (``wrap`` places a setting's partial config in its section)."""
    partial = {}
    for field in fields:
        disabled = bool(field.metadata["needs"]) and not _switch_on(cls, field, prefix, values)
        value, problem = setting_input(field, values[field.name],
                                       widget_key(prefix, field), disabled=disabled)
        _show(problem, errors)
        if not problem:
            partial[field.name] = value
            _show(config_error(wrap({field.name: value})), errors)
    return partial


def _scalars(cls):
    return [f for f in settings_of(cls)
            if "section" not in f.metadata and f.metadata["kind"] != "ranges"]


def _ranges_input(field, ranges, prefix, errors) -> dict:
    """One row of low/high per parameter, each row checked."""
    checked = {}
    header = st.columns([3, 2, 2])
    for column, text in zip(header, ("parameter", "low", "high")):
        column.markdown(f"**{text}**")
    for name, (low, high) in ranges.items():
        row = st.columns([3, 2, 2])
        row[0].markdown(parameter_label(name))
        bounds = [row[1 + i].number_input(f"{name} {end}", value=float(bound), format="%g",
                                          step=None, key=f"{prefix}range_{name}_{end}",
                                          label_visibility="collapsed")
                  for i, (end, bound) in enumerate((("low", low), ("high", high)))]
        checked[name] = bounds
        _show(config_error({field.name: {name: bounds}}), errors)
    return checked


def dataset_form(defaults: dict, errors: list, prefix="data_") -> dict:
    """Widgets for every :class:`DatasetConfig` setting, starting at ``defaults``.

    The top-level settings fill two columns and the first section (the measurement
    model) a third; later sections (any format) and the prior ranges go in expanders.
    Returns the partial config the widgets give; each problem is shown under its widget
    and appended to ``errors``.
    """
    partial = {}
    fields = settings_of(DatasetConfig)
    scalars = _scalars(DatasetConfig)
    sections = [f for f in fields if "section" in f.metadata]
    columns = st.columns(3)
    half = (len(scalars) + 1) // 2
    for column, part in zip(columns, (scalars[:half], scalars[half:])):
        with column:
            partial.update(_inputs(DatasetConfig, part, defaults, prefix, errors))
    for field in sections:
        first = field is sections[0]
        with columns[2] if first else st.expander(title(field)):
            if first:
                st.subheader(title(field))
            cls, name = field.metadata["section"], field.name
            partial[name] = _inputs(cls, _scalars(cls), defaults[name], prefix, errors,
                                    wrap=lambda values, name=name: {name: values})
    for field in fields:
        if field.metadata.get("kind") == "ranges":
            with st.expander(f"{title(field)}: {field.metadata['help']}", expanded=False):
                partial[field.name] = _ranges_input(field, defaults[field.name], prefix, errors)
    return partial


# ---------------------------------------------------------------------------------------
# Training settings (Train page)
# ---------------------------------------------------------------------------------------

def presets() -> list[str]:
    return list(PRESETS)


def preset_defaults(preset) -> dict:
    """Every training setting of a preset."""
    return resolve_config(preset).to_dict()


def _columns_of_inputs(fields, values, prefix, n_columns) -> tuple[dict, list]:
    given, problems = {}, []
    columns = st.columns(n_columns)
    for index, field in enumerate(fields):
        with columns[index % n_columns]:
            value, problem = setting_input(field, values.get(field.name),
                                           widget_key(prefix, field))
        if problem:
            problems.append(problem)
        else:
            given[field.name] = value
    return given, problems


def training_form(preset, n_columns=3) -> tuple[dict, list]:
    """Widgets for every :class:`TrainConfig` setting but the preset, at its values; a
    mapping of settings (the network's) gets one widget per setting, empty for none.

    Returns the values the widgets give and the problems of those that could not be read.
    """
    defaults, prefix = preset_defaults(preset), f"train_{preset}_"
    fields = [f for f in settings_of(TrainConfig) if f.name != "preset"]
    values, problems = _columns_of_inputs([f for f in fields if not f.metadata["fields"]],
                                          defaults, prefix, n_columns)
    for field in fields:
        if field.metadata["fields"]:
            st.markdown(f"**{title(field)}** (empty: the architecture's value)")
            given, more = _columns_of_inputs(settings_of(field.metadata["fields"]),
                                             defaults[field.name], prefix, n_columns)
            values[field.name] = {name: v for name, v in given.items() if v is not None}
            problems += more
    return values, problems


def training_overrides(preset, values: dict) -> dict:
    """The settings that differ from the preset."""
    base = preset_defaults(preset)
    return {key: value for key, value in values.items() if base.get(key) != value}


def training_error(preset, overrides: dict) -> str | None:
    """The validation message of a training configuration, or None."""
    try:
        resolve_config(preset, **overrides)
    except EiKerasError as error:
        return str(error)
    return None

