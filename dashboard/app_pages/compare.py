"""Compare page: train the baseline and improved recipes side by side (``ei-keras compare``)."""

import pandas as pd
import streamlit as st

from dashboard import cache, comparisons, jobs
from ei_keras.errors import EiKerasError
from ei_keras.evaluation import figures

st.title("Compare")
st.caption("The old recipe (baseline) against the improved one, on the same data: each prefix "
           "length with each preset, plus two ablations (average pooling, no variance "
           "penalty), every best model scored on a held-out test set.")

# --------------------------------------------------------------------------------------
# New comparison
# --------------------------------------------------------------------------------------
st.header("Start a comparison")
datasets = [d for d in cache.list_datasets() if not d["error"]]
names = [d["name"] for d in datasets]
if len(datasets) < 2:
    st.info("A comparison needs a training dataset and a held-out test dataset generated with "
            "another seed. Generate a second dataset on the Data page.")
    st.page_link("app_pages/data.py", label="Go to Data", icon=":material/science:")
else:
    columns = st.columns(2)
    data_name = columns[0].selectbox("Training dataset", names, key="compare_data",
                                     index=comparisons.training_choice(datasets))
    seed = next(d["seed"] for d in datasets if d["name"] == data_name)
    # Test sets first: named or used as one, then another seed than the training set's.
    test_names = [d["name"] for d in sorted(
        (d for d in datasets if d["name"] != data_name),
        key=lambda d: (not comparisons.looks_like_test_set(d), d["seed"] == seed))] + [data_name]
    test_name = columns[1].selectbox("Test dataset (another seed)", test_names,
                                     key="compare_test")
    data = next(d for d in datasets if d["name"] == data_name)
    test = next(d for d in datasets if d["name"] == test_name)
    if data["seed"] == test["seed"] and data["name"] != test["name"]:
        st.warning("Both datasets were generated with the same seed: the test cases repeat "
                   "training cases. Use a test set made with another seed.")
    columns = st.columns(4)
    lengths = columns[0].multiselect("Prefix lengths [s]", data["prefix_lengths"],
                                     default=data["prefix_lengths"][:1], key="compare_lengths",
                                     format_func=lambda v: f"{v:g} s")
    presets = columns[1].multiselect("Presets", ["baseline", "improved"],
                                     default=["baseline", "improved"], key="compare_presets")
    epochs = columns[2].number_input("Epochs per run (maximum)", value=20, min_value=1, step=5,
                                     key="compare_epochs")
    max_samples = columns[3].number_input("Samples per run (0: all)", value=0, min_value=0,
                                          step=500, key="compare_max_samples")
    problem = comparisons.comparison_error(data, test, lengths, presets)
    if problem:
        st.error(problem, icon=":material/error:")
    else:
        planned = comparisons.planned_comparison_runs(lengths, presets)
        if planned:
            st.caption(f"{len(planned)} runs, one after another: {', '.join(planned)}.")
    if st.button("Start comparison", type="primary", disabled=bool(problem),
                 key="compare_start"):
        try:
            out = comparisons.start_comparison(data, test, lengths, presets, epochs=int(epochs),
                                            max_samples=int(max_samples) or None)
            jobs.show_job("compare", out.name)
            st.rerun()
        except EiKerasError as error:
            st.error(str(error), icon=":material/error:")

# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
st.header("Comparisons")
made = comparisons.list_comparisons()
if not made:
    st.info("No comparison yet.")
    st.stop()
shown = jobs.select_job("Comparison", made, "compare")
chosen_dir, running = shown["dir"], shown["state"] == jobs.RUNNING


@st.fragment(run_every=3.0 if running else None)
def comparison_panel():
    info = comparisons.comparison_info(chosen_dir)
    done, planned = len(info["results"]), info["planned"]
    st.markdown(f"**{info['id']}** — {info['state']} (train: {info['dataset']}, "
                f"test: {info['test']})")
    if info["state"] == jobs.RUNNING:
        text = f"{done} of {len(planned)} runs done" if planned else f"{done} runs done"
        if info["current"]:
            text += f"; training {info['current']['name']}"
        st.progress(done / len(planned) if planned else 0.0, text=text)
    elif info["state"] == jobs.CRASHED:
        st.error(f"This comparison stopped: {info['message']}", icon=":material/error:")
    if info["results"]:
        rows = pd.DataFrame(comparisons.comparison_rows(info["results"]))
        scored = [c for c in rows.columns if c.endswith(("R²", "coverage"))]
        numbers = {c: st.column_config.NumberColumn(format="%.3g") for c in rows.columns
                   if c not in ("run", "status")}
        st.dataframe(rows.drop(columns=scored), hide_index=True, width="stretch",
                     key="compare_table", column_config=numbers)
        if scored:
            st.caption("On the test set:")
            st.dataframe(rows[["run"] + scored], hide_index=True, width="stretch",
                         key="compare_test_table", column_config=numbers)
    curves = info["results"] + ([info["current"]] if info["current"] else [])
    if any(r.get("val_loss") or r.get("history") for r in curves):
        st.plotly_chart(figures.comparison_figure(info["results"], info["current"]),
                        key="compare_chart")
    elif info["state"] == jobs.RUNNING:
        st.info("The curves appear here after the first run's first epoch.",
                icon=":material/hourglass_top:")
    if running and info["state"] != jobs.RUNNING:
        st.rerun()


with st.container(key="compare_panel"):
    comparison_panel()
