"""The plotly figures shared by the evaluation report and the dashboard: plain data in."""

import math

import numpy as np
import pytest

pytest.importorskip("plotly")

from ei_keras.evaluation import figures  # noqa: E402
from ei_keras.inference.posterior import reach_text  # noqa: E402


def axes(figure, kind):
    """Every x or y axis of a figure (``kind`` "xaxis" or "yaxis"), in order."""
    return [figure.layout[name] for name in sorted(figure.layout.to_plotly_json())
            if name.startswith(kind)]


def test_training_figure_shows_every_epoch_with_titles_and_whole_epoch_ticks():
    history = [{"epoch": e, "loss": 50.0 / e ** 3, "val_loss": 60.0 / e ** 3,
                "learning_rate": 1e-3} for e in range(1, 8)]
    figure = figures.training_figure(history, warmup_epochs=3, best_epoch=7)
    assert {trace.name for trace in figure.data} >= {"loss", "val_loss", "learning rate"}
    assert figure.layout.yaxis.range is None  # autorange: the first, largest epochs in view
    assert figure.layout.yaxis.title.text == "loss (Gaussian NLL)"
    assert figure.layout.yaxis2.title.text == "learning rate"
    assert figure.layout.yaxis2.type == "linear"  # one rate: no log axis over nothing
    assert all(axis.dtick == 1 and axis.tickformat == "d" for axis in axes(figure, "xaxis"))
    history[-1]["learning_rate"] = 1e-5
    assert figures.training_figure(history).layout.yaxis2.type == "log"
    long = [{"epoch": e, "loss": 1.0, "learning_rate": 1e-3} for e in range(1, 101)]
    assert figures.training_figure(long).layout.xaxis.dtick == 10


def test_comparison_figure_keeps_runs_apart_on_whole_epochs():
    results = [{"name": name, "val_loss": [2.0, 1.5], "learning_rate": [1e-3, 1e-3]}
               for name in ("baseline-30s", "improved-30s")]
    figure = figures.comparison_figure(results, {"name": "pooling", "history": [
        {"epoch": 1, "val_loss": 1.9, "learning_rate": 1e-3}]})
    rates = [trace for trace in figure.data if trace.xaxis == "x2"]
    assert len({trace.line.dash for trace in rates}) == 3
    assert len({trace.marker.symbol for trace in rates}) == 3
    assert [t.name for t in figure.data if t.showlegend is not False] == [
        "baseline-30s", "improved-30s", "pooling (training)"]
    assert all(axis.dtick == 1 and axis.tickformat == "d" for axis in axes(figure, "xaxis"))


@pytest.mark.parametrize("low, high", [(0.03, 0.06), (0.051, 0.053), (1e-4, 0.5)])
def test_log_axes_show_several_ticks_in_view(low, high):
    ticks = figures.log_ticks([low, high])
    assert len(ticks) >= 3 and all(low <= v <= high for v in ticks)
    posterior = {"activity": {"median": math.sqrt(low * high), "lo50": low, "hi50": high,
                              "lo90": low, "hi90": high, "lo95": low, "hi95": high}}
    axis = figures.posterior_figure(posterior).layout.xaxis
    view = 10 ** np.array(axis.range)
    assert axis.type == "log" and sum(view[0] <= v <= view[1] for v in axis.tickvals) >= 3


def test_posterior_attention_and_exact_figures():
    posterior = {"activity": {"median": 0.1, "lo50": 0.05, "hi50": 0.2, "lo90": 0.02,
                              "hi90": 0.5, "lo95": 0.01, "hi95": 1.0}}
    figure = figures.posterior_figure(posterior, {"activity": 0.12})
    assert figure.layout.xaxis.type == "log"
    assert any(trace.name == "truth" for trace in figure.data)
    t = np.arange(10.0)
    attention = np.r_[np.full(8, 1 / 8), 0, 0]  # the last two readings were cut
    information = {"activity": np.linspace(1, 4, 8), "k_d": np.linspace(0, 9, 8)}
    figure = figures.attention_figure(t, 7 + 0.1 * t, attention, information,
                                      {"activity": 0.5, "k_d": float("nan")}, used=8)
    lines = {trace.name: trace for trace in figure.data if trace.xaxis == "x2"}
    assert set(lines) == {"attention (scaled)", "activity information (ρ = 0.50 with attention)",
                          "k_d [1/s] information (ρ n/a with attention)"}
    assert all(max(trace.y) == 1 and len(trace.x) == 8 for trace in lines.values())
    assert len(figure.layout.shapes) == 2  # the unread readings shaded in both panels
    assert len(figures.attention_figure(t, t, attention).data) == 2

    exact = {"activity": {"median": 0.05, "lo50": 0.045, "hi50": 0.055, "lo90": 0.04,
                          "hi90": 0.06},
             "k_d": {"median": 1e-3, "lo50": 8e-4, "hi50": 1.2e-3, "lo90": 5e-4, "hi90": 2e-3}}
    network = {"activity": dict(exact["activity"], lo90=0.01, hi90=0.2), "k_d": exact["k_d"]}
    figure = figures.exact_figure(network, exact, {"activity": 0.05, "k_d": None})
    assert figure.layout.xaxis.type == "log" and figure.layout.xaxis2.type != "log"
    names = {trace.name for trace in figure.data if trace.showlegend}
    assert names == {f"{who}: {what}" for who in ("network", "exact")
                     for what in ("50 % interval", "90 % interval", "median")} | {"truth"}
    wide = next(trace for trace in figure.data if trace.name == "network: 90 % interval")
    assert tuple(wide.x) == (0.01, 0.2) and wide.xaxis == "x"


