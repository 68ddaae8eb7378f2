"""Compare page: train the baseline and improved recipes side by side (``ei-keras compare``)."""

import pandas as pd
import streamlit as st

from dashboard import figures, services
from ei_keras.errors import EiKerasError

st.title("Compare")
st.caption("The old recipe (baseline) against the improved one, on the same data: each prefix "
           "length with each preset, plus two ablations (average pooling, no variance "
           "penalty), every best model scored on a held-out test set.")

# --------------------------------------------------------------------------------------
# New comparison
# --------------------------------------------------------------------------------------
st.header("Start a comparison")
datasets = [d for d in services.list_datasets() if not d["error"]]
names = [d["name"] for d in datasets]
if len(datasets) < 2:
    st.info("A comparison needs a training dataset and a held-out test dataset generated with "
            "another seed. Generate a second dataset on the Data page.")
    st.page_link("app_pages/data.py", label="Go to Data", icon=":material/science:")
else:
    columns = st.columns(2)
    data_name = columns[0].selectbox("Training dataset", names, key="compare_data")
    test_names = [n for n in names if n != data_name] + [data_name]
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
    problem = services.comparison_error(data, test, lengths, presets)
    if problem:
        st.error(problem, icon=":material/error:")
    else:
        planned = services.planned_comparison_runs(lengths, presets)
        if planned:
            st.caption(f"{len(planned)} runs, one after another: {', '.join(planned)}.")
    if st.button("Start comparison", type="primary", disabled=bool(problem),
                 key="compare_start"):
        try:
            out = services.start_comparison(data, test, lengths, presets, epochs=int(epochs),
                                            max_samples=int(max_samples) or None)
            st.session_state["compare_selected"] = out.name
            st.rerun()
        except EiKerasError as error:
            st.error(str(error), icon=":material/error:")

# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
st.header("Comparisons")
comparisons = services.list_comparisons()
if not comparisons:
    st.info("No comparison yet.")
    st.stop()
ids = [c["id"] for c in comparisons]
selected = st.session_state.get("compare_selected")
chosen = st.selectbox("Comparison", ids, index=ids.index(selected) if selected in ids else 0,
                      key="compare_view")
chosen_dir = next(c["dir"] for c in comparisons if c["id"] == chosen)
running = next(c["state"] for c in comparisons if c["id"] == chosen) == services.RUNNING


@st.fragment(run_every=3.0 if running else None)
def comparison_panel():
    info = services.comparison_info(chosen_dir)
    done, planned = len(info["results"]), info["planned"]
    st.markdown(f"**{info['id']}** — {info['state']} (train: {info['dataset']}, "
                f"test: {info['test']})")
    if info["state"] == services.RUNNING:
        text = f"{done} of {len(planned)} runs done" if planned else f"{done} runs done"
        if info["current"]:
            text += f"; training {info['current']['name']}"
        st.progress(done / len(planned) if planned else 0.0, text=text)
    elif info["state"] == services.CRASHED:
        st.error(f"This comparison stopped: {info['message']}", icon=":material/error:")
    if info["results"]:
        st.dataframe(pd.DataFrame(services.comparison_rows(info["results"])), hide_index=True,
                     width="stretch", key="compare_table",
                     column_config={"best val NLL": st.column_config.NumberColumn(format="%.3f"),
                                    "final val NLL": st.column_config.NumberColumn(format="%.3f")})
    if info["results"] or info["current"]:
        st.plotly_chart(figures.comparison_figure(info["results"], info["current"]),
                        key="compare_chart")
    elif info["state"] == services.RUNNING:
        st.caption("The first run's curves appear after its first epoch.")
    if running and info["state"] != services.RUNNING:
        st.rerun()


with st.container(key="compare_panel"):
    comparison_panel()
