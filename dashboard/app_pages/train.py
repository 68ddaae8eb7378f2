"""Train page: launch training runs in the background, watch them live, stop them."""

import time

import pandas as pd
import streamlit as st

from dashboard import cache, comparisons, forms, jobs, sources
from ei_keras.errors import EiKerasError
from ei_keras.evaluation import figures

STATE_ICONS = {jobs.RUNNING: ":material/autorenew:", jobs.FINISHED: ":material/check:",
               jobs.STOPPED: ":material/stop_circle:", jobs.CRASHED: ":material/error:",
               jobs.REFUSED: ":material/block:"}

st.title("Train")
st.caption("Each run trains in its own background process and directory: leaving the page "
           "or closing the tab does not stop it, and several runs can go at once.")

# --------------------------------------------------------------------------------------
# New run
# --------------------------------------------------------------------------------------
st.header("Start a run")
datasets = [d for d in cache.list_datasets() if not d["error"]]
if not datasets:
    st.info("No dataset yet: generate one on the Data page first.")
    st.page_link("app_pages/data.py", label="Go to Data", icon=":material/science:")
    st.stop()

col1, col2 = st.columns(2)
with col1:
    by_name = {d["name"]: d for d in datasets}
    dataset_name = st.selectbox("Dataset", list(by_name), key="train_dataset",
                                index=comparisons.training_choice(datasets),
                                format_func=lambda n: f"{n} ({by_name[n]['n_samples']} samples)")
    dataset = by_name[dataset_name]
    lengths = dataset["prefix_lengths"] + ([sources.ANY_FORMAT] if dataset["any_format"]
                                           else [])
    prefix_length = st.selectbox("Prefix length [s]", lengths, key="train_prefix",
                                 index=lengths.index(30.0) if 30.0 in lengths else 0,
                                 format_func=sources.format_label)
with col2:
    choices = forms.presets()
    preset = st.radio("Preset", choices, key="train_preset", horizontal=True,
                      index=choices.index("improved") if "improved" in choices else 0)
    st.caption("**improved**: compact network, weighted (attention) pooling, AdamW, warmup and "
               "plateau cuts. **anyformat**: the same recipe on a network that reads traces "
               "of any length and reading rate (train it on any-format traces). "
               "**baseline**: the old recipe (full-size network, average pooling, no warmup).")

with st.expander("Training settings (preset values; change any)", expanded=False):
    values, problems = forms.training_form(preset)
overrides = forms.training_overrides(preset, values)
problem = problems[0] if problems else forms.training_error(preset, overrides)
if problem:
    st.error(problem, icon=":material/error:")

if st.button("Start training", type="primary", disabled=bool(problem), key="train_start"):
    try:
        run_dir = jobs.start_training(dataset["path"], prefix_length, preset, overrides)
        jobs.show_job("train", run_dir.name)
        st.toast(f"Started run {run_dir.name}", icon=":material/rocket_launch:")
    except EiKerasError as error:
        st.error(str(error), icon=":material/error:")

# --------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------
st.header("Runs")
runs = jobs.list_runs()
if not runs:
    st.info("No runs yet. Pick a dataset above and press Start training; on the demo dataset "
            "a few epochs take about a minute.")
    st.stop()


def run_rows(runs):
    rows = []
    for run in runs:
        progress = f"{run['epoch']}/{run['epochs']}" if run["epochs"] else str(run["epoch"])
        rows.append({"run": run["id"], "status": run["state"], "dataset": run["dataset"],
                     "prefix [s]": (None if run["prefix_length"] is None
                                    else jobs.prefix_text(run["prefix_length"])),
                     "preset": run["preset"],
                     "epochs": progress,
                     "best val_loss": (round(run["best_val_loss"], 4)
                                       if run["best_val_loss"] is not None else None)})
    return pd.DataFrame(rows)


@st.fragment(run_every=2.0 if any(r["state"] == jobs.RUNNING for r in runs) else None)
def runs_table():
    current = jobs.list_runs()
    st.dataframe(run_rows(current), hide_index=True, width="stretch", key="train_runs_table")
    previous = st.session_state.get("train_running_ids", set())
    now_running = {r["id"] for r in current if r["state"] == jobs.RUNNING}
    st.session_state["train_running_ids"] = now_running
    if previous - now_running:  # a run ended: refresh the whole page (models, polling)
        st.rerun()


runs_table()

shown = jobs.select_job("Run", runs, "train")
run_dir, is_running = shown["dir"], shown["state"] == jobs.RUNNING


@st.fragment(run_every=1.5 if is_running else None)
def run_panel():
    run = jobs.run_info(run_dir)
    state = run["state"]
    head = st.columns([4, 1])
    head[0].markdown(f"#### {STATE_ICONS.get(state, '')} {run['id']} — **{state}**")
    if state == jobs.RUNNING:
        if head[1].button("Stop", key=f"train_stop_{run['id']}", type="secondary",
                          disabled=run["stop_requested"],
                          help="Ends after the current batch; the best model is kept."):
            jobs.request_stop(run_dir)
            st.rerun(scope="fragment")
    epochs = run["epochs"] or 0
    if epochs:
        fraction = min(1.0, run["epoch"] / epochs)
        text = f"epoch {run['epoch']} of {epochs}"
        if state == jobs.RUNNING and run["steps"] and run["batch"]:
            text += f" (batch {run['batch']}/{run['steps']} of the next epoch)"
        st.progress(fraction, text=text)
    if run["detail"]:
        st.caption(run["detail"])
    if state == jobs.CRASHED:
        st.error(f"This run crashed: {run['message']}", icon=":material/error:")
        if run.get("log_tail"):
            with st.expander("Last lines of the run's log"):
                st.code(run["log_tail"], language=None)
    elif state == jobs.REFUSED:
        st.error(f"This run was refused before training began: {run['message']}. Nothing "
                 f"was trained; start a new run with that corrected.",
                 icon=":material/block:")
    elif state == jobs.STOPPED:
        st.info("Stopped on request. The best model so far is kept and can be analysed.")
    elif state == jobs.FINISHED:
        st.success(f"Finished. Best val_loss {run['best_val_loss']:.4g} at epoch "
                   f"{run['best_epoch']}; analyse it on the Analyse page.",
                   icon=":material/check_circle:")
    if run["history"]:
        st.plotly_chart(figures.training_figure(run["history"], run["warmup_epochs"],
                                                run["best_epoch"]), key="train_curves")
    elif state == jobs.RUNNING:
        st.caption("Curves appear after the first epoch.")
    if state == jobs.RUNNING:
        st.caption(f"Updated {time.strftime('%H:%M:%S')}")
    elif is_running:  # it ended while we watched: refresh the page (list, Analyse models)
        st.rerun()


with st.container(key="train_run_panel"):
    run_panel()
