"""Typed settings declared once: each dataclass field carries its label, help, unit and
allowed values, and validation, command-line flags and dashboard forms are derived from it.

A field made with :func:`setting` is checked by :func:`check_fields`; a dataclass of
settings is read from a (partial) JSON object by :func:`from_dict`, and its flags are
added by :func:`add_flags` and read back by :func:`given_flags`.
"""

import argparse
import dataclasses
import json
import math

import numpy as np

from ei_keras.errors import EiKerasError

# What a setting holds; the kind decides its check, its flag and its form widget.
KINDS = ("int", "float", "bool", "choice", "choices", "numbers", "ints", "ranges", "mapping")


class ConfigError(EiKerasError):
    """An unknown or invalid setting; the message names it, what was given and what is
    allowed, on one line."""


def setting(default, label, help, *, kind=None, unit=None, minimum=None, maximum=None,
            above=None, below=None, choices=None, optional=False, flag=None, nargs=None,
            needs=None, fields=None):
    """A dataclass field carrying its metadata.

    Args:
        default: the value, or a zero-argument factory for a list or dict value.
        label: what users read in forms and error messages.
        help: one sentence for the flag's help and the form's tooltip.
        kind: one of :data:`KINDS` (default: from ``choices`` or the default's type).
        unit: appended to the label, e.g. ``"s"``.
        minimum, maximum: inclusive bounds of a number (of each, for ``"ints"``).
        above, below: exclusive bounds of a number.
        choices: the allowed values of a ``"choice"`` or each item of a ``"choices"``.
        optional: None is allowed too (a number left empty: none).
        flag: the command-line flag (default ``--`` and the name with dashes).
        nargs: how many values a list flag takes (``"+"`` or ``"*"``).
        needs: the name of a boolean setting beside it that must be on for it to matter.
        fields: for a ``"mapping"``, the dataclass of settings its keys are (each then has
            its own flag and form entry; the mapping holds those given).
    """
    if kind is None:
        kind = "choice" if choices else {bool: "bool", int: "int", float: "float"}[type(default)]
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    metadata = {"label": label, "help": help, "kind": kind, "unit": unit, "minimum": minimum,
                "maximum": maximum, "above": above, "below": below, "choices": choices,
                "optional": optional, "flag": flag, "nargs": nargs, "needs": needs,
                "fields": fields}
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def section(cls, label):
    """A field holding a nested dataclass of settings (e.g. the measurement model)."""
    return dataclasses.field(default_factory=cls, metadata={"label": label, "section": cls})


def settings_of(cls):
    """The fields of ``cls`` made with :func:`setting` or :func:`section`."""
    return [f for f in dataclasses.fields(cls) if "label" in f.metadata]


def title(field):
    """The field's label with its unit, e.g. ``Noise σ [pH]``."""
    unit = field.metadata.get("unit")
    return f"{field.metadata['label']} [{unit}]" if unit else field.metadata["label"]


def shown(value):
    """A value as users typed it: plain numbers, lists and strings, no NumPy reprs."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{shown(key)}: {shown(item)}" for key, item in value.items()) + "}"
    return repr(value)


def refuse(label, value, allowed):
    """Raise the :class:`ConfigError` of the setting called ``label`` holding ``value``."""
    raise ConfigError(f"{label}: got {shown(value)}; allowed: {allowed}")


def fail(field, value, allowed):
    """Raise the :class:`ConfigError` of ``field`` holding ``value``."""
    refuse(title(field), value, allowed)


def field_named(cls, name):
    """The field ``name`` of the dataclass ``cls``."""
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def allowed_text(field):
    """What a field allows, in words (the ``allowed:`` part of its error)."""
    meta = field.metadata
    kind = meta["kind"]
    if kind == "bool":
        text = "true or false"
    elif kind == "choice":
        names = [shown(choice) for choice in meta["choices"]]
        text = " or ".join(names) if len(names) == 2 else "one of " + ", ".join(names)
    elif kind in ("int", "float", "ints"):
        text = {"int": "an integer", "float": "a finite number",
                "ints": "a non-empty list of integers"}[kind]
        bounds = [f">= {meta['minimum']:g}" if meta["minimum"] is not None else None,
                  f"> {meta['above']:g}" if meta["above"] is not None else None,
                  f"<= {meta['maximum']:g}" if meta["maximum"] is not None else None,
                  f"< {meta['below']:g}" if meta["below"] is not None else None]
        bounds = [bound for bound in bounds if bound]
        if bounds:
            text += " " + " and ".join(bounds)
    else:
        text = meta["help"]
    return text + " or none" if meta["optional"] else text


def is_number(value):
    """A finite int or float (NumPy's too), not a bool."""
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)) and math.isfinite(value))


