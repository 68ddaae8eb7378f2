"""``ei-keras infer``: posterior and forecast for a real probe trace (CSV)."""

import json

import numpy as np

from ei_keras.errors import EiKerasError
from ei_keras.fileio import write_json
from ei_keras.inference.default_model import default_model_path
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES, UNITS

KNOWN_FLAGS = {"substrate_mM": "--substrate-mM", "grams_urease_powder": "--grams",
                "volume_L": "--volume-L", "temperature_C": "--temperature-C",
                "initial_pH": "--initial-pH"}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "infer", help="infer kinetics (with uncertainty) from a pH trace CSV",
        description="Posterior of activity, k_d (and nuisance parameters) from the first "
        "seconds of a probe trace, with a forecast of when the pH reaches a threshold.")
    parser.add_argument("--model", help="a .keras model (default: the shipped model)")
    add_trace_arguments(parser)
    parser.add_argument("--exact", action="store_true",
                        help="also compute the exact posterior (importance sampling through the "
                             "simulator, about a second) and print it beside the network's, "
                             "with the effective sample size and a verdict")
    parser.add_argument("--json", metavar="OUT.json",
                        help="also write the results as strict JSON (null for a time to "
                             "threshold never reached)")
    parser.add_argument("--network-only", action="store_true",
                        help="answer from the network alone, without the local fit that "
                             "sharpens a parameter the readings pin down")
    parser.set_defaults(func=run)


def add_trace_arguments(parser):
    """The flags ``infer`` and ``watch`` share: the CSV and its columns, the known inputs,
    the threshold, the horizon and the extrapolation switch."""
    parser.add_argument("--csv", required=True, metavar="TRACE.csv",
                        help="CSV with a header row naming a time and a pH column")
    parser.add_argument("--minutes", action="store_true", help="the time column is in minutes")
    parser.add_argument("--time-column", help="name of the time column (default: detected)")
    parser.add_argument("--ph-column", help="name of the pH column (default: detected)")
    parser.add_argument("--known", metavar="JSON",
                        help="known inputs as JSON, e.g. '{\"substrate_mM\": 30, ...}'")
    for name, flag in KNOWN_FLAGS.items():
        parser.add_argument(flag, dest=name, type=float, help=f"known input {name}")
    parser.add_argument("--threshold", type=float, default=8.5,
                        help="forecast the time to reach this measured pH (default 8.5)")
    parser.add_argument("--t-max", type=float, default=2000.0, help="forecast horizon [s]")
    parser.add_argument("--allow-extrapolation", action="store_true",
                        help="answer (flagged) even when known inputs lie outside the ranges "
                             "the model was trained on")


def known_inputs(args, first_reading):
    known = json.loads(args.known) if args.known else {}
    if not isinstance(known, dict):
        raise EiKerasError("--known must be a JSON object of the known inputs")
    unknown = sorted(set(known) - set(KNOWN_NAMES))
    if unknown:
        raise EiKerasError(f"--known: unrecognised key(s) {', '.join(map(repr, unknown))}; the "
                           f"keys are {', '.join(KNOWN_NAMES)}")
    for name in KNOWN_NAMES:
        if getattr(args, name) is not None:
            known[name] = getattr(args, name)
    notes = []
    if "initial_pH" not in known:
        known["initial_pH"] = float(first_reading)
        notes.append(f"initial_pH not given: using the first reading, {first_reading:.3f}")
    missing = [KNOWN_FLAGS[name] for name in KNOWN_NAMES if name not in known]
    if missing:
        raise EiKerasError(f"known inputs missing: give {', '.join(missing)} or --known JSON")
    return known, notes


def _unit(name):
    return f" {UNITS[name]}" if UNITS.get(name) else ""


