"""Live page: follow a run as it happens (a growing CSV, or a replay of a CSV, a dataset
trace or a simulated run) and see when the answer has settled (``ei_keras.LiveInference``)."""

import math
from pathlib import Path

import streamlit as st

from dashboard import analysis, cache, live_session, sources
from ei_keras.errors import EiKerasError
from ei_keras.evaluation import figures
from ei_keras.inference.traces import prior_draw, simulated_trace
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES, label
from ei_keras.simulation.priors import prior_midpoints

SIMULATE, FROM_DATASET, FROM_CSV, FOLLOW = ("Simulate a run", "From a dataset", "Replay a CSV",
                                            "Follow a growing CSV file")
SOURCE_WORDS = {"simulated": "a simulated run"}
RUN = "live_run"  # session key: the LiveInference, the replay clock and the last answer

st.title("Live")
st.caption("Follow a run while it happens: after every batch of readings, the answer so far "
           "(activity, k_d and the time to the threshold, with their 90 % intervals), where "
           "the run is heading, and the moment more waiting stops changing the answer "
           "(**settled**: the 90 % band held still for the last 60 s of the run).")

# --------------------------------------------------------------------------------------
# Model and source
# --------------------------------------------------------------------------------------
models = analysis.available_models()
if not models:
    st.info("**No model to follow a run with.** The Live page needs a model that reads "
            "traces of any length (the shipped default model, or one trained on "
            "any-format traces on the Train page).", icon=":material/info:")
    st.stop()
choice = st.selectbox("Model", [m["label"] for m in models], key="live_model")
model_path = next(m["path"] for m in models if m["label"] == choice)
try:
    model = cache.get_model(model_path)
    info = analysis.describe_model(model)
except EiKerasError as error:
    st.error(f"Cannot use this model: {error}", icon=":material/error:")
    st.stop()
if not info["any_format"]:
    st.warning("This model reads only fixed-length prefixes; live inference needs one that "
               "reads a trace of any length (the shipped model, or one trained on any-format "
               "traces).", icon=":material/warning:")
    st.stop()

source = st.segmented_control("What to follow", [SIMULATE, FROM_DATASET, FROM_CSV, FOLLOW],
                              default=SIMULATE, key="live_source") or SIMULATE
midpoints = prior_midpoints()


def number_row(names, prefix, values):
    """One number input per name, in a row."""
    out = {}
    for column, name in zip(st.columns(len(names)), names):
        out[name] = column.number_input(label(name), value=float(values[name]),
                                        format="%g", step=None, key=f"{prefix}_{name}")
    return out