def _within(meta, value):
    return ((meta["minimum"] is None or value >= meta["minimum"])
            and (meta["maximum"] is None or value <= meta["maximum"])
            and (meta["above"] is None or value > meta["above"])
            and (meta["below"] is None or value < meta["below"]))


def checked(field, value):
    """``value`` of a scalar setting, checked and normalised (int, float, bool, choice)."""
    meta = field.metadata
    kind = meta["kind"]
    if value is None and meta["optional"]:
        return None
    if kind == "int":
        if is_number(value) and float(value).is_integer() and _within(meta, value):
            return int(value)
    elif kind == "float":
        if is_number(value) and _within(meta, value):
            return float(value)
    elif kind == "ints":
        if isinstance(value, (list, tuple)) and value and all(
                is_number(v) and float(v).is_integer() and _within(meta, v) for v in value):
            return [int(v) for v in value]
    elif kind == "bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
    elif kind == "choice":
        for choice in meta["choices"]:
            if value == choice and type(value) is type(choice):
                return choice
    else:
        return value
    fail(field, value, allowed_text(field))


def check_fields(settings):
    """Check and normalise every scalar setting of a dataclass instance, in place; a
    section given as a mapping becomes its dataclass."""
    for field in settings_of(type(settings)):
        value = getattr(settings, field.name)
        if "kind" in field.metadata:
            object.__setattr__(settings, field.name, checked(field, value))
        elif isinstance(value, dict):
            object.__setattr__(settings, field.name, from_dict(
                field.metadata["section"], value, where=f"{field.name}."))
        elif not isinstance(value, field.metadata["section"]):
            fail(field, value, "a mapping with keys " + ", ".join(
                f.name for f in settings_of(field.metadata["section"])))


def from_dict(cls, values, base=None, where=""):
    """``cls`` from a (partial) JSON object; missing keys keep ``base``'s values (default
    the field defaults); nested objects fill the sections. Unknown keys are refused."""
    if not isinstance(values, dict):
        raise ConfigError(f"config must be a JSON object (mapping); got {shown(values)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"config key '{where}{key}': unknown key; allowed keys: "
                              f"{', '.join(known)}")
    merged = {}
    for name, field in known.items():
        current = getattr(base, name) if base is not None else None
        if name in values and "section" in field.metadata:
            if not isinstance(values[name], dict):
                fail(field, values[name], "a mapping with keys " + ", ".join(
                    f.name for f in settings_of(field.metadata["section"])))
            merged[name] = from_dict(field.metadata["section"], values[name], current,
                                     f"{where}{name}.")
        elif name in values and field.metadata.get("kind") == "ranges":
            merged[name] = _merged_ranges(field, values[name], current)
        elif name in values:
            merged[name] = values[name]
        elif base is not None:
            merged[name] = current
    return cls(**merged)


def _merged_ranges(field, value, current):
    """A partial ``{name: [low, high]}`` over the current (or default) ranges."""
    if not isinstance(value, dict):
        fail(field, value, "a mapping of parameter name to [low, high]")
    return {**(current if current is not None else field.default_factory()), **value}


