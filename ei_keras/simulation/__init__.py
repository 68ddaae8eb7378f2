"""The mechanistic urease/urea pH simulator (NumPy, SciPy and numba; never imports Keras)."""

from ei_keras.simulation.simulator import CONDITION_NAMES, simulate

# The five inputs a scientist knows. ``initial_pH`` here is the *measured* initial pH
# (true pH0 + probe offset) wherever it is fed to a network.
KNOWN_NAMES = ("substrate_mM", "grams_urease_powder", "volume_L", "temperature_C", "initial_pH")
# Latent parameters, in the order targets are stored; the nuisance pair is optional.
LATENT_NAMES = ("activity", "k_d", "tau_probe", "pH_offset")

# Units and the words a user sees for every known input and latent parameter; the CLI,
# the report and the dashboard all label with these.
UNITS = {
    "substrate_mM": "mM", "grams_urease_powder": "g", "volume_L": "L", "temperature_C": "°C",
    "initial_pH": "pH", "activity": "", "k_d": "1/s", "tau_probe": "s", "pH_offset": "pH",
}
LABELS = {
    "substrate_mM": "Urea (substrate)", "grams_urease_powder": "Urease powder",
    "volume_L": "Volume", "temperature_C": "Temperature", "initial_pH": "Initial pH (measured)",
    "activity": "Activity", "k_d": "Deactivation rate k_d", "tau_probe": "Probe time constant",
    "pH_offset": "Probe offset",
}



def label(name):
    """A parameter's words with its unit, e.g. ``Volume [L]`` (the name if unknown)."""
    unit = UNITS.get(name, "")
    return f"{LABELS.get(name, name)} [{unit}]" if unit else LABELS.get(name, name)


__all__ = ["CONDITION_NAMES", "KNOWN_NAMES", "LABELS", "LATENT_NAMES", "UNITS", "label",
           "simulate"]
