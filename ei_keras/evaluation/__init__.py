"""Held-out evaluation: metrics (pure NumPy), the evaluate pipeline and its HTML report.

Import from the modules: ``from ei_keras.evaluation.evaluate import evaluate`` (loads
keras); ``ei_keras.evaluation.metrics`` never does. The package itself imports nothing,
so the ``evaluate`` module and its function cannot be confused.
"""
