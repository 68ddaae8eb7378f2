"""ei_keras: early inference of urease kinetics from the first seconds of a pH trace.

The mechanistic simulator (``ei_keras.simulate``) generates training data; a Keras 3
network amortises the inverse problem. Keras defaults to the torch backend unless the
user has chosen one through ``KERAS_BACKEND``.

Names load on first use: ``import ei_keras.simulation`` loads neither keras nor a
backend; ``ei_keras.infer`` or ``ei_keras.train`` loads them when first read.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
# One OpenMP thread unless the user chose otherwise: on the 2-core machines we measured,
# torch's intra-op threads made the compact model 5x slower to train and conv1d calls of
# single-trace inference 300x slower (spinning threads on tiny ops). Read at torch import.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from ei_keras.lazy_imports import lazy_attributes, register_after_keras  # noqa: E402

__version__ = "0.1.0"

_ORIGINS = {
    "EiKerasError": "ei_keras.errors",
    "simulate": "ei_keras.simulation",
    "generate_dataset": "ei_keras.data",
    "load_prefix": "ei_keras.data",
    "load_any_format": "ei_keras.data",
    "load_trajectories": "ei_keras.data",
    "get_adaptive_prefix_n_points": "ei_keras.simulation.measurement",
    "build_model": "ei_keras.models",
    "train": "ei_keras.training",
    "LiveInference": "ei_keras.inference",
    "default_model_path": "ei_keras.inference",
    "fit_least_squares": "ei_keras.inference",
    "forecast": "ei_keras.inference",
    "infer": "ei_keras.inference",
    "refine": "ei_keras.inference",
}
# Submodules that are part of the public API (``__all__``), and others reachable as
# attributes after a bare ``import ei_keras``, e.g. ``ei_keras.models``.
_PUBLIC_MODULES = ("callbacks", "layers", "losses", "optimizers")
_MODULES = (*_PUBLIC_MODULES, "config", "data", "evaluation", "inference", "models",
            "simulation", "training")
__all__ = [*_ORIGINS, *_PUBLIC_MODULES, "__version__"]
__getattr__, __dir__ = lazy_attributes(__name__, _ORIGINS, _MODULES)
register_after_keras()
