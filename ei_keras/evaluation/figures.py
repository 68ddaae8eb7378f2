"""Plotly figures of ei_keras results, for the evaluation report and the dashboard.

Plain data in (dicts of arrays, physical units), a ``plotly.graph_objects.Figure`` out; no
Streamlit here.
"""

import math
from itertools import cycle

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

COLORS = qualitative.Plotly
BLUE, DARK_BLUE, ORANGE = "#1f77b4", "#0b3d6b", "#ff7f0e"
BAND = "rgba(31,119,180,0.22)"
TRUTH = "#d62728"
NAMES = {"activity": "activity", "k_d": "k_d [1/s]", "tau_probe": "tau_probe [s]",
         "pH_offset": "pH offset [pH]"}
LOG_AXES = ("activity",)
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star")
EXACT = "148,103,189"  # the exact posterior's colour; the network's is BLUE
# Information curves: none in the attention's orange.
INFORMATION_COLORS = ("#00CC96", "#AB63FA", "#19D3F3", "#636EFA")


def _layout(figure, title, height=380, **kwargs):
    """Common layout: title top left, legend in one row under the plot."""
    figure.update_layout(title=dict(text=title, x=0.0, xanchor="left"), height=height,
                         margin=dict(l=60, r=20, t=70 if title else 40, b=100),
                         legend=dict(orientation="h", yanchor="top", y=-0.2, x=0.0,
                                     xanchor="left"), **kwargs)
    return figure


def _name(name):
    return NAMES.get(name, name)


def _positive(values):
    values = np.asarray([v for v in values if v is not None], dtype=float)
    return values[np.isfinite(values) & (values > 0)]


def log_ticks(values):
    """Tick values for a log axis over ``values``: decades when they span three or more,
    else the finest of 1-2-5, 1-2-3-5-7 and 1…9 steps that puts three ticks inside, else
    three evenly spaced values rounded to three digits."""
    values = _positive(values)
    if not values.size:
        return []
    low, high = float(values.min()), float(values.max())
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for steps in ((1,), (1, 2, 5), (1, 2, 3, 5, 7), range(1, 10)):
        ticks = [float(f"{m * 10.0 ** e:.3g}") for e in decades for m in steps]
        inside = [v for v in ticks if low <= v <= high]
        if len(inside) >= 3:
            return inside
    return sorted({float(f"{v:.3g}") for v in np.geomspace(low, high, 3)})


def _log_axis(update, values, **where):
    """Make an axis logarithmic over ``values`` with readable ticks (several in view)."""
    values = _positive(values)
    if not values.size:
        return
    low, high = np.log10(values.min()), np.log10(values.max())
    pad = max(0.06 * (high - low), 0.02)
    ticks = log_ticks(values)
    update(type="log", range=[low - pad, high + pad], tickmode="array", tickvals=ticks,
           ticktext=[f"{v:.3g}" for v in ticks], **where)


def _rate_axis(figure, rates, **where):
    """Log axis for learning rates spanning over a decade, else linear from 0 (a constant
    rate too); ticks as 1e-3."""
    rates = [v for v in rates if v is not None and v > 0]
    log = bool(rates) and max(rates) / min(rates) > 10
    figure.update_yaxes(type="log" if log else "linear", exponentformat="e",
                        tickformat=None if log else ".1e",
                        range=None if log or not rates else [0, 1.15 * max(rates)], **where)


def _epoch_ticks(figure, last_epoch):
    """Whole-number epoch ticks on every x axis (plotly would label a 2-epoch run 1.2, 1.4,
    …), at most about a dozen."""
    step = next((s for s in (1, 2, 5, 10, 20, 50, 100) if last_epoch / s <= 12), 200)
    figure.update_xaxes(tick0=1 if step == 1 else 0, dtick=step, tickformat="d")


# ---------------------------------------------------------------------------------------
# Data and training
# ---------------------------------------------------------------------------------------

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
    """Loss and val_loss per epoch (every epoch in view) over the learning rate, warmup
    shaded, the best model starred."""
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
        _rate_axis(figure, rates, row=2, col=1)
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
    figure.update_yaxes(title_text="loss (Gaussian NLL)", row=1, col=1)
    figure.update_yaxes(title_text="learning rate", row=2, col=1)
    figure.update_xaxes(title_text="epoch", row=2, col=1)
    if epochs:
        _epoch_ticks(figure, max(epochs))
    return _layout(figure, None, height=520)


