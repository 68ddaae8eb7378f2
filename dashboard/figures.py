"""Plotly figure builders for the dashboard (no Streamlit here; plain data in, figure out)."""

import math

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

COLORS = qualitative.Plotly
BAND = "rgba(31,119,180,0.22)"
TRUTH = "#d62728"
NAMES = {"activity": "activity", "k_d": "k_d [1/s]", "tau_probe": "tau_probe [s]",
         "pH_offset": "pH offset [pH]"}
LOG_AXES = ("activity",)


def _layout(figure, title, height=380, **kwargs):
    """Common layout: title top left, legend in one row under the plot."""
    figure.update_layout(title=dict(text=title, x=0.0, xanchor="left"), height=height,
                         margin=dict(l=60, r=20, t=70 if title else 40, b=100),
                         legend=dict(orientation="h", yanchor="top", y=-0.2, x=0.0,
                                     xanchor="left"), **kwargs)
    return figure


def _rate_axis(figure, rates, row, col):
    """Log axis for learning rates spanning over a decade, else linear; ticks as 1e-3."""
    rates = [v for v in rates if v is not None and v > 0]
    log = bool(rates) and max(rates) / min(rates) > 10
    figure.update_yaxes(type="log" if log else "linear", exponentformat="e",
                        tickformat=None if log else ".1e", row=row, col=col)


def preview_figure(preview, prefix_length):
    """Full trajectories (true pH, measured readings) and one prefix of a few cases."""
    figure = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], subplot_titles=(
        "Full trajectory", f"Prefix: first {prefix_length:g} s (what the network sees)"))
    trajectory = preview["trajectory"]
    prefix = preview["prefixes"][prefix_length]
    for i in range(len(trajectory["pH_true"])):
        color = COLORS[i % len(COLORS)]
        name = f"case {i + 1}"
        figure.add_trace(go.Scatter(x=trajectory["t"], y=trajectory["pH_measured"][i],
                                    mode="markers", marker=dict(size=3, color=color, opacity=0.4),
                                    name=name, legendgroup=name, showlegend=False), 1, 1)
        figure.add_trace(go.Scatter(x=trajectory["t"], y=trajectory["pH_true"][i], mode="lines",
                                    line=dict(color=color), name=name, legendgroup=name), 1, 1)
        figure.add_trace(go.Scatter(x=prefix["t"], y=prefix["pH"][i], mode="lines+markers",
                                    marker=dict(size=4, color=color), line=dict(width=1),
                                    name=name, legendgroup=name, showlegend=False), 1, 2)
    figure.update_xaxes(title_text="time [s]")
    figure.update_yaxes(title_text="pH", col=1)
    figure.update_yaxes(title_text="measured pH", col=2)
    return _layout(figure, "Preview: lines = true pH, dots = measured readings", height=460)


