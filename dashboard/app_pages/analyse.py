"""Analyse page: a model + a trace → domain report, attention beside per-reading
information, posterior, forecast; recovery on a dataset."""

import math

import pandas as pd
import streamlit as st

from dashboard import analysis, cache, sources, words, workspace
from ei_keras.errors import EiKerasError
from ei_keras.evaluation import figures
from ei_keras.inference.posterior import reach_text
from ei_keras.inference.traces import simulated_trace
from ei_keras.simulation import KNOWN_NAMES, LABELS, LATENT_NAMES, label
from ei_keras.simulation.priors import prior_midpoints

UPLOAD = "Upload a .keras file…"
FROM_DATASET, SIMULATE, FROM_CSV = "From a dataset", "Simulate a run", "Upload a CSV"

st.title("Analyse")
st.caption("Pick a model and a pH trace of any length: see whether the model can vouch for "
           "it, where the network looked (attention) beside where the information is, what it "
           "infers with its uncertainty, and where the run is heading.")

# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------
st.header("Model")
models = analysis.available_models()
if not models:
    st.info(
        "**No trained model yet.** To get one, either\n"
        "- **train one** on the Train page: pick the demo dataset and press *Start training* "
        "(a few epochs take a minute or two; more epochs give a better model), or\n"
        "- **use the shipped default model**: it appears here automatically once this "
        "ei_keras installation includes it, or\n"
        "- **upload** a `.keras` file made by `ei-keras train` (choose *Upload* below).",
        icon=":material/info:")
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
labels = [m["label"] for m in models] + [UPLOAD]
choice = st.selectbox("Model", labels, key="analyse_model")
if choice == UPLOAD:
    uploaded = st.file_uploader(
        f"A .keras model (at most {workspace.MAX_UPLOAD_MB} MB). It is loaded in Keras safe "
        "mode: no code from the file is run.", type=["keras"], key="analyse_model_upload")
    if uploaded is None:
        st.stop()
    try:
        model_path = workspace.save_model_upload(uploaded.getvalue(), uploaded.name)
    except EiKerasError as error:
        st.error(str(error), icon=":material/error:")
        st.stop()
else:
    model_path = next(m["path"] for m in models if m["label"] == choice)

try:
    with st.spinner("Loading the model…"):
        model = cache.get_model(model_path)
        info = analysis.describe_model(model)
except EiKerasError as error:
    st.error(f"Cannot use this model: {error}", icon=":material/error:")
    st.stop()
st.caption(f"{analysis.model_reads(info)} Infers **{', '.join(info['target_names'])}**; "
           f"{info['n_params']:,} weights.")

# --------------------------------------------------------------------------------------
# Trace
# --------------------------------------------------------------------------------------
st.header("Trace")
source = st.segmented_control("Where the trace comes from", [FROM_DATASET, SIMULATE, FROM_CSV],
                              default=FROM_DATASET, key="analyse_source") or FROM_DATASET
midpoints = prior_midpoints()


def known_inputs(prefix):
    """The five known conditions of the run, as number inputs."""
    values = {}
    columns = st.columns(5)
    for column, name in zip(columns, KNOWN_NAMES):
        values[name] = column.number_input(label(name), value=float(midpoints[name]),
                                           format="%g", step=None, key=f"{prefix}_{name}")
    return values