def comparison_figure(results, current=None):
    """Validation NLL and learning rate per epoch of every compared run; each run its own
    colour, dash and marker, so runs with the same schedule stay distinguishable."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Validation NLL", "Learning rate"))
    series = [(r["name"], r.get("val_loss") or [], r.get("learning_rate") or [])
              for r in results]
    if current and current.get("history"):
        history = current["history"]
        series.append((f"{current['name']} (training)", [h.get("val_loss") for h in history],
                       [h.get("learning_rate") for h in history]))
    for i, (name, val_loss, rates) in enumerate(series):
        style = dict(color=COLORS[i % len(COLORS)], dash=DASHES[i % len(DASHES)])
        marker = dict(size=7, symbol=SYMBOLS[i % len(SYMBOLS)])
        epochs = np.arange(1, max(len(val_loss), len(rates)) + 1)
        # Runs often share a schedule: shift each a little along the epochs so none hides.
        shift = 0.06 * (i - (len(series) - 1) / 2)
        for col, values, line in ((1, val_loss, style), (2, rates, dict(style, shape="hv"))):
            figure.add_trace(go.Scatter(
                x=epochs[:len(values)] + shift, y=values, customdata=epochs,
                mode="lines+markers", name=name, legendgroup=name, showlegend=col == 1,
                marker=marker, line=line,
                hovertemplate=f"{name}<br>epoch %{{customdata}}: %{{y:.4g}}<extra></extra>"),
                1, col)
    figure.update_xaxes(title_text="epoch")
    _epoch_ticks(figure, max((max(len(v), len(r)) for _, v, r in series), default=1))
    figure.update_yaxes(title_text="validation NLL", row=1, col=1)
    _rate_axis(figure, [v for *_, rates in series for v in rates], row=1, col=2)
    return _layout(figure, "Baseline vs improved: training curves", height=480)


# ---------------------------------------------------------------------------------------
# One trace: attention, posterior, exact check, forecast
# ---------------------------------------------------------------------------------------

def _rho_text(value):
    return "ρ n/a" if value is None or not math.isfinite(value) else f"ρ = {value:.2f}"


def _scaled(values):
    values = np.asarray(values, dtype=float)
    peak = values.max() if values.size else 0.0
    return values / peak if peak > 0 else values


def _add_information(figure, t, attention, information, agreement=None, *, row=1, col=1,
                     legend=True):
    """The attention beside the information each reading carries about each parameter,
    every curve scaled to its own largest value; ``agreement`` (per parameter the
    Spearman correlation with the attention) is named in the legend."""
    figure.add_trace(go.Scatter(x=t, y=_scaled(attention), mode="lines",
                                name="attention (scaled)", legendgroup="attention",
                                showlegend=legend,
                                line=dict(color="rgba(255,127,14,0.9)", dash="dash")), row, col)
    for color, (name, values) in zip(cycle(INFORMATION_COLORS), information.items()):
        label = f"{_name(name)} information"
        if agreement is not None:
            label += f" ({_rho_text(agreement.get(name))} with attention)"
        figure.add_trace(go.Scatter(x=t, y=_scaled(values), mode="lines", name=label,
                                    legendgroup=name, showlegend=legend,
                                    line=dict(color=color, width=2)),
                         row, col)
    figure.update_yaxes(title_text="share of its largest", range=[0, 1.05], row=row, col=col)


def attention_figure(t, pH, attention, information=None, agreement=None, used=None):
    """The pH trace with the network's attention weight on each reading.

    With ``information`` (per parameter an array over the first ``used`` readings, see
    ``ei_keras.inference.information.reading_information``) a second panel on the same
    time axis shows it beside the attention (see :func:`_add_information`). Readings past
    ``used`` (cut by the model's trained maximum) are shaded.
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
        x=t, y=pH, mode="lines+markers", name="measured pH", line=dict(color=BLUE, width=1),
        marker=dict(size=7 if len(t) <= 200 else 4, color=attention, colorscale="Oranges",
                    line=dict(width=0.5, color=BLUE))), 1, 1, secondary_y=False)
    if information:
        _add_information(figure, t[:used], attention[:used], information, agreement or {},
                         row=2)
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
                           subplot_titles=[_name(n) for n in names])
    for row, name in enumerate(names, start=1):
        stats = posterior[name]
        for level, width, alpha in ((95, 6, 0.25), (90, 12, 0.4), (50, 22, 0.75)):
            figure.add_trace(go.Scatter(
                x=[stats[f"lo{level}"], stats[f"hi{level}"]], y=[0, 0], mode="lines",
                line=dict(width=width, color=f"rgba(31,119,180,{alpha})"),
                name=f"{level} % interval", legendgroup=f"i{level}", showlegend=row == 1,
                hovertemplate=f"{level} %%: %{{x:.4g}}<extra></extra>"), row, 1)
        figure.add_trace(go.Scatter(x=[stats["median"]], y=[0], mode="markers",
                                    marker=dict(symbol="diamond", size=14, color=DARK_BLUE),
                                    name="median", legendgroup="median", showlegend=row == 1,
                                    hovertemplate="median %{x:.4g}<extra></extra>"), row, 1)
        known = _truth_star(figure, truth, name, row, size=16)
        if name in LOG_AXES and stats["lo95"] > 0:
            _log_axis(figure.update_xaxes, [stats["lo95"], stats["hi95"], known], row=row, col=1)
        figure.update_yaxes(visible=False, range=[-1, 1], row=row, col=1)
    return _layout(figure, "Posterior of each parameter", height=170 + 135 * len(names))