def to_dict(settings):
    """A dataclass of settings as a JSON-compatible dict (sections nested)."""
    return dataclasses.asdict(settings)


# ---------------------------------------------------------------------------------------
# Command-line flags
# ---------------------------------------------------------------------------------------

def flag_name(field):
    """The setting's command-line flag, e.g. ``--n-samples``."""
    return field.metadata["flag"] or "--" + field.name.replace("_", "-")


def _dest(field):
    return flag_name(field)[2:].replace("-", "_")


def _optional_number(kind):
    def parse(text):
        if text.lower() == "none":
            return None
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or none; got {text!r}") from None
    return parse


def _choice(choices):
    by_text = {str(choice).lower(): choice for choice in choices}

    def parse(text):
        if text.lower() not in by_text:
            raise argparse.ArgumentTypeError(
                f"expected one of {', '.join(by_text)}; got {text!r}")
        return by_text[text.lower()]
    return parse


def _json_object(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object; got {text!r}")
    return value


def _flag_options(field):
    meta = field.metadata
    kind = meta["kind"]
    options = {"help": f"{title(field)}: {meta['help']}", "dest": _dest(field),
               "default": argparse.SUPPRESS}  # absent unless given: "none" may be a value
    if kind == "bool":
        options["action"] = argparse.BooleanOptionalAction
    elif kind in ("int", "float"):
        options["type"] = (_optional_number(kind) if meta["optional"]
                           else int if kind == "int" else float)
    elif kind == "choice":
        options.update(type=_choice(meta["choices"]), metavar="|".join(
            str(choice).lower() for choice in meta["choices"]))
    elif kind == "choices":
        options.update(nargs=meta["nargs"] or "+", metavar="NAME")
    elif kind == "numbers":
        options.update(type=float, nargs=meta["nargs"] or "+",
                       metavar="SECONDS" if meta["unit"] == "s" else "X")
    elif kind == "ints":
        options.update(type=int, nargs="+", metavar="N")
    elif kind == "ranges":
        options.update(nargs=3, action="append", metavar=("NAME", "LOW", "HIGH"))
    else:
        options.update(type=_json_object, metavar="JSON")
    return options


def add_flags(parser, cls, groups=None):
    """One flag per setting of ``cls`` (sections' settings too) on ``parser``.

    ``groups`` maps a section's name to the argument group its flags go in.
    """
    for field in settings_of(cls):
        if "section" in field.metadata:
            add_flags((groups or {}).get(field.name, parser), field.metadata["section"])
            continue
        parser.add_argument(flag_name(field), **_flag_options(field))
        if field.metadata["fields"]:
            add_flags((groups or {}).get(field.name, parser), field.metadata["fields"])


def _flag_value(field, value):
    if field.metadata["kind"] != "ranges":
        return value
    ranges = {}
    for name, low, high in value:
        try:
            ranges[name] = [float(low), float(high)]
        except ValueError:
            fail(field, [name, low, high], "NAME LOW HIGH with numbers LOW and HIGH")
    return ranges


def given_flags(args, cls):
    """The settings given on the command line, as a partial JSON object for ``cls``."""
    given = {}
    for field in settings_of(cls):
        if "section" in field.metadata:
            nested = given_flags(args, field.metadata["section"])
            if nested:
                given[field.name] = nested
        elif field.metadata["fields"]:
            whole = getattr(args, _dest(field), {})
            keys = given_flags(args, field.metadata["fields"])
            if whole or keys:
                given[field.name] = {**whole, **keys}
        elif hasattr(args, _dest(field)):
            given[field.name] = _flag_value(field, getattr(args, _dest(field)))
    return given


def flags_of(cls):
    """Every flag the settings of ``cls`` have (sections' too), e.g. for a test."""
    flags = []
    for field in settings_of(cls):
        if "section" in field.metadata:
            flags += flags_of(field.metadata["section"])
            continue
        flags.append(flag_name(field))
        if field.metadata["fields"]:
            flags += flags_of(field.metadata["fields"])
    return flags