trace, dataset, data_option = None, None, None
try:
    if source == FROM_DATASET:
        usable = [d for d in cache.list_datasets() if not d["error"]]
        if not usable:
            st.warning("No dataset in the workspace. Generate one on the Data page, or "
                       "simulate a run here.")
            st.stop()
        columns = st.columns(3)
        name = columns[0].selectbox("Dataset", [d["name"] for d in usable], key="analyse_dataset")
        dataset = next(d for d in usable if d["name"] == name)
        data_option = columns[1].selectbox("Traces", sources.dataset_formats(dataset, info),
                                           key="analyse_prefix",
                                           format_func=sources.format_label)
        index = columns[2].number_input(f"Case (0–{dataset['n_samples'] - 1})", min_value=0,
                                        max_value=dataset["n_samples"] - 1, value=0, step=1,
                                        key="analyse_case")
        trace = sources.dataset_trace(dataset["path"], data_option, int(index))
    elif source == SIMULATE:
        st.caption("A run simulated with these conditions and read through the probe model "
                   "(lag, offset, noise), for as long and as often as you choose.")
        known = known_inputs("analyse_sim")
        columns = st.columns(4)
        latent = {}
        for column, name in zip(columns, LATENT_NAMES):
            latent[name] = column.number_input(label(name),
                                               value=float(midpoints[name]), format="%g",
                                               step=None, key=f"analyse_sim_{name}")
        length0, interval0 = sources.simulation_defaults(info)
        columns = st.columns(4)
        length = columns[0].number_input(
            "Trace length [s]", min_value=sources.SIM_LENGTH_S[0],
            max_value=sources.SIM_LENGTH_S[1], value=length0, format="%g", step=None,
            key="analyse_sim_length")
        interval = columns[1].number_input(
            "Reading interval [s]", min_value=sources.SIM_INTERVAL_S[0],
            max_value=sources.SIM_INTERVAL_S[1], value=interval0, format="%g", step=None,
            key="analyse_sim_interval", help="Seconds between two readings of the probe.")
        noise = columns[2].number_input("Noise σ [pH]", value=0.01, format="%g", step=None,
                                        key="analyse_sim_noise")
        seed = columns[3].number_input("Seed", value=0, step=1, key="analyse_sim_seed")
        trace = simulated_trace(known, latent, length, interval, noise_std=noise,
                                         seed=int(seed))
    else:
        columns = st.columns([3, 1])
        upload = columns[0].file_uploader(
            "A CSV with a header row and columns for time and pH (e.g. `time,pH`)",
            type=["csv", "txt"], key="analyse_csv")
        minutes = columns[1].toggle("Time in minutes", key="analyse_csv_minutes")
        st.caption("The known conditions of this run:")
        known = known_inputs("analyse_csv")
        if upload is None:
            st.info("Upload a CSV file to analyse a real probe trace.")
            st.stop()
        trace = sources.uploaded_trace(upload.getvalue(), upload.name, known, minutes=minutes)
        longest = info["domain"]["prefix_length_s"][1] if info["domain"] \
            else info["prefix_length"]
        if minutes and trace["t"][-1] > longest >= trace["t"][-1] / 60:
            st.warning(f"With “Time in minutes” on, the {len(trace['t'])} readings span "
                       f"{trace['t'][-1]:.4g} s, longer than the {longest:.4g} s the model "
                       "reads; in seconds they would fit. If the time column is in seconds, "
                       "switch “Time in minutes” off.", icon=":material/schedule:")
except EiKerasError as error:
    st.error(words.in_dashboard_words(str(error)), icon=":material/error:")
    st.stop()

allow_extrapolation = st.checkbox(
    "Allow extrapolation", key="analyse_allow_extrapolation",
    help="Answer even when the known conditions lie outside the ranges the model was trained "
         "on. Such an answer is an extrapolation and is flagged as one.")
# An exact check answers for one model, trace and switch: forget it when they change.
exact_key = analysis.exact_key(model_path, trace, allow_extrapolation=allow_extrapolation)
if st.session_state.get("analyse_exact_result", {}).get("key") != exact_key:
    st.session_state.pop("analyse_exact_result", None)

# --------------------------------------------------------------------------------------
# Domain report, attention beside information, posterior
# --------------------------------------------------------------------------------------
t = trace["t"]
spacing = (t[-1] - t[0]) / (len(t) - 1) if len(t) > 1 else float("nan")
st.caption(f"**{trace['source']}**: {len(t)} readings over {t[-1]:g} s "
           f"(one every {spacing:.3g} s).")
try:
    with st.spinner("Inferring…"):
        result = analysis.analyse_trace(model, trace, allow_extrapolation=allow_extrapolation)
except EiKerasError as error:
    st.error(f"Cannot analyse this trace: {error}", icon=":material/error:")
    st.stop()

domain = result["domain"]
with st.container(key="analyse_domain"):
    if domain["ok"]:
        st.success(f"Checked: {', '.join(domain['checked'])}. Nothing to flag: the model can "
                   "vouch for this trace.", icon=":material/check_circle:")
    else:
        st.warning("**Read these before trusting the answer:**\n"
                   + "\n".join(f"- {flag}" for flag in domain["flags"])
                   + (f"\n\nChecked: {', '.join(domain['checked'])}." if domain["checked"]
                      else ""), icon=":material/warning:")
    for note in domain["notes"]:
        st.info(note[0].upper() + note[1:], icon=":material/info:")