def run(args):
    from ei_keras.inference import forecast, infer, load_model
    from ei_keras.inference.posterior import reach_text
    from ei_keras.inference.trace_csv import read_trace_csv

    try:
        t, pH = read_trace_csv(args.csv, minutes=args.minutes, time_column=args.time_column,
                               ph_column=args.ph_column)
        known, notes = known_inputs(args, pH[0])
    except json.JSONDecodeError as error:
        raise EiKerasError(f"--known is not valid JSON ({error})") from None
    model = load_model(args.model or default_model_path())
    sharpen = not args.network_only
    posterior = infer(model, t, pH, known, allow_extrapolation=args.allow_extrapolation,
                      sharpen=sharpen)
    fan = forecast(model, t, pH, known, t_max=args.t_max, threshold=args.threshold,
                   allow_extrapolation=args.allow_extrapolation, sharpen=sharpen)[0]
    domain = posterior["domain"]
    for note in notes + domain["notes"]:
        print(f"note: {note}")
    print(f"{len(t)} readings over {t[-1]:g} s")
    print(f"{'parameter':<22}{'median':>12}{'mean':>12}{'std':>12}{'90% interval':>28}")
    for name in LATENT_NAMES:
        if name not in posterior:
            continue
        summary = posterior[name]
        interval = f"[{summary['lo90'][0]:.4g}, {summary['hi90'][0]:.4g}]{_unit(name)}"
        print(f"{name + (f' [{UNITS[name]}]' if UNITS.get(name) else ''):<22}"
              f"{summary['median'][0]:>12.4g}{summary['mean'][0]:>12.4g}"
              f"{summary['std'][0]:>12.4g}{interval:>28}")
    print(reach_text(fan["time_to_threshold"], args.threshold, args.t_max))
    if domain["ok"]:
        print(f"domain: ok (checked {', '.join(domain['checked'])})")
    else:
        print("domain: FLAGGED — read these before trusting the answer:")
        for flag in domain["flags"]:
            print(f"  - {flag}")
    exact = _print_exact(model, t, pH, known, args) if args.exact else None
    if args.json:
        result = {name: {k: float(v[0]) for k, v in posterior[name].items()}
                  for name in LATENT_NAMES if name in posterior}
        result["units"] = {name: UNITS[name] for name in result}
        result["attention"] = posterior["attention"][0]
        result["domain"] = domain
        result["time_to_threshold"] = {k: v for k, v in fan["time_to_threshold"].items()
                                       if k != "draws"}
        result["forecast"] = {k: fan[k] for k in ("t", "median", "lo", "hi")}
        if exact is not None:
            result["exact"] = exact
        write_json(args.json, result)
        print(f"wrote {args.json}")


def _print_exact(model, t, pH, known, args):
    """``--exact``: network and exact median + 90 % interval side by side, ESS, verdict and
    the exact forecast's time to threshold; returns the JSON-able exact result."""
    from ei_keras.inference.exact_posterior import refine, refined_draws
    from ei_keras.inference.posterior import forecast_from_draws, reach_text

    exact = refine(model, t, pH, known, allow_extrapolation=args.allow_extrapolation)
    print(f"exact posterior (importance sampling, ESS {exact['ess']:.0f} of "
          f"{exact['diagnostics']['n_draws']} draws):")
    print(f"{'parameter':<22}{'network median [90%]':>34}{'exact median [90%]':>34}")
    for name in LATENT_NAMES:
        if name in exact["network"]:
            cells = [f"{s['median']:.4g} [{s['lo90']:.4g}, {s['hi90']:.4g}]"
                     for s in (exact["network"][name], exact[name])]
            print(f"{name + (f' [{UNITS[name]}]' if UNITS.get(name) else ''):<22}"
                  f"{cells[0]:>34}{cells[1]:>34}")
    print(f"verdict: {exact['verdict']} — {exact['reason']}")
    grid = np.linspace(0.0, args.t_max, 1001)
    draws = refined_draws(exact, 200, np.random.default_rng(0))
    reach = forecast_from_draws(known, draws, grid, threshold=args.threshold)["time_to_threshold"]
    print(f"exact {reach_text(reach, args.threshold, args.t_max)}")
    result = {key: value for key, value in exact.items() if key not in ("draws", "weights")}
    result["time_to_threshold"] = {k: v for k, v in reach.items() if k != "draws"}
    return result
