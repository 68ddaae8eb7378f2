"""Held-out evaluation: metrics (pure NumPy), the evaluate pipeline and its HTML report."""

from ei_keras.evaluation.evaluate import evaluate

__all__ = ["evaluate"]
