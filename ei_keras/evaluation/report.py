"""The evaluation report: one self-contained HTML page of tables and plotly figures."""

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy.special import ndtri

from ei_keras.targets import inverse_transform

Z90 = float(ndtri(0.95))
MAX_SCATTER = 400
AXIS_LABELS = {"activity": "log10 activity", "k_d": "k_d [1/s]", "tau_probe": "tau_probe [s]",
               "pH_offset": "pH offset"}


def _point(transform, values):
    values = np.asarray(values, dtype=float)
    return np.log10(values) if transform == "log10" else values


def recovery_figure(latent, decoded, fitted):
    """Truth vs posterior median with its 90 % interval, per parameter (log10 activity, the
    others in physical units); least squares beside."""
    names = list(decoded)
    figure = make_subplots(rows=1, cols=len(names), subplot_titles=[AXIS_LABELS.get(n, n)
                                                                    for n in names])
    for col, name in enumerate(names, start=1):
        shown = slice(0, MAX_SCATTER)
        d = decoded[name]
        transform, bounds = d["transform"], d.get("bounds")
        lo = inverse_transform(transform, d["loc"][shown] - Z90 * d["scale"][shown], bounds)
        hi = inverse_transform(transform, d["loc"][shown] + Z90 * d["scale"][shown], bounds)
        y, median = _point(transform, latent[name][shown]), _point(transform, d["median"][shown])
        figure.add_trace(go.Scatter(
            x=y, y=median, mode="markers", name="ei_keras (90 % interval)", showlegend=col == 1,
            marker=dict(size=5, color="#1f77b4", opacity=0.6),
            error_y=dict(type="data", symmetric=False, array=_point(transform, hi) - median,
                         arrayminus=median - _point(transform, lo), thickness=0.8, width=0)),
            row=1, col=col)
        if fitted:
            estimate = _point(transform, [f[name] for f in fitted])
            figure.add_trace(go.Scatter(
                x=_point(transform, latent[name][:len(fitted)]), y=estimate, mode="markers",
                name="least squares", showlegend=col == 1,
                marker=dict(size=6, color="#d62728", symbol="x")), row=1, col=col)
        low, high = float(np.min(y)), float(np.max(y))
        figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", showlegend=False,
                                    line=dict(color="gray", dash="dash")), row=1, col=col)
        figure.update_xaxes(title_text="truth", row=1, col=col)
        figure.update_yaxes(title_text="estimate", row=1, col=col)
    figure.update_layout(title="Parameter recovery on held-out traces", height=420)
    return figure


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


def calibration_figure(calibration):
    """Observed vs nominal coverage of central intervals, per parameter."""
    figure = go.Figure()
    for name, curve in calibration.items():
        figure.add_trace(go.Scatter(x=curve["nominal"], y=np.array(curve["observed"]) * 100,
                                    mode="lines+markers", name=AXIS_LABELS.get(name, name)))
    figure.add_trace(go.Scatter(x=[0, 100], y=[0, 100], mode="lines", name="ideal",
                                line=dict(color="gray", dash="dash")))
    figure.update_layout(title="Calibration: coverage of central posterior intervals",
                         xaxis_title="nominal coverage [%]", yaxis_title="observed coverage [%]",
                         height=420)
    return figure


def forecast_figure(grid, fans, true_readings, examples=4):
    """Forecast fans (5–95 %) with median and the true noise-free reading, a few traces."""
    count = min(examples, len(fans))
    figure = make_subplots(rows=1, cols=count, subplot_titles=[f"trace {i}" for i in range(count)])
    for i in range(count):
        fan = fans[i]
        figure.add_trace(go.Scatter(x=np.concatenate([grid, grid[::-1]]),
                                    y=np.concatenate([fan["hi"], fan["lo"][::-1]]),
                                    fill="toself", fillcolor="rgba(31,119,180,0.25)",
                                    line=dict(width=0), name="5–95 %", showlegend=i == 0),
                         row=1, col=i + 1)
        figure.add_trace(go.Scatter(x=grid, y=fan["median"], name="median", showlegend=i == 0,
                                    line=dict(color="#1f77b4")), row=1, col=i + 1)
        figure.add_trace(go.Scatter(x=grid, y=true_readings[i], name="truth", showlegend=i == 0,
                                    line=dict(color="black", dash="dot")), row=1, col=i + 1)
        figure.add_hline(y=fan["threshold"], line=dict(color="#d62728", dash="dash"),
                         row=1, col=i + 1)
        figure.update_xaxes(title_text="t [s]", row=1, col=i + 1)
    figure.update_layout(title="Forecast of the measured pH", height=400)
    return figure


def attention_figure(t, attention, rows=60):
    """Heat-map of the attention weights over the readings for the first traces."""
    figure = go.Figure(go.Heatmap(z=attention[:rows], x=t, colorscale="Viridis",
                                  colorbar=dict(title="weight")))
    figure.update_layout(title="Attention over the readings", xaxis_title="t [s]",
                         yaxis_title="trace", height=420)
    return figure


def information_figure(examples, agreement):
    """Per trace: the attention on each reading beside the Fisher information each reading
    carries about each parameter, every curve scaled to its own maximum."""
    figure = make_subplots(rows=1, cols=len(examples),
                           subplot_titles=[f"trace {i}" for i in range(len(examples))])
    colours = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2")
    for col, (t, attention, information) in enumerate(examples, start=1):
        figure.add_trace(go.Scatter(x=t, y=attention / max(attention.max(), 1e-30),
                                    name="attention", showlegend=col == 1, mode="lines",
                                    line=dict(color="#1f77b4", width=3)), row=1, col=col)
        for colour, (name, info) in zip(colours, information.items()):
            figure.add_trace(go.Scatter(x=t, y=info / max(info.max(), 1e-30), mode="lines",
                                        name=f"information: {AXIS_LABELS.get(name, name)}",
                                        showlegend=col == 1, line=dict(color=colour, dash="dot")),
                             row=1, col=col)
        figure.update_xaxes(title_text="t [s]", row=1, col=col)
    rho = agreement.get("median_spearman", {})
    figure.update_layout(
        title="Attention vs what each reading tells (each curve / its maximum); median "
              "Spearman over traces: " + ", ".join(f"{n} {v:.2f}" for n, v in rho.items()),
        height=420, yaxis_title="relative weight")
    return figure


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


def build_report(metrics, *, latent, decoded, fitted, data, attention, grid, fans,
                 true_readings, information_examples=()):
    """The full HTML page (plotly.js embedded once, so it opens offline)."""
    valid = np.isfinite(data.t[0])
    figures = [recovery_figure(latent, decoded, fitted),
               calibration_figure(metrics["calibration"]),
               forecast_figure(grid, fans, true_readings),
               attention_figure(data.t[0][valid], attention[:, :int(valid.sum())])]
    if information_examples:
        figures.append(information_figure(information_examples,
                                          metrics["attention_information"]))
    body = [figure.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
            for i, figure in enumerate(figures)]
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