def _truth_star(figure, truth, name, row, size):
    """Mark the true value of ``name`` (when ``truth`` knows it) on a subplot row; return it."""
    known = truth.get(name) if truth else None
    if known is not None:
        figure.add_trace(go.Scatter(x=[known], y=[0], mode="markers",
                                    marker=dict(symbol="star", size=size, color=TRUTH),
                                    name="truth", legendgroup="truth", showlegend=row == 1,
                                    hovertemplate="truth %{x:.4g}<extra></extra>"), row, 1)
    return known


def exact_figure(network, exact, truth=None):
    """Per parameter the network's and the exact 50/90 % intervals and medians, one above
    the other on a shared axis (log for activity), and the true value when known.

    ``network`` and ``exact`` map each parameter to a summary with ``median, lo50, hi50,
    lo90, hi90`` (physical units), as ``ei_keras.refine`` returns them.
    """
    names = [name for name in exact if name in network]
    figure = make_subplots(rows=len(names), cols=1, vertical_spacing=0.5 / max(len(names), 1),
                           subplot_titles=[_name(n) for n in names])
    rows = (("network", network, 0.5, "31,119,180", DARK_BLUE),
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
        known = _truth_star(figure, truth, name, row, size=15)
        ends = [summaries[name][key] for _, summaries, *_ in rows for key in ("lo90", "hi90")]
        ends = [v for v in ends + [known] if v is not None and math.isfinite(v)]
        if name in LOG_AXES and ends and min(ends) > 0:
            _log_axis(figure.update_xaxes, ends, row=row, col=1)
        elif ends:  # both intervals whole, with a margin
            low, high = min(ends), max(ends)
            pad = 0.06 * (high - low) if high > low else 0.1 * abs(high) or 1.0
            figure.update_xaxes(range=[low - pad, high + pad], row=row, col=1)
        figure.update_yaxes(range=[-1.2, 1.2], tickvals=[0.5, -0.5], zeroline=False,
                            ticktext=["network", "exact"], showgrid=False, row=row, col=1)
    return _layout(figure, "Exact posterior beside the network's",
                   height=190 + 150 * len(names))


def _add_fan(figure, fan, *, row=None, col=None, legend=True):
    """The forecast's 5–95 % band and median (``t, median, lo, hi`` of one trace)."""
    t = np.asarray(fan["t"], dtype=float)
    figure.add_trace(go.Scatter(x=np.concatenate([t, t[::-1]]),
                                y=np.concatenate([fan["hi"], np.asarray(fan["lo"])[::-1]]),
                                fill="toself", fillcolor=BAND, line=dict(width=0),
                                name="5–95 % band", legendgroup="band", showlegend=legend,
                                hoverinfo="skip"), row=row, col=col)
    figure.add_trace(go.Scatter(x=t, y=fan["median"], mode="lines", name="forecast median",
                                legendgroup="median", showlegend=legend,
                                line=dict(color=BLUE, width=2)), row=row, col=col)


def forecast_figure(fan, readings=None, trajectory=None):
    """One trace's forecast fan (5–95 %) of the measured pH with its ``readings`` (``t``,
    ``pH``), what happened (``trajectory``, a simulated run's ``t``, ``pH``), the threshold
    and the 90 % band of the time to reach it (drawn to the horizon when a draw never
    reaches it)."""
    t = np.asarray(fan["t"], dtype=float)
    figure = go.Figure()
    _add_fan(figure, fan)
    if trajectory is not None:
        figure.add_trace(go.Scatter(x=trajectory["t"], y=trajectory["pH"], mode="lines",
                                    name="what happened (simulated)",
                                    line=dict(color="black", dash="dot", width=1.5)))
    if readings is not None:
        figure.add_trace(go.Scatter(x=readings["t"], y=readings["pH"], mode="markers",
                                    marker=dict(size=4, color=ORANGE), name="readings"))
    threshold = fan["threshold"]
    figure.add_hline(y=threshold, line=dict(color=TRUTH, dash="dash"),
                     annotation_text=f"threshold pH {threshold:g}",
                     annotation_position="bottom right")
    reach = fan["time_to_threshold"]
    if math.isfinite(reach["lo"]):
        high = reach["hi"] if math.isfinite(reach["hi"]) else float(t[-1])
        shown = [fan["lo"], fan["hi"], [threshold]] + ([readings["pH"]] if readings else [])
        bottom = min(float(np.nanmin(v)) for v in shown)
        top = max(float(np.nanmax(v)) for v in shown)
        later = "" if math.isfinite(reach["hi"]) else f" (to later than {t[-1]:g} s)"
        figure.add_trace(go.Scatter(
            x=[reach["lo"], high, high, reach["lo"], reach["lo"]],
            y=[bottom, bottom, top, top, bottom], fill="toself", mode="lines",
            fillcolor="rgba(214,39,40,0.12)", line=dict(width=0), hoverinfo="skip",
            name=f"time to pH {threshold:g}: 90 % band{later}"))
    if math.isfinite(reach["median"]):
        figure.add_vline(x=reach["median"], line=dict(color=TRUTH, width=1),
                         annotation_text=f"reached at ~{reach['median']:.0f} s",
                         annotation_position="top left")
    figure.update_xaxes(title_text="time [s]")
    figure.update_yaxes(title_text="measured pH")
    return _layout(figure, "Forecast of the measured pH", height=460)


# ---------------------------------------------------------------------------------------
# Many traces: recovery, calibration, forecasts, attention (report and Analyse page)
# ---------------------------------------------------------------------------------------

def recovery_figure(estimates, baseline=None, title="Recovery: estimate vs truth"):
    """Truth vs posterior median with its 90 % interval, one panel per parameter in a grid
    of two columns (log axes for activity).

    ``estimates`` maps each parameter to arrays ``truth, median, lo90, hi90``;
    ``baseline`` (optional) maps parameters to arrays ``truth, estimate`` of another
    estimator (least squares), drawn beside.
    """
    names = list(estimates)
    cols = min(2, len(names))
    rows = math.ceil(len(names) / cols)
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=[_name(n) for n in names],
                           horizontal_spacing=0.12, vertical_spacing=0.32 / rows)
    for i, name in enumerate(names):
        row, col = divmod(i, cols)
        where = dict(row=row + 1, col=col + 1)
        result = estimates[name]
        truth, median = (np.asarray(result[k], dtype=float) for k in ("truth", "median"))
        lo, hi = (np.asarray(result[k], dtype=float) for k in ("lo90", "hi90"))
        figure.add_trace(go.Scatter(
            x=truth, y=median, mode="markers", name="median ± 90 % interval",
            legendgroup="model", showlegend=i == 0,
            marker=dict(size=5, color=BLUE, opacity=0.7),
            error_y=dict(type="data", symmetric=False, array=np.maximum(hi - median, 0),
                         arrayminus=np.maximum(median - lo, 0), thickness=0.5, width=0,
                         color="rgba(31,119,180,0.25)")), **where)
        if baseline and name in baseline:
            other = baseline[name]
            figure.add_trace(go.Scatter(
                x=other["truth"], y=other["estimate"], mode="markers", name="least squares",
                legendgroup="baseline", showlegend=i == 0,
                marker=dict(size=6, color=TRUTH, symbol="x")), **where)
        values = np.concatenate([truth, median])
        values = values[np.isfinite(values) & ((values > 0) if name in LOG_AXES else True)]
        if values.size:
            low, high = float(values.min()), float(values.max())
            figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines",
                                        name="perfect recovery", legendgroup="diagonal",
                                        showlegend=i == 0,
                                        line=dict(color="gray", dash="dash")), **where)
        if name in LOG_AXES:
            _log_axis(figure.update_xaxes, values, **where)
            _log_axis(figure.update_yaxes, values, **where)
        figure.update_xaxes(title_text="truth", **where)
        figure.update_yaxes(title_text="estimate", **where)
    return _layout(figure, title, height=120 + 340 * rows)


