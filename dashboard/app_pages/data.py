"""Data page: configure the simulator's dataset, preview it, generate it, list datasets."""

import json
import time

import pandas as pd
import streamlit as st

from dashboard import figures, services
from ei_keras.errors import EiKerasError

st.title("Data")
st.caption("Simulated training data: each case is a urease run with random conditions; the "
           "network learns to read its first seconds of pH. Generation writes an HDF5 file "
           "into the workspace.")

defaults = services.default_config()
errors = []


def check(partial):
    """Show the validation message of one setting right under its widget."""
    message = services.field_error(partial)
    if message:
        errors.append(message)
        st.error(message, icon=":material/error:")


# --------------------------------------------------------------------------------------
# Existing datasets
# --------------------------------------------------------------------------------------
st.header("Datasets in the workspace")
datasets = services.list_datasets()
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
            st.code(services.describe(info["path"]), language=None)


# --------------------------------------------------------------------------------------
# Generation settings
# --------------------------------------------------------------------------------------
st.header("Generate a new dataset")
partial = {}
col1, col2, col3 = st.columns(3)
with col1:
    st.subheader("Size")
    name = st.text_input("Dataset name", value=services.suggest_name(), key="data_name",
                         help="Written as <name>.h5 in the workspace's datasets folder.")
    name_stem, name_problem = services.clean_name(name)
    if name_problem:
        errors.append(name_problem)
        st.error(name_problem, icon=":material/error:")
    partial["n_samples"] = st.number_input("Number of samples", value=defaults["n_samples"],
                                           step=500, key="data_n_samples")
    check({"n_samples": partial["n_samples"]})
    partial["seed"] = st.number_input("Seed", value=defaults["seed"], step=1, key="data_seed",
                                      help="Same seed, same data. Use a different seed for a "
                                      "test set than for training.")
    check({"seed": partial["seed"]})
    partial["t_max"] = st.number_input("End of the full trajectory t_max [s]",
                                       value=defaults["t_max"], step=100.0, format="%g",
                                       key="data_t_max")
    check({"t_max": partial["t_max"]})
    partial["n_times"] = st.number_input("Points on the full trajectory",
                                         value=defaults["n_times"], step=50, key="data_n_times")
    check({"n_times": partial["n_times"]})
with col2:
    st.subheader("Prefixes")
    lengths_text = st.text_input(
        "Prefix lengths [s]", value=", ".join(f"{v:g}" for v in defaults["prefix_lengths"]),
        key="data_prefix_lengths", help="The first seconds of each run the network reads.")
    lengths, problem = services.parse_numbers(lengths_text, "prefix_lengths")
    if problem:
        errors.append(problem)
        st.error(problem, icon=":material/error:")
    else:
        partial["prefix_lengths"] = lengths
        check({"prefix_lengths": lengths})
    partial["prefix_n_points"] = st.number_input("Readings per prefix",
                                                 value=defaults["prefix_n_points"], step=10,
                                                 key="data_prefix_n_points")
    check({"prefix_n_points": partial["prefix_n_points"]})
    partial["use_adaptive_n_points"] = st.toggle(
        "Adaptive readings (more on long prefixes)", value=defaults["use_adaptive_n_points"],
        key="data_adaptive", help="max(readings per prefix, prefix length / target spacing).")
    partial["target_dt"] = st.number_input("Target spacing for adaptive readings [s]",
                                           value=defaults["target_dt"], step=0.1, format="%.3f",
                                           key="data_target_dt",
                                           disabled=not partial["use_adaptive_n_points"])
    check({"target_dt": partial["target_dt"]})
    any_format = defaults["any_format"]
    partial["any_format"] = {"enabled": st.toggle(
        "Also any-format traces", value=any_format["enabled"], key="data_any_format",
        help=f"Every sample also read with its own length ({any_format['prefix_length_s'][0]:g}"
             f"–{any_format['prefix_length_s'][1]:g} s) and reading interval "
             f"({any_format['reading_interval_s'][0]:g}–{any_format['reading_interval_s'][1]:g}"
             " s), as a lab's logger would: the data for a model that reads any trace (Train: "
             "any-format traces, preset anyformat).")}
