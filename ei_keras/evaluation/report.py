"""The evaluation report: one self-contained HTML page of tables and plotly figures."""

import html

import numpy as np
from scipy.special import ndtri

from ei_keras.evaluation import figures
from ei_keras.targets import inverse_transform

Z90 = float(ndtri(0.95))
MAX_SCATTER = 400
AXIS_LABELS = {"activity": "log10 activity", "k_d": "k_d [1/s]", "tau_probe": "tau_probe [s]",
               "pH_offset": "pH offset"}


def recovery_estimates(latent, decoded, fitted):
    """The first ``MAX_SCATTER`` traces' truth, median and 90 % interval per parameter
    (physical units), and least squares' estimates of the traces it fitted, as
    :func:`figures.recovery_figure` takes them."""
    shown = slice(0, MAX_SCATTER)
    estimates, baseline = {}, {}
    for name, d in decoded.items():
        loc, scale = d["loc"][shown], d["scale"][shown]
        estimates[name] = {
            "truth": latent[name][shown], "median": d["median"][shown],
            "lo90": inverse_transform(d["transform"], loc - Z90 * scale, d.get("bounds")),
            "hi90": inverse_transform(d["transform"], loc + Z90 * scale, d.get("bounds"))}
        if fitted:
            baseline[name] = {"truth": latent[name][:len(fitted)],
                              "estimate": [f[name] for f in fitted]}
    return estimates, baseline


def format_table(cells, decoded_names):
    """Heat-map table of the 90 % coverage and RMSE per prefix length × reading interval."""
    if not cells:
        return ""
    parts = ["<h2>By trace format</h2><p>Per cell: 90 % coverage (green near 0.90, red far "
             "from it), RMSE of the point estimate (log10 activity; the others in physical "
             "units) and the forecast RMSE [pH] of the traces forecast there.</p>"]
    intervals = sorted({c["reading_interval_s"] for c in cells})
    lengths = sorted({c["prefix_length_s"] for c in cells})
    by_key = {(c["prefix_length_s"], c["reading_interval_s"]): c for c in cells}
    header = "".join(f"<th>every {dt:g} s</th>" for dt in intervals)
    for name in list(decoded_names) + ["forecast"]:
        rows = []
        for length in lengths:
            row = []
            for dt in intervals:
                cell = by_key.get((length, dt))
                if cell is None:
                    row.append("<td>–</td>")
                elif name == "forecast":
                    value = cell["forecast_rmse"]
                    row.append(f"<td>{value:.3f}</td>" if value is not None else "<td>–</td>")
                else:
                    scores = cell["parameters"][name]
                    miss = min(abs(scores["coverage90"] - 0.9) / 0.1, 1.0)
                    colour = f"rgb({int(255 * miss)},{int(200 * (1 - miss)) + 55},90)"
                    row.append(f'<td style="background:{colour}">{scores["coverage90"]:.2f} / '
                               f'{scores["rmse"]:.3g} <small>(n={cell["n"]})</small></td>')
            rows.append(f"<tr><th>{length:g} s</th>{''.join(row)}</tr>")
        title = "forecast RMSE [pH]" if name == "forecast" else \
            f"{AXIS_LABELS.get(name, name)}: 90 % coverage / RMSE"
        parts.append(f"<h3>{title}</h3><table><tr><th>trace length</th>{header}</tr>"
                     f"{''.join(rows)}</table>")
    return "".join(parts)


def _metrics_table(metrics):
    columns = ["mae", "rmse", "r2", "nll", "crps", "coverage50", "coverage90", "coverage95",
               "z_mean", "z_std", "contraction"]
    rows = []
    for name, entry in metrics["parameters"].items():
        for source in ("model", "model_subset", "least_squares_subset"):
            if source not in entry:
                continue
            cells = "".join(f"<td>{entry[source][c]:.4g}</td>" if c in entry[source] else "<td>–</td>"
                            for c in columns)
            rows.append(f"<tr><td>{AXIS_LABELS.get(name, name)}</td><td>{source}</td>{cells}</tr>")
    header = "".join(f"<th>{c}</th>" for c in ["parameter", "estimator"] + columns)
    forecast_rows = "".join(
        f"<tr><td>{source}</td>" + "".join(f"<td>{value:.4g}</td>" for value in entry.values()
                                            if isinstance(value, float)) + "</tr>"
        for source, entry in metrics["forecast"].items())
    forecast_header = "".join(f"<th>{k}</th>" for k in ["estimator"] + [
        k for k, v in metrics["forecast"]["model"].items() if isinstance(v, float)])
    return (f"<table><tr>{header}</tr>{''.join(rows)}</table>"
            f"<h3>Forecast (measured pH)</h3><table><tr>{forecast_header}</tr>{forecast_rows}</table>")


def build_report(metrics, *, latent, decoded, fitted, data, attention, fans, true_readings,
                 information_examples=()):
    """The full HTML page (plotly.js embedded once, so it opens offline)."""
    valid = np.isfinite(data.t[0])
    estimates, baseline = recovery_estimates(latent, decoded, fitted)
    shown = [figures.recovery_figure(estimates, baseline,
                                     title="Parameter recovery on held-out traces"),
             figures.calibration_figure(metrics["calibration"]),
             figures.forecast_examples_figure(fans, true_readings),
             figures.attention_heatmap_figure(data.t[0][valid],
                                              attention[:, :int(valid.sum())])]
    if information_examples:
        shown.append(figures.information_figure(
            information_examples, metrics["attention_information"].get("median_spearman")))
    body = [figure.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
            for i, figure in enumerate(shown)]
    seconds = metrics["seconds_per_trace"]
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ei_keras evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}</style></head><body>
<h1>ei_keras evaluation</h1>
<p>Model <code>{html.escape(metrics['model'])}</code> on <code>{html.escape(metrics['data'])}</code>
({metrics['n_test']} held-out traces, {"of every format up to " if metrics.get('any_format') else ""}{metrics['prefix_length_s']:g} s{"" if metrics.get('any_format') else " prefixes"}).
The test set was generated with seed {metrics['data_seed']}; it must differ from the training
set's seed, so that no test trace was seen in training.</p>
<p>{html.escape(metrics['note'])}. Least squares (physics.md §10) and the "_subset" rows use the
first {metrics['n_baseline']} traces; forecasts the first {metrics['n_forecast']}.
Wall time per trace: ei_keras {seconds['model'] * 1e3:.1f} ms, least squares
{seconds['least_squares'] * 1e3:.0f} ms.</p>
<h2>Metrics</h2>{_metrics_table(metrics)}
{format_table(metrics.get("by_format"), decoded)}
{''.join(body)}
</body></html>"""
