"""The old-vs-new comparison: both recipes per prefix length, plus two ablations.

For every prefix length, ``baseline`` and ``improved`` are trained on the same samples
(and ``improved`` again on the adaptive-points dataset when one is given, for prefixes
where it has more readings); at ``ablation_prefix`` two more runs isolate weighted vs
average pooling and the variance penalty. Every best model is scored on a held-out
test set. Results: ``results.json``, ``table.md`` and ``compare.html`` in ``out_dir``.
"""

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ei_keras.data import load_prefix
from ei_keras.errors import EiKerasError
from ei_keras.evaluation.evaluate import decode_dataset, score_parameter
from ei_keras.fileio import write_json, write_text
from ei_keras.inference.posterior import load_model
from ei_keras.training import train


def planned_runs(prefix_lengths, presets, adaptive_lengths, ablation_prefix):
    """(name, prefix length, preset, uses adaptive data, training overrides) of each run.

    ``adaptive_lengths``: prefix lengths where the adaptive dataset has more readings.
    """
    runs = []
    for length in prefix_lengths:
        for preset in presets:
            runs.append((f"{preset}-{length:g}s", length, preset, False, {}))
        if length in adaptive_lengths and "improved" in presets:
            runs.append((f"improved-adaptive-{length:g}s", length, "improved", True, {}))
    if ablation_prefix is not None and "improved" in presets:
        runs.append((f"improved-average-pooling-{ablation_prefix:g}s", ablation_prefix,
                     "improved", False, {"pooling": "average"}))
        runs.append((f"improved-no-variance-penalty-{ablation_prefix:g}s", ablation_prefix,
                     "improved", False, {"variance_weight": 0.0}))
    return runs


def history_summary(history):
    """Best/final val NLL, epochs to converge and how smoothly the loss fell."""
    val = np.array([row["val_loss"] for row in history], dtype=float)
    train_loss = np.array([row["loss"] for row in history], dtype=float)
    best = int(np.nanargmin(val))
    span = val[0] - val[best]
    # Converged: first epoch within 5 % of the total improvement from the best value.
    converged = int(np.argmax(val <= val[best] + 0.05 * span)) + 1 if span > 0 else best + 1
    steps = np.diff(val)
    return {
        "epochs": len(val), "best_val_nll": float(val[best]), "best_epoch": best + 1,
        "final_val_nll": float(val[-1]), "final_train_nll": float(train_loss[-1]),
        "epochs_to_converge": converged,
        # Smoothness: share of epochs whose val loss rose, and total rise relative to drop.
        "val_rises": float(np.mean(steps > 0)) if len(steps) else 0.0,
        "val_roughness": float(np.sum(np.clip(steps, 0, None)) / span) if span > 0 else 0.0,
    }


def compare(data, out_dir, *, prefix_lengths=(10, 30, 60, 300),
            presets=("baseline", "improved"), test_data, adaptive_data=None,
            adaptive_test_data=None, ablation_prefix=30, progress=True, **train_overrides):
    """Train and score every planned run; write results.json, table.md, compare.html.

    Adaptive-points runs (on ``adaptive_data``, scored on ``adaptive_test_data``) are
    planned only for prefix lengths where that data has more readings than ``data``.
    ``train_overrides`` (e.g. ``epochs=20, max_samples=5000``) apply to every run, so the
    comparison can be sized to the machine.
    """
    n_points = {(False, length): _n_points(data, length) for length in prefix_lengths}
    if adaptive_data is not None:
        if adaptive_test_data is None:
            raise EiKerasError("adaptive runs need adaptive_test_data: a held-out set "
                               "generated with --adaptive-n-points and a different seed")
        n_points.update({(True, length): _n_points(adaptive_data, length)
                         for length in prefix_lengths})
    adaptive_lengths = {length for length in prefix_lengths
                        if n_points.get((True, length), 0) > n_points[(False, length)]}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if ablation_prefix is not None and ablation_prefix not in prefix_lengths:
        ablation_prefix = prefix_lengths[0]
    results = []
    for name, length, preset, adaptive, overrides in planned_runs(
            prefix_lengths, presets, adaptive_lengths, ablation_prefix):
        source = adaptive_data if adaptive else data
        result = train(source, length, preset, out_dir / "runs" / name,
                       verbose=1 if progress else 0, **{**train_overrides, **overrides})
        record = {"name": name, "prefix_length": length, "preset": preset,
                  "adaptive": adaptive, "overrides": overrides, "status": result.status,
                  "run_dir": str(result.run_dir), **history_summary(result.history),
                  "learning_rate": [row["learning_rate"] for row in result.history],
                  "val_loss": [row["val_loss"] for row in result.history]}
        record["n_points"] = n_points[(adaptive, length)]
        record["test"] = _test_metrics(result.best_path,
                                       adaptive_test_data if adaptive else test_data, length)
        results.append(record)
        write_json(out_dir / "results.json", results)
    write_text(out_dir / "table.md", results_table(results))
    write_text(out_dir / "compare.html", comparison_page(results))
    return results


def _n_points(path, prefix_length):
    return int(load_prefix(path, prefix_length).pH.shape[1])


def _test_metrics(model_path, test_data, prefix_length):
    model = load_model(model_path)
    data = load_prefix(test_data, prefix_length)
    decoded, _ = decode_dataset(model, data)
    latent = {name: data.latent[:, j] for j, name in enumerate(data.latent_names)}
    return {name: score_parameter(latent[name], d) for name, d in decoded.items()}


def results_table(results):
    """Markdown table, one row per run."""
    header = ("| run | readings | epochs | best val NLL | final val NLL | epochs to converge | val rises "
              "| log10 activity R² | act. cov90 | k_d R² | k_d cov90 |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for r in results:
        activity, k_d = r["test"]["activity"], r["test"]["k_d"]
        rows.append(
            f"| {r['name']} | {r['n_points']} | {r['epochs']} | {r['best_val_nll']:.3f} | {r['final_val_nll']:.3f} "
            f"| {r['epochs_to_converge']} | {r['val_rises']:.2f} | {activity['r2']:.3f} "
            f"| {activity['coverage90']:.2f} | {k_d['r2']:.3f} | {k_d['coverage90']:.2f} |")
    return header + "\n".join(rows) + "\n"


def comparison_page(results):
    """Validation NLL and learning-rate curves of every run, and the table."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("validation NLL", "learning rate"))
    for r in results:
        epochs = list(range(1, r["epochs"] + 1))
        figure.add_trace(go.Scatter(x=epochs, y=r["val_loss"], name=r["name"],
                                    legendgroup=r["name"]), row=1, col=1)
        figure.add_trace(go.Scatter(x=epochs, y=r["learning_rate"], name=r["name"],
                                    legendgroup=r["name"], showlegend=False), row=1, col=2)
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(type="log", row=1, col=2)
    figure.update_layout(height=480, title="Baseline vs improved recipe")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>ei_keras comparison"
            f"</title></head><body>{figure.to_html(full_html=False, include_plotlyjs='inline')}"
            f"<pre>{results_table(results)}</pre></body></html>")