def make_source():
    """What the Start button starts: ``(known, trace, csv_path, minutes)``."""
    if source == SIMULATE:
        random = st.toggle("Draw the run from the prior", key="live_sim_random",
                           help="A random run from the ranges the model was trained on, "
                                "instead of the values below.")
        columns = st.columns(4)
        length = columns[0].number_input(
            "Run length [s]", min_value=live_session.LIVE_LENGTH_S[0],
            max_value=live_session.LIVE_LENGTH_S[1], value=300.0, format="%g", step=None,
            key="live_sim_length")
        interval = columns[1].number_input(
            "Reading interval [s]", min_value=sources.SIM_INTERVAL_S[0],
            max_value=sources.SIM_INTERVAL_S[1], value=1.0, format="%g", step=None,
            key="live_sim_interval")
        noise = columns[2].number_input("Noise σ [pH]", value=0.01, format="%g", step=None,
                                        key="live_sim_noise")
        seed = int(columns[3].number_input("Seed", value=0, step=1, key="live_sim_seed"))
        if random:
            known, latent = prior_draw(seed)
            st.caption("Drawn: " + ", ".join(f"{label(n)} = {v:.3g}"
                                             for n, v in {**known, **latent}.items()))
        else:
            known = number_row(KNOWN_NAMES, "live_sim", midpoints)
            latent = number_row(LATENT_NAMES, "live_sim", midpoints)
        return known, lambda: simulated_trace(known, latent, length, interval,
                                                       noise_std=noise, seed=seed), None, False
    if source == FROM_DATASET:
        usable = [d for d in cache.list_datasets() if not d["error"]]
        if not usable:
            st.warning("No dataset in the workspace. Generate one on the Data page.")
            st.stop()
        columns = st.columns(3)
        name = columns[0].selectbox("Dataset", [d["name"] for d in usable], key="live_dataset")
        dataset = next(d for d in usable if d["name"] == name)
        option = columns[1].selectbox("Traces", sources.dataset_formats(dataset, info),
                                      key="live_prefix", format_func=sources.format_label)
        index = int(columns[2].number_input(f"Case (0–{dataset['n_samples'] - 1})",
                                            min_value=0, max_value=dataset["n_samples"] - 1,
                                            value=0, step=1, key="live_case"))
        trace = sources.dataset_trace(dataset["path"], option, index)
        return trace["known"], lambda: trace, None, False
    if source == FROM_CSV:
        columns = st.columns([3, 1])
        upload = columns[0].file_uploader("A finished run: CSV with a header row and time and "
                                          "pH columns", type=["csv", "txt"], key="live_csv")
        minutes = columns[1].toggle("Time in minutes", key="live_csv_minutes")
        st.caption("The known conditions of this run:")
        known = number_row(KNOWN_NAMES, "live_csv", midpoints)
        if upload is None:
            st.info("Upload a CSV file to replay it.")
            return known, None, None, minutes

        def trace():
            return sources.uploaded_trace(upload.getvalue(), upload.name, known,
                                          minutes=minutes)
        return known, trace, None, minutes
    columns = st.columns([3, 1])
    path = columns[0].text_input("CSV file a logger is writing to (path on the dashboard's "
                                 "machine)", key="live_follow_path")
    minutes = columns[1].toggle("Time in minutes", key="live_follow_minutes")
    st.caption("The known conditions of this run:")
    known = number_row(KNOWN_NAMES, "live_follow", midpoints)
    return known, None, (Path(path).expanduser() if path.strip() else None), minutes


try:
    known, trace_of, csv_path, minutes = make_source()
except EiKerasError as error:
    st.error(str(error), icon=":material/error:")
    st.stop()

columns = st.columns(4)
speed = columns[0].slider("Replay speed [×]", min_value=int(live_session.LIVE_SPEED[0]),
                          max_value=int(live_session.LIVE_SPEED[1]), value=10, key="live_speed",
                          disabled=source == FOLLOW,
                          help="Seconds of the run per second of wall time.")
threshold = columns[1].number_input("Threshold pH", value=8.5, step=0.1, format="%.2f",
                                    key="live_threshold")
t_max = columns[2].number_input("Forecast until [s]", value=2000.0, step=100.0, format="%g",
                                key="live_t_max")
allow_extrapolation = columns[3].checkbox(
    "Allow extrapolation", key="live_allow_extrapolation",
    help="Answer even when the known conditions lie outside the trained ranges (flagged).")

# --------------------------------------------------------------------------------------
# Start, pause, resume, restart
# --------------------------------------------------------------------------------------
buttons = st.columns([1, 1, 1, 1, 4])
start = buttons[0].button("Start", key="live_start", icon=":material/play_arrow:",
                          type="primary", disabled=trace_of is None and csv_path is None)
try:
    if start:
        with st.spinner("Starting…"):
            trace = trace_of() if trace_of is not None else None
            st.session_state[RUN] = live_session.live_start(
                model, known, trace=trace, csv_path=None if trace is not None else csv_path,
                speed=1.0 if trace is None else speed, threshold=threshold, t_max=t_max,
                allow_extrapolation=allow_extrapolation, minutes=minutes)
except EiKerasError as error:
    st.error(f"Cannot start: {error}", icon=":material/error:")


def restart_run():
    st.session_state[RUN] = live_session.live_restart(st.session_state[RUN])


state = st.session_state.get(RUN)
if state is not None:  # callbacks: they act before the page is drawn again
    buttons[1].button("Pause", key="live_pause", icon=":material/pause:",
                      disabled=not live_session.live_running(state),
                      on_click=live_session.live_pause, args=(state,))
    buttons[2].button("Resume", key="live_resume", icon=":material/resume:",
                      disabled=not state["paused"] or state["done"],
                      on_click=live_session.live_resume, args=(state,))
    buttons[3].button("Restart", key="live_restart", icon=":material/replay:",
                      on_click=restart_run)