with col3:
    st.subheader("Measurement model")
    measurement = dict(defaults["measurement_model"])
    measurement["add_noise"] = st.toggle("Add noise", value=measurement["add_noise"],
                                         key="data_add_noise")
    measurement["noise_std"] = st.number_input("Noise σ [pH]", value=measurement["noise_std"],
                                               step=0.005, format="%.4f", key="data_noise_std",
                                               disabled=not measurement["add_noise"])
    check({"measurement_model": {"noise_std": measurement["noise_std"]}})
    measurement["use_probe_lag"] = st.toggle("Probe lag", value=measurement["use_probe_lag"],
                                             key="data_probe_lag",
                                             help="The probe follows the true pH with a "
                                             "first-order delay (time constant tau_probe).")
    measurement["use_offset"] = st.toggle("Probe offset", value=measurement["use_offset"],
                                          key="data_offset",
                                          help="A calibration offset on every reading.")
    partial["measurement_model"] = measurement
    st.subheader("Parameters to infer")
    partial["infer_params"] = st.multiselect(
        "Targets", ["activity", "k_d", "tau_probe", "pH_offset"],
        default=defaults["infer_params"], key="data_infer_params",
        help="activity and k_d always; the probe's tau_probe and offset optionally.")
    check({"infer_params": partial["infer_params"], "measurement_model": measurement})

with st.expander("Prior ranges: each parameter is drawn uniformly between low and high "
                 "(activity log-uniformly)", expanded=False):
    ranges = {}
    header = st.columns([3, 2, 2])
    header[0].markdown("**parameter**")
    header[1].markdown("**low**")
    header[2].markdown("**high**")
    for pname, (low, high) in defaults["param_ranges"].items():
        row = st.columns([3, 2, 2])
        row[0].markdown(services.label(pname))
        fmt = "%.3e" if pname in ("activity", "k_d") else "%.4g"
        new_low = row[1].number_input(f"{pname} low", value=float(low), format=fmt,
                                      step=None, key=f"data_range_{pname}_low",
                                      label_visibility="collapsed")
        new_high = row[2].number_input(f"{pname} high", value=float(high), format=fmt,
                                       step=None, key=f"data_range_{pname}_high",
                                       label_visibility="collapsed")
        ranges[pname] = [new_low, new_high]
        check({"param_ranges": {pname: ranges[pname]}})
    partial["param_ranges"] = ranges

whole = None if errors else services.config_error(partial)
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
    config = services.resolve(partial)
    lengths = config["prefix_lengths"]
    shown = st.segmented_control("Prefix shown", [f"{v:g} s" for v in lengths],
                                 default=f"{lengths[min(1, len(lengths) - 1)]:g} s",
                                 key="data_preview_prefix") or f"{lengths[0]:g} s"
    try:
        with st.spinner("Simulating a few cases…"):
            sample = services.preview(json.dumps(config), 4)
        length = next(v for v in lengths if f"{v:g} s" == shown)
        st.plotly_chart(figures.preview_figure(sample, length), key="data_preview_chart")
        with st.expander("Parameters of the previewed cases"):
            st.dataframe(pd.DataFrame(sample["parameters"]), hide_index=True)
    except EiKerasError as error:
        st.error(f"Preview failed: {error}")

if st.button("Generate", type="primary", disabled=bool(errors), key="data_generate",
             help="Runs in the background; you can leave the page."):
    try:
        job = services.start_generation(partial, name_stem)
        st.session_state.setdefault("data_running_jobs", set()).add(str(job))
        st.rerun()
    except EiKerasError as error:
        st.error(str(error), icon=":material/error:")


# --------------------------------------------------------------------------------------
# Generation jobs (polled while any runs)
# --------------------------------------------------------------------------------------
def show_jobs():
    jobs = services.generation_jobs()
    running_before = st.session_state.setdefault("data_running_jobs", set())
    for job in jobs:
        if job["state"] == services.RUNNING:
            running_before.add(job["dir"])
            st.progress(job["progress"], text=f"Generating **{job['name']}** "
                        f"({job['n_samples']} samples): {job['message']}")
        elif job["state"] == services.CRASHED:
            cols = st.columns([6, 1])
            cols[0].error(f"Generating {job['name']} failed: {job['message']}")
            if cols[1].button("Dismiss", key=f"data_dismiss_{job['dir']}"):
                services.dismiss_job(job["dir"])
                st.rerun()
        elif job["dir"] in running_before:  # finished since the last look: refresh all
            running_before.discard(job["dir"])
            services.dataset_written(job)
            st.rerun()
        elif time.time() - (job["finished"] or 0.0) < 120:  # from the job, not the session:
            # shown even if the page's refresh above was lost under load
            st.success(f"Dataset {job['name']} is ready (listed at the top); train on it on "
                       "the Train page.", icon=":material/check_circle:")


any_running = any(job["state"] == services.RUNNING for job in services.generation_jobs())
st.fragment(show_jobs, run_every=1.0 if any_running else None)()

