"""``ei-keras infer``: posterior and forecast for a real probe trace (CSV)."""

import json

import numpy as np

from ei_keras.errors import EiKerasError
from ei_keras.inference.default_model import default_model_path
from ei_keras.simulation import KNOWN_NAMES

_KNOWN_FLAGS = {"substrate_mM": "--substrate-mM", "grams_urease_powder": "--grams",
                "volume_L": "--volume-L", "temperature_C": "--temperature-C",
                "initial_pH": "--initial-pH"}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "infer", help="infer kinetics (with uncertainty) from a pH trace CSV",
        description="Posterior of activity, k_d (and nuisance parameters) from the first "
        "seconds of a probe trace, with a forecast of when the pH reaches a threshold.")
    parser.add_argument("--model", help="a .keras model (default: the shipped model)")
    parser.add_argument("--csv", required=True, metavar="TRACE.csv",
                        help="CSV with a header row naming a time and a pH column")
    parser.add_argument("--minutes", action="store_true", help="the time column is in minutes")
    parser.add_argument("--time-column", help="name of the time column (default: detected)")
    parser.add_argument("--ph-column", help="name of the pH column (default: detected)")
    parser.add_argument("--known", metavar="JSON",
                        help="known inputs as JSON, e.g. '{\"substrate_mM\": 30, ...}'")
    for name, flag in _KNOWN_FLAGS.items():
        parser.add_argument(flag, dest=name, type=float, help=f"known input {name}")
    parser.add_argument("--threshold", type=float, default=8.5,
                        help="forecast the time to reach this measured pH (default 8.5)")
    parser.add_argument("--t-max", type=float, default=2000.0, help="forecast horizon [s]")
    parser.add_argument("--json", metavar="OUT.json", help="also write the results as JSON")
    parser.set_defaults(func=run)


def _known_inputs(args, first_reading):
    known = json.loads(args.known) if args.known else {}
    if not isinstance(known, dict):
        raise EiKerasError("--known must be a JSON object of the known inputs")
    for name in KNOWN_NAMES:
        if getattr(args, name) is not None:
            known[name] = getattr(args, name)
    notes = []
    if "initial_pH" not in known:
        known["initial_pH"] = float(first_reading)
        notes.append(f"initial_pH not given: using the first reading, {first_reading:.3f}")
    missing = [_KNOWN_FLAGS[name] for name in KNOWN_NAMES if name not in known]
    if missing:
        raise EiKerasError(f"known inputs missing: give {', '.join(missing)} or --known JSON")
    return known, notes


def run(args):
    from ei_keras.inference import forecast, infer, load_model
    from ei_keras.inference.trace_csv import read_trace_csv

    try:
        t, pH = read_trace_csv(args.csv, minutes=args.minutes, time_column=args.time_column,
                               ph_column=args.ph_column)
        known, notes = _known_inputs(args, pH[0])
    except json.JSONDecodeError as error:
        raise EiKerasError(f"--known is not valid JSON ({error})") from None
    model = load_model(args.model or default_model_path())
    posterior = infer(model, t, pH, known)
    fan = forecast(model, t, pH, known, t_max=args.t_max, threshold=args.threshold)[0]
    for note in notes:
        print(f"note: {note}")
    print(f"{len(t)} readings over {t[-1]:g} s")
    print(f"{'parameter':<12}{'median':>12}{'mean':>12}{'std':>12}{'90% interval':>28}")
    for name, summary in posterior.items():
        if name == "attention":
            continue
        interval = f"[{summary['lo90'][0]:.4g}, {summary['hi90'][0]:.4g}]"
        print(f"{name:<12}{summary['median'][0]:>12.4g}{summary['mean'][0]:>12.4g}"
              f"{summary['std'][0]:>12.4g}{interval:>28}")
    reach = fan["time_to_threshold"]
    if reach["p_reached"] == 0:
        print(f"pH {args.threshold:g} is not reached within {args.t_max:g} s")
    else:
        print(f"time to pH {args.threshold:g}: median {reach['median']:.0f} s, 90% interval "
              f"[{reach['lo']:.0f}, {reach['hi']:.0f}] s (reached in "
              f"{100 * reach['p_reached']:.0f}% of draws within {args.t_max:g} s)")
    if args.json:
        result = {name: {k: float(v[0]) for k, v in summary.items()}
                  for name, summary in posterior.items() if name != "attention"}
        result["attention"] = posterior["attention"][0].tolist()
        result["time_to_threshold"] = {k: v for k, v in reach.items() if k != "draws"}
        result["forecast"] = {k: np.asarray(fan[k]).tolist() for k in ("t", "median", "lo", "hi")}
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2, allow_nan=True)
        print(f"wrote {args.json}")
