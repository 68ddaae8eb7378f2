"""What the scientist gets out: posterior inference, forecasts, the least-squares baseline."""

from ei_keras.inference.default_model import default_model_path
from ei_keras.inference.least_squares import fit_least_squares, predict_readings
from ei_keras.inference.posterior import forecast, infer, load_model
from ei_keras.inference.exact_posterior import refine
from ei_keras.inference.live import LiveInference

__all__ = ["LiveInference", "default_model_path", "fit_least_squares", "forecast", "infer", "load_model", "predict_readings", "refine"]
