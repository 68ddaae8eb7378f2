"""Scores per trace format: prefix length × reading interval cells of an any-format test set.

A test set generated with ``--any-format --format-grid`` has exact cell values; one drawn
log-uniformly is assigned to the nearest cell in log space. Per cell and parameter the
same metrics as the whole set (RMSE of the point estimate, NLL, 50/90/95 % coverage), and
the forecast RMSE of the traces forecast in that cell.
"""

import numpy as np

from ei_keras.evaluation.metrics import LEVELS, gaussian_nll, interval_coverage

# The standard grid of the README's table (seconds).
PREFIX_CELLS_S = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
INTERVAL_CELLS_S = (0.1, 0.3, 1.0, 2.0, 5.0)


def nearest_cell(values, cells):
    """Index of the nearest cell value in log space for every value."""
    distance = np.abs(np.log(np.asarray(values, float))[:, None] - np.log(np.asarray(cells))[None])
    return np.argmin(distance, axis=1)


def format_cells(data, prefix_cells=PREFIX_CELLS_S, interval_cells=INTERVAL_CELLS_S):
    """``(prefix_cell, interval_cell)`` indices per trace of an any-format ``PrefixData``."""
    return (nearest_cell(data.sample_prefix_lengths, prefix_cells),
            nearest_cell(data.sample_reading_intervals, interval_cells))


def cell_metrics(truth, decoded, point_truth, point_estimate, prefix_index, interval_index,
                 forecast_rows=(), forecast_errors=None, prefix_cells=PREFIX_CELLS_S,
                 interval_cells=INTERVAL_CELLS_S):
    """One dict per non-empty cell.

    Args:
        truth: per parameter the truth in the network's transformed space (n,).
        decoded: per parameter ``{"loc", "scale"}`` in that space.
        point_truth, point_estimate: per parameter the truth and the point estimate in
            the space the README scores it in (log10 activity, the others physical).
        prefix_index, interval_index: cell indices per trace (:func:`format_cells`).
        forecast_rows: rows that were forecast; ``forecast_errors[k]`` is the squared
            error array of row ``forecast_rows[k]`` over the forecast grid.
    """
    cells = []
    forecast_rows = list(forecast_rows)
    for i, length in enumerate(prefix_cells):
        for j, interval in enumerate(interval_cells):
            rows = np.flatnonzero((prefix_index == i) & (interval_index == j))
            if not rows.size:
                continue
            entry = {"prefix_length_s": length, "reading_interval_s": interval,
                     "n": int(rows.size), "parameters": {}}
            for name, d in decoded.items():
                y, loc, scale = truth[name][rows], d["loc"][rows], d["scale"][rows]
                error = point_estimate[name][rows] - point_truth[name][rows]
                scores = {"rmse": float(np.sqrt(np.mean(error**2))),
                          "nll": float(np.mean(gaussian_nll(y, loc, scale)))}
                for level in LEVELS:
                    scores[f"coverage{level}"] = interval_coverage(y, loc, scale, level)
                entry["parameters"][name] = scores
            forecast = [forecast_errors[k] for k, row in enumerate(forecast_rows) if row in rows]
            entry["n_forecast"] = len(forecast)
            entry["forecast_rmse"] = (float(np.sqrt(np.mean(np.concatenate(forecast))))
                                      if forecast else None)
            cells.append(entry)
    return cells


def forecast_rows_per_cell(prefix_index, interval_index, per_cell):
    """The first ``per_cell`` rows of every cell, in file order."""
    chosen = []
    for cell in sorted(set(zip(prefix_index.tolist(), interval_index.tolist()))):
        rows = np.flatnonzero((prefix_index == cell[0]) & (interval_index == cell[1]))
        chosen += rows[:per_cell].tolist()
    return sorted(chosen)