def fan(reach):
    grid = np.linspace(0, 2000, 21)
    return {"t": grid, "median": 7 + grid / 1000, "lo": 7 + grid / 1200,
            "hi": 7 + grid / 800, "threshold": 8.5, "time_to_threshold": reach}


def test_forecast_figure_names_the_time_to_threshold_band():
    reach = {"p_reached": 0.7, "median": 900.0, "lo": 600.0, "hi": math.inf}
    trace = {"t": np.arange(10.0), "pH": np.full(10, 7.0)}
    figure = figures.forecast_figure(fan(reach), trace, {"t": [0, 2000], "pH": [7, 9]})
    band = next(t for t in figure.data if t.name.startswith("time to pH 8.5"))
    assert band.name == "time to pH 8.5: 90 % band (to later than 2000 s)"
    assert min(band.x) == 600 and max(band.x) == 2000  # open end drawn to the horizon
    assert {"readings", "what happened (simulated)", "forecast median"} <= {
        t.name for t in figure.data}
    never = {"p_reached": 0.0, "median": math.inf, "lo": math.inf, "hi": math.inf}
    assert not any(t.name.startswith("time to pH") for t in figures.forecast_figure(
        fan(never)).data)


@pytest.mark.parametrize("reach, expected", [
    ({"p_reached": 0.0, "median": math.inf, "lo": math.inf, "hi": math.inf},
     "pH 8.5 is not reached within 2000 s in any posterior draw"),
    ({"p_reached": 0.3, "median": math.inf, "lo": 1200.0, "hi": math.inf},
     "time to pH 8.5: median later than 2000 s, 90 % band 1200 s to later than 2000 s; "
     "reached within 2000 s in 30 % of the posterior draws"),
    ({"p_reached": 1.0, "median": 900.0, "lo": 600.0, "hi": 1200.0},
     "time to pH 8.5: median 900 s, 90 % band 600–1200 s; reached within 2000 s in 100 % "
     "of the posterior draws"),
])
def test_reach_text_never_shows_infinity(reach, expected):
    assert reach_text(reach, 8.5, 2000.0) == expected


def test_recovery_figure_is_a_grid_with_thin_error_bars():
    rng = np.random.default_rng(0)
    estimates = {}
    for name in ("activity", "k_d", "tau_probe", "pH_offset"):
        truth = rng.uniform(0.01, 1.0, 50)
        estimates[name] = {"truth": truth, "median": truth, "lo90": truth * 0.8,
                           "hi90": truth * 1.2}
    figure = figures.recovery_figure(estimates, {"k_d": {"truth": [0.1], "estimate": [0.2]}})
    domains = {tuple(axis.domain) for axis in axes(figure, "xaxis")}
    assert len(domains) == 2 and all(high - low > 0.4 for low, high in domains)  # 2 columns
    points = [t for t in figure.data if t.name == "median ± 90 % interval"]
    assert len(points) == 4 and all(t.error_y.thickness <= 0.6 for t in points)
    assert figure.layout.xaxis.type == "log" and len(figure.layout.xaxis.tickvals) >= 3
    assert any(t.name == "least squares" for t in figure.data)
    curves = {"activity": {"nominal": [50.0, 90.0], "observed": [0.5, 0.85]}}
    assert figures.calibration_figure(curves).data[0].name == "activity"


def test_live_figures_build_from_plain_data():
    t = np.arange(0.0, 30.0)
    grid = np.linspace(0, 100, 21)
    fan = {"t": grid, "median": 7 + grid / 50, "lo": 7 + grid / 60, "hi": 7 + grid / 40,
           "threshold": 8.5}
    figure = figures.live_trace_figure(t, 7 + t / 50, fan, np.full(30, 1 / 30), settled_at=20.0)
    names = {trace.name for trace in figure.data}
    assert {"readings", "forecast median", "forecast 90 % band", "attention"} <= names
    assert min(next(tr for tr in figure.data if tr.name == "forecast median").x) >= 25
    assert "settled at t = 20 s" in figure.layout.title.text
    history = {"elapsed_s": np.array([10.0, 20.0]), "activity_lo90": np.array([0.01, 0.02]),
               "activity_hi90": np.array([0.1, 0.05]), "activity_median": np.array([0.03] * 2),
               "k_d_lo90": np.zeros(2), "k_d_hi90": np.ones(2), "k_d_median": np.ones(2) / 2,
               "time_to_threshold_lo": np.array([100.0, 120.0]),
               "time_to_threshold_hi": np.array([np.inf, 300.0]),
               "time_to_threshold_median": np.array([500.0, 200.0])}
    figure = figures.live_funnel_figure(history, 8.5, {"activity": 0.03, "k_d": 0.5}, 20.0)
    assert figure.layout.yaxis.type == "log"
    hi = next(tr for tr in figure.data if tr.yaxis == "y3").y
    assert np.isnan(hi[0]) and hi[1] == 300.0  # "not reached" is a gap, not infinity
