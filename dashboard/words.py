"""Package messages in the dashboard's words: its controls instead of API and CLI
options, parameter labels with units instead of names."""

import re

from ei_keras.simulation import KNOWN_NAMES, LABELS, LATENT_NAMES, UNITS

_DASHBOARD_WORDS = (
    (re.compile(r"\s*Pass allow_extrapolation=True.*?(to get it anyway, flagged|$)"),
     " Tick “Allow extrapolation” to get an answer anyway, flagged as one."),
    (re.compile(r",?\s*\(CLI: --minutes\)"), " with the “Time in minutes” switch"),
    (re.compile(r";\s*name it with --[\w-]+-column"),
     "; name the columns in the header row, e.g. time and pH"),
    (re.compile(r"np\.float\d+\(([^)]*)\)"), r"\1"),
)


_PINNED = re.compile(r"(the readings pin down )([\w ]+?):")


def _pinned_in_labels(match) -> str:
    labels = [LABELS.get(name, name) for name in match.group(2).split(" and ")]
    return match.group(1) + " and ".join(label[0].lower() + label[1:] for label in labels) + ":"


def in_dashboard_words(text: str) -> str:
    """``substrate_mM = 500 … Pass allow_extrapolation=True …`` → ``Urea (substrate) =
    500 mM … Tick “Allow extrapolation” …``; ``pin down k_d and tau_probe`` → ``pin down
    deactivation rate k_d and probe time constant``."""
    for pattern, words in _DASHBOARD_WORDS:
        text = pattern.sub(words, text)
    text = _PINNED.sub(_pinned_in_labels, text)
    for name in KNOWN_NAMES + LATENT_NAMES:
        unit = f" {UNITS[name]}" if UNITS.get(name) else ""
        text = re.sub(rf"\b{name} = ([-+0-9.eE]+)", rf"{LABELS[name]} = \g<1>{unit}", text)
        text = re.sub(rf"\b{name} must be finite and within \[(\S+), (\S+)\]",
                      rf"{LABELS[name]} must lie within \g<1>–\g<2>{unit}", text)
    return text


def domain_in_words(domain: dict) -> dict:
    """A domain report (``ei_keras.infer``) with its flags and notes in the dashboard's words."""
    return dict(domain, flags=[in_dashboard_words(flag) for flag in domain["flags"]],
                notes=[in_dashboard_words(note) for note in domain.get("notes", [])])
