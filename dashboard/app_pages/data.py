"""Data page: configure the simulator's dataset, preview it, generate it, list datasets."""

import json
import time

import pandas as pd
import streamlit as st

from dashboard import cache, forms, jobs, workspace
from ei_keras.errors import EiKerasError
from ei_keras.evaluation import figures

st.title("Data")
st.caption("Simulated training data: each case is a urease run with random conditions; the "
           "network learns to read its first seconds of pH. Generation writes an HDF5 file "
           "into the workspace.")


# --------------------------------------------------------------------------------------
# Existing datasets
# --------------------------------------------------------------------------------------
st.header("Datasets in the workspace")
datasets = cache.list_datasets()
if not datasets:
    st.info("No dataset yet: configure one below and press Generate.")
else:
    table = pd.DataFrame([{
        "name": d["name"], "samples": d["n_samples"],
        "prefix lengths [s]": ", ".join(f"{v:g}" for v in d["prefix_lengths"]),
        "any-format traces": "yes" if d.get("any_format") else "no",
        "targets": ", ".join(d["targets"]), "seed": d["seed"],
        "size [MB]": round(d["size_mb"], 2),
        "status": d["error"] or "ok"} for d in datasets])
    st.dataframe(table, hide_index=True, width="stretch", key="data_table")
    chosen = st.selectbox("Show the configuration of", [d["name"] for d in datasets],
                          key="data_show_config")
    info = next(d for d in datasets if d["name"] == chosen)
    with st.expander(f"Configuration and summary of {chosen}"):
        if info["error"]:
            st.error(info["error"])
        else:
            st.json(info["config"], expanded=False)
            st.code(cache.describe(info["path"]), language=None)


# --------------------------------------------------------------------------------------
# Generation settings
# --------------------------------------------------------------------------------------
st.header("Generate a new dataset")
errors = []
name = st.text_input("Dataset name", value=jobs.suggest_name(), key="data_name",
                     help="Written as <name>.h5 in the workspace's datasets folder.")
name_stem, name_problem = workspace.clean_name(name)
if name_problem:
    errors.append(name_problem)
    st.error(name_problem, icon=":material/error:")
partial = forms.dataset_form(forms.default_config(), errors)

whole = None if errors else forms.config_error(partial)
if whole:
    errors.append(whole)
    st.error(whole, icon=":material/error:")

# --------------------------------------------------------------------------------------
# Preview and generate
# --------------------------------------------------------------------------------------
st.subheader("Preview")
if errors:
    st.warning("Fix the settings marked above to see a preview and generate.")
else:
    config = forms.resolve(partial)
    lengths = config["prefix_lengths"]
    shown = st.segmented_control("Prefix shown", [f"{v:g} s" for v in lengths],
                                 default=f"{lengths[min(1, len(lengths) - 1)]:g} s",
                                 key="data_preview_prefix") or f"{lengths[0]:g} s"
    try:
        with st.spinner("Simulating a few cases…"):
            sample = cache.preview_cached(json.dumps(config), 4)
        length = next(v for v in lengths if f"{v:g} s" == shown)
        st.plotly_chart(figures.preview_figure(sample, length), key="data_preview_chart")
        with st.expander("Parameters of the previewed cases"):
            st.dataframe(pd.DataFrame(sample["parameters"]), hide_index=True)
    except EiKerasError as error:
        st.error(f"Preview failed: {error}")

if st.button("Generate", type="primary", disabled=bool(errors), key="data_generate",
             help="Runs in the background; you can leave the page."):
    try:
        job = jobs.start_generation(partial, name_stem)
        st.session_state.setdefault("data_running_jobs", set()).add(str(job))
        st.rerun()
    except EiKerasError as error:
        st.error(str(error), icon=":material/error:")


# --------------------------------------------------------------------------------------
# Generation jobs (polled while any runs)
# --------------------------------------------------------------------------------------
def show_jobs():
    running_before = st.session_state.setdefault("data_running_jobs", set())
    for job in jobs.generation_jobs():
        if job["state"] == jobs.RUNNING:
            running_before.add(job["dir"])
            st.progress(job["progress"], text=f"Generating **{job['name']}** "
                        f"({job['n_samples']} samples): {job['message']}")
        elif job["state"] == jobs.CRASHED:
            cols = st.columns([6, 1])
            cols[0].error(f"Generating {job['name']} failed: {job['message']}")
            if cols[1].button("Dismiss", key=f"data_dismiss_{job['dir']}"):
                jobs.dismiss_job(job["dir"])
                st.rerun()
        elif job["dir"] in running_before:  # finished since the last look: refresh all
            running_before.discard(job["dir"])
            cache.forget_datasets()
            st.rerun()
        elif time.time() - (job["finished"] or 0.0) < 120:  # from the job, not the session:
            # shown even if the page's refresh above was lost under load
            st.success(f"Dataset {job['name']} is ready (listed at the top); train on it on "
                       "the Train page.", icon=":material/check_circle:")


any_running = any(job["state"] == jobs.RUNNING for job in jobs.generation_jobs())
st.fragment(show_jobs, run_every=1.0 if any_running else None)()

