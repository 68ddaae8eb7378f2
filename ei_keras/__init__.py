"""ei_keras: early inference of urease kinetics from the first seconds of a pH trace.

The mechanistic simulator (``ei_keras.simulate``) generates training data; a Keras 3
network amortises the inverse problem. Keras defaults to the torch backend unless the
user has chosen one through ``KERAS_BACKEND``.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
# One OpenMP thread unless the user chose otherwise: on the 2-core machines we measured,
# torch's intra-op threads made the compact model 5x slower to train and conv1d calls of
# single-trace inference 300x slower (spinning threads on tiny ops). Read at torch import.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from ei_keras.errors import EiKerasError  # noqa: E402
from ei_keras.simulation import simulate  # noqa: E402
from ei_keras.data import generate_dataset, load_prefix, load_trajectories  # noqa: E402
from ei_keras.data import load_any_format  # noqa: E402
from ei_keras.simulation.measurement import get_adaptive_prefix_n_points  # noqa: E402
from ei_keras import callbacks, layers, losses, optimizers  # noqa: E402
from ei_keras.models import build_model  # noqa: E402
from ei_keras.training import train  # noqa: E402
from ei_keras.inference import (  # noqa: E402
    LiveInference,
    default_model_path,
    fit_least_squares,
    forecast,
    infer,
    refine,
)

__version__ = "0.1.0"

__all__ = [
    "EiKerasError",
    "simulate",
    "generate_dataset",
    "load_prefix",
    "load_any_format",
    "load_trajectories",
    "get_adaptive_prefix_n_points",
    "callbacks",
    "layers",
    "losses",
    "optimizers",
    "build_model",
    "train",
    "LiveInference",
    "default_model_path",
    "fit_least_squares",
    "forecast",
    "infer",
    "refine",
    "__version__",
]
