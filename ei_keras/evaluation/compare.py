"""The old-vs-new comparison: both recipes per prefix length, plus two ablations.

For every prefix length, ``baseline`` and ``improved`` are trained on the same samples
(and ``improved`` again on the adaptive-points dataset when one is given, for prefixes
where it has more readings); at ``ablation_prefix`` two more runs isolate weighted vs
average pooling and the variance penalty. Every best model is scored on a held-out
test set. Results: ``results.json``, ``table.md`` and ``compare.html`` in ``out_dir``.

The runs train concurrently (:func:`ei_keras.training_runs.run_trainings`: local
processes or Dask workers) into ``out_dir/runs/<name>``; rerunning into the same
``out_dir`` keeps the runs that ended and resumes the others. A run that fails is a
record with ``status: "error"`` and its one-line ``error``; the others are kept.
"""

import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ei_keras.data import load_prefix
from ei_keras.errors import EiKerasError
from ei_keras.evaluation.evaluate import decode_dataset, score_parameter
from ei_keras.fileio import write_json, write_text
from ei_keras.inference.posterior import load_model
from ei_keras.jobs import STATE_FILE, JobState, one_line
from ei_keras.training_runs import TrainingSpec, run_trainings


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
            adaptive_test_data=None, ablation_prefix=30, progress=True, executor="local",
            workers=None, scheduler=None, track=None, tracking_uri=None, **train_overrides):
    """Train and score every planned run; write results.json, table.md, compare.html.

    Adaptive-points runs (on ``adaptive_data``, scored on ``adaptive_test_data``) are
    planned only for prefix lengths where that data has more readings than ``data``.
    ``train_overrides`` (e.g. ``epochs=20, max_samples=5000``) apply to every run, so the
    comparison can be sized to the machine. ``executor``, ``workers`` and ``scheduler``
    choose where the runs train (:func:`~ei_keras.training_runs.run_trainings`);
    ``track="mlflow"`` also logs every run to MLflow, at ``tracking_uri`` (default:
    ``$MLFLOW_TRACKING_URI``, else ``out_dir/mlruns``), experiment ``ei_keras compare
    <out_dir name>``. Its state (runs done of those planned) is in
    ``out_dir/status.json`` (:mod:`ei_keras.jobs`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if track is not None:
        from ei_keras.tracking import TRACKERS, import_mlflow, resolve_tracking_uri

        if track not in TRACKERS:
            raise EiKerasError(f"track: got {track!r}; allowed: {', '.join(TRACKERS)}")
        import_mlflow()
        tracking_uri = resolve_tracking_uri(tracking_uri, out_dir)
    elif tracking_uri is not None:
        raise EiKerasError("a tracking URI needs track='mlflow' (--track mlflow)")
    where = {"executor": executor, "workers": workers, "scheduler": scheduler,
             "tracking_uri": tracking_uri}
    with JobState(out_dir / STATE_FILE, "compare", unit="runs") as job:
        return _compare(job, data, out_dir, prefix_lengths, presets, test_data, adaptive_data,
                        adaptive_test_data, ablation_prefix, progress, where, train_overrides)


def _compare(job, data, out_dir, prefix_lengths, presets, test_data, adaptive_data,
             adaptive_test_data, ablation_prefix, progress, where, train_overrides):
    n_points = {(False, length): _n_points(data, length) for length in prefix_lengths}
    if adaptive_data is not None:
        if adaptive_test_data is None:
            raise EiKerasError("adaptive runs need adaptive_test_data: a held-out set "
                               "generated with --adaptive-n-points and a different seed")
        n_points.update({(True, length): _n_points(adaptive_data, length)
                         for length in prefix_lengths})
    adaptive_lengths = {length for length in prefix_lengths
                        if n_points.get((True, length), 0) > n_points[(False, length)]}
    if ablation_prefix is not None and ablation_prefix not in prefix_lengths:
        ablation_prefix = prefix_lengths[0]
    runs = planned_runs(prefix_lengths, presets, adaptive_lengths, ablation_prefix)
    job.update(total=len(runs), planned=[run[0] for run in runs])
    experiment = f"ei_keras compare {out_dir.resolve().name}"
    specs = [TrainingSpec(name, os.fspath(adaptive_data if adaptive else data), length,
                          os.fspath(out_dir / "runs" / name), preset,
                          {**train_overrides, **overrides}, where["tracking_uri"], experiment)
             for name, length, preset, adaptive, overrides in runs]
    plan, records = {run[0]: run for run in runs}, {}

    def record_outcome(outcome):
        name, length, preset, adaptive, overrides = plan[outcome.spec.name]
        record = {"name": name, "prefix_length": length, "preset": preset,
                  "adaptive": adaptive, "overrides": overrides,
                  "n_points": n_points[(adaptive, length)],
                  "run_dir": os.fspath(outcome.spec.out_dir)}
        try:
            if outcome.error is not None:
                raise EiKerasError(outcome.error)
            history = outcome.result.history
            record.update(status=outcome.result.status, **history_summary(history),
                          learning_rate=[row["learning_rate"] for row in history],
                          val_loss=[row["val_loss"] for row in history],
                          test=_test_metrics(outcome.result.best_path,
                                             adaptive_test_data if adaptive else test_data,
                                             length))
        except Exception as error:  # this run's failure; the others go on
            record.update(status="error", error=one_line(error))
        records[name] = record
        write_json(out_dir / "results.json", [records[run[0]] for run in runs
                                              if run[0] in records])
        job.progress(len(records))

    run_trainings(specs, executor=where["executor"], workers=where["workers"],
                  scheduler=where["scheduler"], progress=progress, on_outcome=record_outcome)
    results = [records[run[0]] for run in runs]
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
        if r["status"] == "error":
            rows.append(f"| {r['name']} | {r['n_points']} | error: {r['error']} |" + " |" * 8)
            continue
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
        if r["status"] == "error":
            continue
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