if state is None:
    st.info("Choose what to follow and press **Start**.", icon=":material/info:")
    st.stop()


# --------------------------------------------------------------------------------------
# The run so far: one update per tick, in a fragment
# --------------------------------------------------------------------------------------
def interval_text(stats):
    return f"{stats['median']:.3g} (90 %: {stats['lo90']:.3g} – {stats['hi90']:.3g})"


def time_text(value, t_max):
    return f"{value:.0f} s" if math.isfinite(value) else f"not by {t_max:g} s"


def show_run():
    state = st.session_state.get(RUN)
    if state is None:
        return
    with state["lock"]:  # a pause clicked meanwhile waits until this moment is drawn
        draw_run(state)


def draw_run(state):
    was_running = live_session.live_running(state)
    live_session.live_tick(state)
    settings, live, result = state["settings"], state["live"], state["result"]
    if state["tail"] is not None:
        where = f"following `{settings['csv_path']}`"
    else:
        name = settings["trace"]["source"]
        where = f"replaying {SOURCE_WORDS.get(name, name)} at {settings['speed']:g}×"
    status = ("finished" if state["done"] else "paused" if state["paused"] else "running")
    with st.container(key="live_status"):
        st.markdown(f"**{status.capitalize()}**, {where}: {live.n_readings} readings, "
                    f"{result['elapsed_s'] if result else 0:g} s of the run, "
                    f"{len(live.history)} updates.")
        if state.get("missing"):
            st.info(f"Waiting for the file {settings['csv_path']} to appear.")
        for text in state["messages"]:
            st.caption(text)
    if result is None or result.get("waiting"):
        st.info(result["status"] if result else "Waiting for the first readings…",
                icon=":material/hourglass_top:")
    else:
        with st.container(key="live_settled"):
            note = result["settle"]["note"]
            if result["settled"]:
                st.success(f"**{note[0].upper() + note[1:]}**: waiting longer no longer "
                           f"changes the answer.", icon=":material/flag:")
            else:
                st.info(note[0].upper() + note[1:], icon=":material/hourglass_top:")
        domain = result["domain"]
        with st.container(key="live_domain"):
            if domain["ok"]:
                st.success(f"Checked: {', '.join(domain['checked'])}. Nothing to flag.",
                           icon=":material/check_circle:")
            else:
                st.warning("**Read these before trusting the answer:**\n"
                           + "\n".join(f"- {flag}" for flag in domain["flags"]),
                           icon=":material/warning:")
            for note in domain["notes"]:
                st.info(note[0].upper() + note[1:], icon=":material/info:")
        reach = result["forecast"]["time_to_threshold"]
        t_max = settings["t_max"]
        with st.container(key="live_answer"):
            columns = st.columns(3)
            columns[0].markdown(f"**Activity**  \n{interval_text(result['activity'])}")
            columns[1].markdown(f"**k_d [1/s]**  \n{interval_text(result['k_d'])}")
            columns[2].markdown(
                f"**Time to pH {settings['threshold']:g}**  \n"
                f"{time_text(reach['median'], t_max)} (90 %: {time_text(reach['lo'], t_max)}"
                f" – {time_text(reach['hi'], t_max)}); reached before {t_max:g} s in "
                f"{100 * reach['p_reached']:.0f} % of the forecast draws")
        trace = settings["trace"] or {}
        st.plotly_chart(figures.live_trace_figure(
            live.t, live.pH, result["forecast"], result["attention"], result["settled_at"],
            trace.get("trajectory")), key="live_trace_chart")
        st.plotly_chart(figures.live_funnel_figure(
            live.history_table(), settings["threshold"], trace.get("truth"),
            result["settled_at"], settings["t_max"]), key="live_funnel_chart")
        st.caption(f"Bands are 90 % intervals after each update; a time to the threshold not "
                   f"reached by {settings['t_max']:g} s is drawn at {settings['t_max']:g} s. "
                   "The dashed line marks where the answer settled"
                   + ("; dotted lines are the true values." if trace.get("truth") else "."))
    if was_running and state["done"]:
        st.rerun()  # the replay has ended: stop ticking (and enable the buttons)


st.fragment(show_run, run_every=live_session.LIVE_TICK_S if live_session.live_running(state)
            else None)()