st.header("What the network sees and infers")
left, right = st.columns(2)
with left.container(key="analyse_attention"):
    st.plotly_chart(figures.attention_figure(t, trace["pH"], result["attention"],
                                             result["information"], result["agreement"],
                                             result["used"]),
                    key="analyse_attention_chart")
    if result["information"] is None:
        st.info(f"The information per reading is not shown: {result['information_note']}.",
                icon=":material/info:")
    else:
        st.caption("**Information:** how much each reading by itself narrows each parameter "
                   "at the posterior median (from the simulator's sensitivities and the "
                   "noise). **ρ:** rank correlation between the attention and that information "
                   "over the readings the model read; near 1, the network leaned on the "
                   "readings that carry the answer.")
        names = list(result["information"])
        with st.container(key="analyse_agreement"):
            for column, name in zip(st.columns(len(names)), names):
                rho = result["agreement"].get(name, float("nan"))
                column.metric(f"ρ {name}", "n/a" if not math.isfinite(rho) else f"{rho:.2f}",
                              help=f"Rank correlation between the attention and the "
                                   f"information about {LABELS.get(name, name)}")
with right.container(key="analyse_posterior"):
    st.plotly_chart(figures.posterior_figure(result["posterior"], trace.get("truth")),
                    key="analyse_posterior_chart")
rows = []
for name, stats in result["posterior"].items():
    row = {"parameter": label(name), "median": stats["median"], "mean": stats["mean"],
           "σ": stats["std"], "50 % interval": f"{stats['lo50']:.4g} – {stats['hi50']:.4g}",
           "90 % interval": f"{stats['lo90']:.4g} – {stats['hi90']:.4g}",
           "95 % interval": f"{stats['lo95']:.4g} – {stats['hi95']:.4g}"}
    if trace.get("truth"):
        row["truth"] = trace["truth"].get(name)
    rows.append(row)
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="analyse_table",
             column_config={key: st.column_config.NumberColumn(format="%.4g")
                            for key in ("median", "mean", "σ", "truth")})
st.caption("Every value in physical units (unit in brackets); intervals are central "
           "posterior intervals and stay within each parameter's physical range.")

# --------------------------------------------------------------------------------------
# Exact check of the network's answer
# --------------------------------------------------------------------------------------
EXACT_BOXES = {  # verdict → how it is shown
    "agrees": (st.success, ":material/verified:", "The network agrees with the exact posterior"),
    "sharper": (st.info, ":material/compress:",
                "The network is sharper than the exact posterior (overconfident)"),
    "wider": (st.info, ":material/expand:",
              "The network is wider than the exact posterior (more cautious than needed)"),
    "shifted": (st.warning, ":material/warning:",
                "The network's answer is shifted from the exact posterior"),
    "unreliable": (st.error, ":material/error:",
                   "The exact answer could not be computed reliably: trust neither blindly"),
}
st.subheader("Exact check")
st.caption("Computes the exact Bayesian posterior of this trace (the training prior and the "
           "likelihood of every reading under the simulator and probe model) by importance "
           "sampling, starting from the network's answer, and says whether the network's "
           "intervals match it. Takes a few seconds.")
if st.button("Exact check", key="analyse_exact_button", icon=":material/fact_check:") \
        and "analyse_exact_result" not in st.session_state:
    try:
        with st.spinner("Computing the exact posterior by importance sampling…"):
            st.session_state["analyse_exact_result"] = {
                "key": exact_key,
                "result": analysis.exact_check(model, trace,
                                               allow_extrapolation=allow_extrapolation)}
    except EiKerasError as error:
        st.error(f"Cannot run the exact check: {error}", icon=":material/error:")
if "analyse_exact_result" in st.session_state:
    check = st.session_state["analyse_exact_result"]["result"]
    show, icon, headline = EXACT_BOXES[check["verdict"]]
    with st.container(key="analyse_exact"):
        show(f"**{headline}:** {check['reason']}.", icon=icon)
        columns = st.columns(3)
        columns[0].metric("ESS", f"{check['ess']:.0f}",
                          help="Effective sample size: how many equally weighted draws the "
                               "weighted draws are worth. Too few, and the exact answer is "
                               "unreliable.")
        columns[1].metric("Draws simulated", f"{check['n_draws']:,}")
        columns[2].metric("Reading noise assumed", f"σ = {check['noise_std']:g} pH",
                          help="The noise of the likelihood: the noise the model was trained "
                               "with.")
        st.plotly_chart(figures.exact_figure(check["network"], check["exact"],
                                             trace.get("truth")),
                        key="analyse_exact_chart")
        st.dataframe(pd.DataFrame([{
            "parameter": label(name),
            "network median": check["network"][name]["median"],
            "exact median": check["exact"][name]["median"],
            "network 90 %": f"{check['network'][name]['lo90']:.4g} – "
                            f"{check['network'][name]['hi90']:.4g}",
            "exact 90 %": f"{check['exact'][name]['lo90']:.4g} – "
                          f"{check['exact'][name]['hi90']:.4g}",
            "width ratio": c["width_ratio"], "shift [exact σ]": c["shift_sigma"],
            "verdict": c["verdict"]} for name, c in check["comparison"].items()]),
            hide_index=True, width="stretch", key="analyse_exact_table",
            column_config={key: st.column_config.NumberColumn(format="%.3g") for key in (
                "network median", "exact median", "width ratio", "shift [exact σ]")})
        st.caption(f"Width ratio: the network's 90 % interval over the exact one (above 1: "
                   f"wider). Shift: the distance between the medians in exact σ. Computed "
                   f"in {check['seconds']:.1f} s.")