def calibration_figure(curves):
    """Observed vs nominal coverage of central posterior intervals; ``curves`` maps each
    parameter to ``nominal`` levels [%] and the ``observed`` coverage (fractions)."""
    figure = go.Figure()
    for i, (name, curve) in enumerate(curves.items()):
        figure.add_trace(go.Scatter(x=curve["nominal"], y=np.asarray(curve["observed"]) * 100,
                                    mode="lines+markers", name=_name(name),
                                    line=dict(color=COLORS[i % len(COLORS)])))
    figure.add_trace(go.Scatter(x=[0, 100], y=[0, 100], mode="lines", name="ideal",
                                line=dict(color="gray", dash="dash")))
    figure.update_xaxes(title_text="nominal coverage [%]", range=[0, 100])
    figure.update_yaxes(title_text="observed coverage [%]", range=[0, 100])
    return _layout(figure, "Calibration: how often the intervals contain the truth",
                   height=460)


def forecast_examples_figure(fans, truths, examples=4):
    """Forecast fans of the first ``examples`` traces beside the true noise-free reading
    (``truths``: one array per trace on the fan's times)."""
    count = min(examples, len(fans))
    figure = make_subplots(rows=1, cols=count, subplot_titles=[f"trace {i}" for i in range(count)])
    for i in range(count):
        fan = fans[i]
        _add_fan(figure, fan, row=1, col=i + 1, legend=i == 0)
        figure.add_trace(go.Scatter(x=fan["t"], y=truths[i], name="truth", legendgroup="truth",
                                    showlegend=i == 0, line=dict(color="black", dash="dot")),
                         row=1, col=i + 1)
        figure.add_hline(y=fan["threshold"], line=dict(color=TRUTH, dash="dash"),
                         row=1, col=i + 1)
        figure.update_xaxes(title_text="time [s]", row=1, col=i + 1)
    figure.update_yaxes(title_text="measured pH", row=1, col=1)
    return _layout(figure, "Forecast of the measured pH", height=420)


