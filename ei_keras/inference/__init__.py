"""What the scientist gets out: posterior inference, forecasts, the least-squares baseline.

Names load on first use (``default_model_path`` and the least-squares fit need no keras).
"""

from ei_keras.lazy_imports import lazy_attributes

_ORIGINS = {
    "LiveInference": "ei_keras.inference.live",
    "default_model_path": "ei_keras.inference.default_model",
    "fit_least_squares": "ei_keras.inference.least_squares",
    "forecast": "ei_keras.inference.posterior",
    "infer": "ei_keras.inference.posterior",
    "load_model": "ei_keras.inference.posterior",
    "predict_readings": "ei_keras.inference.least_squares",
    "refine": "ei_keras.inference.exact_posterior",
}
__all__ = list(_ORIGINS)
__getattr__, __dir__ = lazy_attributes(__name__, _ORIGINS)
