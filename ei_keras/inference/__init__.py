"""What the scientist gets out: the least-squares baseline, posterior inference, forecasts."""

from ei_keras.inference.least_squares import fit_least_squares, predict_readings

__all__ = ["fit_least_squares", "predict_readings"]
