"""The mechanistic urease/urea pH simulator (NumPy/SciPy only; never imports Keras)."""

from ei_keras.simulation.simulator import CONDITION_NAMES, simulate

# The five inputs a scientist knows. ``initial_pH`` here is the *measured* initial pH
# (true pH0 + probe offset) wherever it is fed to a network.
KNOWN_NAMES = ("substrate_mM", "grams_urease_powder", "volume_L", "temperature_C", "initial_pH")
# Latent parameters, in the order targets are stored; the nuisance pair is optional.
LATENT_NAMES = ("activity", "k_d", "tau_probe", "pH_offset")

__all__ = ["CONDITION_NAMES", "KNOWN_NAMES", "LATENT_NAMES", "simulate"]