def training_figure(history, warmup_epochs=0, best_epoch=None):
    """Loss and val_loss per epoch over the learning rate (log scale), warmup shaded."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           row_heights=[0.62, 0.38], subplot_titles=("Loss", "Learning rate"))
    epochs = [record["epoch"] for record in history]
    for key, color in (("loss", COLORS[0]), ("val_loss", COLORS[1])):
        values = [record.get(key) for record in history]
        if any(v is not None for v in values):
            figure.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers", name=key,
                                        line=dict(color=color)), 1, 1)
    rates = [record.get("learning_rate") for record in history]
    if any(v is not None for v in rates):
        figure.add_trace(go.Scatter(x=epochs, y=rates, mode="lines+markers",
                                    name="learning rate", line=dict(color=COLORS[2], shape="hv")),
                         2, 1)
        _rate_axis(figure, rates, 2, 1)
    if best_epoch:
        best = next((r for r in history if r["epoch"] == best_epoch), None)
        if best is not None and best.get("val_loss") is not None:
            figure.add_trace(go.Scatter(x=[best_epoch], y=[best["val_loss"]], mode="markers",
                                        marker=dict(symbol="star", size=14, color=TRUTH),
                                        name="best model"), 1, 1)
    if warmup_epochs and epochs:
        for row in (1, 2):
            label = dict(annotation_text="warmup", annotation_position="top left") \
                if row == 1 else {}
            figure.add_vrect(x0=0.5, x1=min(warmup_epochs, max(epochs)) + 0.5, fillcolor="gray",
                             opacity=0.12, line_width=0, row=row, col=1, **label)
    # Keep the first (often huge) epochs from flattening the rest of the curve.
    losses = [v for r in history for v in (r.get("loss"), r.get("val_loss"))
              if v is not None and math.isfinite(v)]
    if len(history) >= 4 and losses:
        later = [v for r in history[len(history) // 4:] for v in (r.get("loss"), r.get("val_loss"))
                 if v is not None and math.isfinite(v)]
        low, high = min(losses), max(later)
        pad = 0.1 * (high - low or 1.0)
        figure.update_yaxes(range=[low - pad, high + pad], row=1, col=1)
    figure.update_xaxes(title_text="epoch", row=2, col=1)
    if epochs and max(epochs) <= 20:
        figure.update_xaxes(dtick=1, tick0=1)
    return _layout(figure, None, height=520)


def _rho_text(value):
    return "ρ n/a" if value is None or not math.isfinite(value) else f"ρ = {value:.2f}"


def attention_figure(t, pH, attention, information=None, agreement=None, used=None):
    """The pH trace with the network's attention weight on each reading.

    With ``information`` (per parameter an array over the first ``used`` readings, see
    ``ei_keras.inference.information.reading_information``) a second panel on the same
    time axis shows what each reading tells about each parameter, each scaled to its own
    largest value, beside the attention scaled the same way (dashed); ``agreement`` (per
    parameter the Spearman correlation with the attention) is named in the legend.
    Readings past ``used`` (cut by the model's trained maximum) are shaded.
    """
    t, pH, attention = (np.asarray(v, dtype=float) for v in (t, pH, attention))
    used = len(t) if used is None else int(used)
    rows = 2 if information else 1
    figure = make_subplots(
        rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.1,
        row_heights=[0.55, 0.45][:rows], specs=[[{"secondary_y": True}]] + [[{}]] * (rows - 1),
        subplot_titles=(None, "Information per reading (each parameter scaled to its "
                              "largest)") if rows == 2 else None)
    width = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    figure.add_trace(go.Bar(x=t, y=attention, width=width, name="attention weight",
                            marker=dict(color="rgba(255,127,14,0.55)")), 1, 1, secondary_y=True)
    figure.add_trace(go.Scatter(
        x=t, y=pH, mode="lines+markers", name="measured pH", line=dict(color="#1f77b4", width=1),
        marker=dict(size=7 if len(t) <= 200 else 4, color=attention, colorscale="Oranges",
                    line=dict(width=0.5, color="#1f77b4"))), 1, 1, secondary_y=False)
    if information:
        top = attention[:used].max() if used else 0.0
        figure.add_trace(go.Scatter(
            x=t[:used], y=attention[:used] / top if top > 0 else attention[:used], mode="lines",
            name="attention (scaled)", line=dict(color="rgba(255,127,14,0.9)", dash="dash")),
            2, 1)
        for i, (name, values) in enumerate(information.items()):
            values = np.asarray(values, dtype=float)
            peak = values.max() if values.size else 0.0
            rho = _rho_text((agreement or {}).get(name))
            figure.add_trace(go.Scatter(
                x=t[:used], y=values / peak if peak > 0 else values, mode="lines",
                name=f"{NAMES.get(name, name)} information ({rho} with attention)",
                line=dict(color=COLORS[(i + 2) % len(COLORS)], width=2)), 2, 1)
        figure.update_yaxes(title_text="share of its largest", range=[0, 1.05], row=2, col=1)
    if used < len(t):
        for row in range(1, rows + 1):
            label = dict(annotation_text="not read: past the trained maximum",
                         annotation_position="top left") if row == 1 else {}
            figure.add_vrect(x0=t[used - 1] if used else t[0], x1=t[-1], fillcolor="gray",
                             opacity=0.12, line_width=0, row=row, col=1, **label)
    figure.update_xaxes(title_text="time [s]", row=rows, col=1)
    figure.update_yaxes(title_text="pH", secondary_y=False, row=1, col=1)
    figure.update_yaxes(title_text="attention weight", secondary_y=True, rangemode="tozero",
                        showgrid=False, row=1, col=1)
    return _layout(figure, "pH trace and attention: where the network looked",
                   height=440 + 260 * (rows - 1), bargap=0)


def posterior_figure(posterior, truth=None):
    """Per parameter: median, 50/90/95 % intervals and the true value when known."""
    names = list(posterior)
    figure = make_subplots(rows=len(names), cols=1, vertical_spacing=0.5 / max(len(names), 1),
                           subplot_titles=[NAMES.get(n, n) for n in names])
    for row, name in enumerate(names, start=1):
        stats = posterior[name]
        for level, width, alpha in ((95, 6, 0.25), (90, 12, 0.4), (50, 22, 0.75)):
            figure.add_trace(go.Scatter(
                x=[stats[f"lo{level}"], stats[f"hi{level}"]], y=[0, 0], mode="lines",
                line=dict(width=width, color=f"rgba(31,119,180,{alpha})"),
                name=f"{level} % interval", legendgroup=f"i{level}", showlegend=row == 1,
                hovertemplate=f"{level} %%: %{{x:.4g}}<extra></extra>"), row, 1)
        figure.add_trace(go.Scatter(x=[stats["median"]], y=[0], mode="markers",
                                    marker=dict(symbol="diamond", size=14, color="#0b3d6b"),
                                    name="median", legendgroup="median", showlegend=row == 1,
                                    hovertemplate="median %{x:.4g}<extra></extra>"), row, 1)
        if truth and name in truth and truth[name] is not None:
            figure.add_trace(go.Scatter(x=[truth[name]], y=[0], mode="markers",
                                        marker=dict(symbol="star", size=16, color=TRUTH),
                                        name="truth", legendgroup="truth", showlegend=row == 1,
                                        hovertemplate="truth %{x:.4g}<extra></extra>"), row, 1)
        if name in LOG_AXES and stats["lo95"] > 0:
            figure.update_xaxes(type="log", dtick=1, exponentformat="power", row=row, col=1)
        figure.update_yaxes(visible=False, range=[-1, 1], row=row, col=1)
    return _layout(figure, "Posterior of each parameter", height=170 + 135 * len(names))


EXACT = "148,103,189"  # the exact posterior's colour; the network's is the posterior's blue


def exact_figure(network, exact, truth=None):
    """Per parameter the network's and the exact 50/90 % intervals and medians, one above
    the other on a shared axis (log for activity), and the true value when known.

    ``network`` and ``exact`` map each parameter to a summary with ``median, lo50, hi50,
    lo90, hi90`` (physical units), as ``ei_keras.refine`` returns them.
    """
    names = [name for name in exact if name in network]
    figure = make_subplots(rows=len(names), cols=1, vertical_spacing=0.5 / max(len(names), 1),
                           subplot_titles=[NAMES.get(n, n) for n in names])
    rows = (("network", network, 0.5, "31,119,180", "#0b3d6b"),
            ("exact", exact, -0.5, EXACT, "#4b2d6b"))
    for row, name in enumerate(names, start=1):
        for label, summaries, y, rgb, dark in rows:
            stats = summaries[name]
            for level, width, alpha in ((90, 10, 0.4), (50, 20, 0.8)):
                figure.add_trace(go.Scatter(
                    x=[stats[f"lo{level}"], stats[f"hi{level}"]], y=[y, y], mode="lines",
                    line=dict(width=width, color=f"rgba({rgb},{alpha})"),
                    name=f"{label}: {level} % interval", legendgroup=f"{label}{level}",
                    showlegend=row == 1,
                    hovertemplate=f"{label} {level} %%: %{{x:.4g}}<extra></extra>"), row, 1)
            figure.add_trace(go.Scatter(
                x=[stats["median"]], y=[y], mode="markers",
                marker=dict(symbol="diamond", size=13, color=dark), name=f"{label}: median",
                legendgroup=f"{label}median", showlegend=row == 1,
                hovertemplate=f"{label} median %{{x:.4g}}<extra></extra>"), row, 1)
        if truth and truth.get(name) is not None:
            figure.add_trace(go.Scatter(x=[truth[name]], y=[0], mode="markers",
                                        marker=dict(symbol="star", size=15, color=TRUTH),
                                        name="truth", legendgroup="truth", showlegend=row == 1,
                                        hovertemplate="truth %{x:.4g}<extra></extra>"), row, 1)
        ends = [summaries[name][key] for _, summaries, *_ in rows for key in ("lo90", "hi90")]
        ends += [truth[name]] if truth and truth.get(name) is not None else []
        ends = np.asarray([v for v in ends if v is not None and math.isfinite(v)], dtype=float)
        log = name in LOG_AXES and ends.size > 0 and ends.min() > 0
        if ends.size:  # both intervals whole, with a margin
            low, high = (np.log10(ends) if log else ends).min(), \
                (np.log10(ends) if log else ends).max()
            pad = 0.06 * (high - low) if high > low else (0.1 if log else 0.1 * abs(high) or 1)
            figure.update_xaxes(range=[low - pad, high + pad], row=row, col=1)
        if log:
            figure.update_xaxes(type="log", dtick=1, exponentformat="power", row=row, col=1)
        figure.update_yaxes(range=[-1.2, 1.2], tickvals=[0.5, -0.5], zeroline=False,
                            ticktext=["network", "exact"], showgrid=False, row=row, col=1)
    return _layout(figure, "Exact posterior beside the network's",
                   height=190 + 150 * len(names))


def forecast_figure(fc, trace):
    """Forecast fan (5–95 %) of the measured pH, the prefix, the truth and the threshold."""
    t = np.asarray(fc["t"], dtype=float)
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=np.concatenate([t, t[::-1]]),
                                y=np.concatenate([fc["hi"], np.asarray(fc["lo"])[::-1]]),
                                fill="toself", fillcolor=BAND, line=dict(width=0),
                                name="5–95 % band", hoverinfo="skip"))
    figure.add_trace(go.Scatter(x=t, y=fc["median"], mode="lines", name="forecast median",
                                line=dict(color="#1f77b4", width=2)))
    if trace.get("trajectory"):
        figure.add_trace(go.Scatter(x=trace["trajectory"]["t"], y=trace["trajectory"]["pH"],
                                    mode="lines", name="what happened (simulated)",
                                    line=dict(color="black", dash="dot", width=1.5)))
    figure.add_trace(go.Scatter(x=trace["t"], y=trace["pH"], mode="markers",
                                marker=dict(size=4, color="#ff7f0e"), name="prefix readings"))
    figure.add_hline(y=fc["threshold"], line=dict(color=TRUTH, dash="dash"),
                     annotation_text=f"threshold pH {fc['threshold']:g}",
                     annotation_position="bottom right")
    ttt = fc["time_to_threshold"]
    if math.isfinite(ttt["lo"]):
        high = ttt["hi"] if math.isfinite(ttt["hi"]) else float(t[-1])
        figure.add_vrect(x0=ttt["lo"], x1=high, fillcolor=TRUTH, opacity=0.08, line_width=0)
    if math.isfinite(ttt["median"]):
        figure.add_vline(x=ttt["median"], line=dict(color=TRUTH, width=1),
                         annotation_text=f"reached at ~{ttt['median']:.0f} s",
                         annotation_position="top left")
    figure.update_xaxes(title_text="time [s]")
    figure.update_yaxes(title_text="measured pH")
    return _layout(figure, "Forecast of the measured pH", height=460)


def _interval_errors(median, low, high):
    return dict(type="data", symmetric=False, array=np.maximum(high - median, 0),
                arrayminus=np.maximum(median - low, 0), thickness=0.8, width=0)


def recovery_figure(evaluation, names):
    """Truth vs posterior median with 90 % intervals, per parameter."""
    figure = make_subplots(rows=1, cols=len(names), subplot_titles=[NAMES.get(n, n)
                                                                    for n in names])
    for col, name in enumerate(names, start=1):
        result = evaluation[name]
        truth, median = np.asarray(result["truth"]), np.asarray(result["median"])
        figure.add_trace(go.Scatter(
            x=truth, y=median, mode="markers", name="median ± 90 % interval",
            showlegend=col == 1, marker=dict(size=5, color="#1f77b4", opacity=0.65),
            error_y=_interval_errors(median, np.asarray(result["lo90"]),
                                     np.asarray(result["hi90"]))), 1, col)
        finite = np.concatenate([truth, median])
        finite = finite[np.isfinite(finite) & ((finite > 0) if name in LOG_AXES else True)]
        if finite.size:
            low, high = float(finite.min()), float(finite.max())
            figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines",
                                        name="perfect recovery", showlegend=col == 1,
                                        line=dict(color="gray", dash="dash")), 1, col)
        if name in LOG_AXES:
            figure.update_xaxes(type="log", dtick=1, exponentformat="power", row=1, col=col)
            figure.update_yaxes(type="log", dtick=1, exponentformat="power", row=1, col=col)
        figure.update_xaxes(title_text="truth", row=1, col=col)
        figure.update_yaxes(title_text="estimate", row=1, col=col)
    return _layout(figure, "Recovery: estimate vs truth", height=460)


def calibration_figure(evaluation, names):
    """Observed vs nominal coverage of central posterior intervals."""
    figure = go.Figure()
    for i, name in enumerate(names):
        curve = evaluation[name]["calibration"]
        figure.add_trace(go.Scatter(x=curve["nominal"], y=np.asarray(curve["observed"]) * 100,
                                    mode="lines+markers", name=NAMES.get(name, name),
                                    line=dict(color=COLORS[i % len(COLORS)])))
    figure.add_trace(go.Scatter(x=[0, 100], y=[0, 100], mode="lines", name="ideal",
                                line=dict(color="gray", dash="dash")))
    figure.update_xaxes(title_text="nominal coverage [%]", range=[0, 100])
    figure.update_yaxes(title_text="observed coverage [%]", range=[0, 100])
    return _layout(figure, "Calibration: how often the intervals contain the truth",
                   height=460)


def comparison_figure(results, current=None):
    """Validation NLL and learning rate per epoch of every compared run (warmup visible)."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Validation NLL", "Learning rate"))
    series = [(r["name"], r.get("val_loss") or [], r.get("learning_rate") or [], "solid")
              for r in results]
    if current and current.get("history"):
        history = current["history"]
        series.append((f"{current['name']} (training)", [h.get("val_loss") for h in history],
                       [h.get("learning_rate") for h in history], "dot"))
    for i, (name, val_loss, rates, dash) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        epochs = list(range(1, len(val_loss) + 1))
        figure.add_trace(go.Scatter(x=epochs, y=val_loss, mode="lines+markers", name=name,
                                    legendgroup=name, marker=dict(size=4),
                                    line=dict(color=color, dash=dash)), 1, 1)
        figure.add_trace(go.Scatter(x=epochs, y=rates, mode="lines+markers", name=name,
                                    legendgroup=name, showlegend=False, marker=dict(size=4),
                                    line=dict(color=color, dash=dash, shape="hv")), 1, 2)
    figure.update_xaxes(title_text="epoch")
    _rate_axis(figure, [v for _, _, rates, _ in series for v in rates], 1, 2)
    return _layout(figure, "Baseline vs improved: training curves", height=480)