# --------------------------------------------------------------------------------------
# Forecast
# --------------------------------------------------------------------------------------
st.header("Forecast")
columns = st.columns(3)
threshold = columns[0].number_input("Threshold pH", value=8.5, step=0.1, format="%.2f",
                                    key="analyse_threshold")
t_max = columns[1].number_input("Forecast until [s]", value=2000.0, step=100.0, format="%g",
                                key="analyse_t_max")
n_draws = columns[2].number_input("Posterior draws", value=200, min_value=10, max_value=2000,
                                  step=50, key="analyse_draws")
try:
    if not t_max > t[-1]:
        raise EiKerasError(f"forecast until must be later than the trace's end ({t[-1]:g} s)")
    with st.spinner(f"Simulating {int(n_draws)} posterior draws to {t_max:g} s…"):
        fc = analysis.forecast_trace(model, trace, threshold=threshold, t_max=t_max,
                                     n_draws=int(n_draws),
                                     allow_extrapolation=allow_extrapolation)
    with st.container(key="analyse_forecast"):
        st.markdown(f"**Forecast:** {reach_text(fc['time_to_threshold'], threshold, t_max)}.")
        if not domain["ok"]:
            st.caption("The domain report above flagged this trace: read the forecast with "
                       "it in mind.")
        st.plotly_chart(figures.forecast_figure(fc, trace, trace.get("trajectory")),
                        key="analyse_forecast_chart")
except EiKerasError as error:
    st.error(f"Cannot forecast: {error}", icon=":material/error:")

# --------------------------------------------------------------------------------------
# Recovery and calibration on a dataset
# --------------------------------------------------------------------------------------
if dataset is not None:
    st.header(f"Uncertainty on {dataset['name']}")
    st.caption("Every case of the dataset (up to the number chosen, "
               f"{sources.format_label(data_option)}) through the model: do the estimates "
               "recover the truth, and do the intervals contain it as often as they claim? "
               "For an honest test, use a dataset generated with a different seed than the "
               "training data.")
    n_cases = dataset["n_samples"]
    if n_cases > 20:
        n_cases = st.slider("Cases", min_value=10, max_value=min(2000, n_cases),
                            value=min(300, n_cases), step=10, key="analyse_n_cases")
    try:
        with st.spinner(f"Running the model on {n_cases} cases…"):
            evaluation = cache.evaluation(model_path, dataset["path"], data_option, n_cases,
                                          allow_extrapolation=allow_extrapolation)
        names = info["target_names"]
        with st.container(key="analyse_uncertainty"):
            note = analysis.evaluation_domain_note(evaluation, n_cases)
            if note is not None:
                kind, text = note
                (st.warning if kind == "warning" else st.info)(
                    text, icon=":material/warning:" if kind == "warning" else
                    ":material/info:")
            st.plotly_chart(figures.recovery_figure({n: evaluation[n] for n in names}),
                            key="analyse_recovery_chart")
            st.plotly_chart(figures.calibration_figure(
                {n: evaluation[n]["calibration"] for n in names}),
                key="analyse_calibration_chart")
            coverage = "Observed coverage of the 90 % intervals: " + ", ".join(
                f"{label(n)} {100 * analysis.coverage_at(evaluation[n], 90):.0f} %"
                for n in names) + f" (over {evaluation['n']} cases)"
            n_within = evaluation["n"] - evaluation["domain"]["n_extrapolated"]
            if evaluation["domain"]["n_extrapolated"] and n_within:
                coverage += "; within the trained ranges: " + ", ".join(
                    f"{label(n)} "
                    f"{100 * analysis.coverage_at(evaluation[n], 90, within_ranges=True):.0f} %"
                    for n in names) + f" (over {n_within} cases)"
            st.caption(coverage + ".")
    except EiKerasError as error:
        st.error(f"Cannot evaluate on this dataset: {words.in_dashboard_words(str(error))}",
                 icon=":material/error:")