def attention_heatmap_figure(t, attention, rows=60):
    """Heat-map of the attention weights over the readings of the first ``rows`` traces."""
    figure = go.Figure(go.Heatmap(z=attention[:rows], x=t, colorscale="Viridis",
                                  colorbar=dict(title="weight")))
    figure.update_xaxes(title_text="time [s]")
    figure.update_yaxes(title_text="trace")
    return _layout(figure, "Attention over the readings", height=420)


def information_figure(examples, median_agreement=None):
    """Per trace ``(t, attention, information)``: the attention on each reading beside the
    information each reading carries about each parameter; ``median_agreement`` (per
    parameter the median Spearman correlation over traces) goes in the title."""
    figure = make_subplots(rows=1, cols=len(examples),
                           subplot_titles=[f"trace {i}" for i in range(len(examples))])
    for col, (t, attention, information) in enumerate(examples, start=1):
        _add_information(figure, t, attention, information, col=col, legend=col == 1)
        figure.update_xaxes(title_text="time [s]", row=1, col=col)
    title = "Attention vs what each reading tells (each curve scaled to its largest)"
    if median_agreement:
        title += "<br><sup>median Spearman correlation over traces: " + ", ".join(
            f"{_name(n)} {v:.2f}" for n, v in median_agreement.items()) + "</sup>"
    return _layout(figure, title, height=460)


# ---------------------------------------------------------------------------------------
# A live run
# ---------------------------------------------------------------------------------------

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