def _finite(values):
    """Floats with inf/None as NaN (plotly draws a gap)."""
    return np.array([v if v is not None and math.isfinite(v) else np.nan
                     for v in np.asarray(values, dtype=float)])


def live_trace_figure(t, pH, forecast=None, attention=None, settled_at=None, trajectory=None):
    """A live run: the readings so far, the forecast fan ahead of them and the threshold
    line (top), the attention over the readings (bottom); a dashed line where the answer
    settled. ``forecast`` as in ``LiveInference.update`` (``t, median, lo, hi,
    threshold``); ``trajectory`` (``t``, ``pH``) the true measured pH of a simulated run."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                           row_heights=[0.7, 0.3],
                           subplot_titles=("Readings and forecast", "Attention over the readings"))
    t, pH = np.asarray(t, dtype=float), np.asarray(pH, dtype=float)
    if trajectory is not None:
        figure.add_trace(go.Scatter(x=trajectory["t"], y=trajectory["pH"], mode="lines",
                                    line=dict(color="#999999", width=1, dash="dot"),
                                    name="true run"), 1, 1)
    if forecast is not None and len(t):
        grid = np.asarray(forecast["t"], dtype=float)
        ahead = grid >= (t[-1] - (grid[1] - grid[0] if len(grid) > 1 else 0.0))
        x = grid[ahead]
        figure.add_trace(go.Scatter(x=x, y=np.asarray(forecast["hi"])[ahead], mode="lines",
                                    line=dict(width=0), showlegend=False, hoverinfo="skip"),
                         1, 1)
        figure.add_trace(go.Scatter(x=x, y=np.asarray(forecast["lo"])[ahead], mode="lines",
                                    line=dict(width=0), fill="tonexty", fillcolor=BAND,
                                    name="forecast 90 % band"), 1, 1)
        figure.add_trace(go.Scatter(x=x, y=np.asarray(forecast["median"])[ahead],
                                    mode="lines", line=dict(color=COLORS[0], dash="dash"),
                                    name="forecast median"), 1, 1)
        figure.add_hline(y=float(forecast["threshold"]), line=dict(color=TRUTH, dash="dot"),
                         annotation_text=f"pH {float(forecast['threshold']):g}", row=1, col=1)
    figure.add_trace(go.Scatter(x=t, y=pH, mode="markers", marker=dict(size=4, color="black"),
                                name="readings"), 1, 1)
    if attention is not None and len(attention) == len(t):
        figure.add_trace(go.Scatter(x=t, y=np.asarray(attention, dtype=float), mode="lines",
                                    line=dict(color=COLORS[2]), fill="tozeroy",
                                    name="attention"), 2, 1)
    if settled_at is not None:
        for row in (1, 2):
            figure.add_vline(x=float(settled_at), line=dict(color=COLORS[2], dash="dash"),
                             row=row, col=1)
    figure.update_xaxes(title_text="time [s]", row=2, col=1)
    figure.update_yaxes(title_text="measured pH", row=1, col=1)
    figure.update_yaxes(title_text="weight", row=2, col=1)
    title = "The run so far" + (f" — settled at t = {settled_at:g} s"
                                if settled_at is not None else "")
    return _layout(figure, title, height=560)


def live_funnel_figure(history, threshold=8.5, truth=None, settled_at=None, t_max=None):
    """The answer against elapsed time: activity, k_d and the time to the threshold, each
    median with its 90 % band (``LiveInference.history_table()``); the funnel narrows as
    readings arrive. A time "not reached by ``t_max``" is drawn at ``t_max`` (as the settle
    rule counts it); without ``t_max``, it is left open (a gap)."""
    rows = [("activity", "activity_lo90", "activity_hi90", "activity_median"),
            ("k_d [1/s]", "k_d_lo90", "k_d_hi90", "k_d_median"),
            (f"time to pH {threshold:g} [s]", "time_to_threshold_lo", "time_to_threshold_hi",
             "time_to_threshold_median")]
    figure = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                           subplot_titles=[row[0] for row in rows])
    elapsed = np.asarray(history.get("elapsed_s", []), dtype=float)
    for i, (title, lo, hi, median) in enumerate(rows, start=1):
        if lo not in history:
            continue
        first = i == 1
        if i == 3 and t_max is not None:
            history = dict(history, **{key: np.minimum(np.asarray(history[key], dtype=float),
                                                       t_max) for key in (lo, hi, median)})
        figure.add_trace(go.Scatter(x=elapsed, y=_finite(history[hi]), mode="lines",
                                    line=dict(width=0), showlegend=False, hoverinfo="skip"),
                         i, 1)
        figure.add_trace(go.Scatter(x=elapsed, y=_finite(history[lo]), mode="lines",
                                    line=dict(width=0), fill="tonexty", fillcolor=BAND,
                                    name="90 % interval", legendgroup="band",
                                    showlegend=first), i, 1)
        figure.add_trace(go.Scatter(x=elapsed, y=_finite(history[median]), mode="lines",
                                    line=dict(color=COLORS[0]), name="median",
                                    legendgroup="median", showlegend=first), i, 1)
        name = title.split(" ")[0]
        if truth and truth.get(name) is not None:
            figure.add_hline(y=float(truth[name]), line=dict(color=TRUTH, dash="dot"),
                             row=i, col=1)
    figure.update_yaxes(type="log", row=1, col=1)
    if settled_at is not None:
        figure.add_vline(x=float(settled_at), line=dict(color=COLORS[2], dash="dash"),
                         row="all", col=1)
    figure.update_xaxes(title_text="elapsed time of the run [s]", row=3, col=1)
    title = "The answer as the run goes on (90 % intervals)"
    if settled_at is not None:
        title += f" — settled at t = {settled_at:g} s"
    return _layout(figure, title, height=700)
