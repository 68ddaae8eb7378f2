"""``ei-keras evaluate``: held-out metrics, least-squares baseline, HTML report."""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate", help="score a model on a held-out dataset against least squares",
        description="Per-parameter accuracy and calibration, forecasts and the least-squares "
        "baseline on a test set (generate it with a different --seed than the training set). "
        "Writes metrics.json and report.html.")
    parser.add_argument("--model", help="a .keras model (default: the shipped model)")
    parser.add_argument("--data", required=True, metavar="TEST.h5", help="held-out dataset")
    parser.add_argument("--out", default="evaluation", metavar="DIR",
                        help="output folder (default: ./evaluation)")
    parser.add_argument("--prefix-length", type=float, metavar="SECONDS",
                        help="score on this fixed prefix group of the file (default: the "
                             "any-format traces for an any-format model, else the model's "
                             "trained prefix)")
    parser.add_argument("--n-forecast", type=int, default=100,
                        help="traces to forecast (spread over the format cells of an "
                             "any-format test set)")
    parser.add_argument("--n-baseline", type=int, default=50,
                        help="traces also fitted by least squares")
    parser.add_argument("--threshold", type=float, default=8.5, help="threshold pH")
    parser.add_argument("--seed", type=int, default=0, help="seed of the posterior draws")
    parser.add_argument("--exact", type=int, default=0, metavar="N",
                        help="also compare the network's posterior with the exact one "
                             "(importance sampling, about a second per trace) on the first N "
                             "test traces; added to metrics.json under 'exact'")
    parser.add_argument("--allow-extrapolation", action="store_true",
                        help="also score (flagged) the test traces whose known inputs lie "
                             "outside the ranges the model was trained on; by default they are "
                             "left out, as ei-keras infer refuses them. metrics.json counts "
                             "them under 'domain'; with the flag each parameter's "
                             "'model_within_ranges' scores the others alone")
    parser.add_argument("--network-only", action="store_true",
                        help="score the network's answers as they are, without the local fit "
                             "that sharpens them where the readings pin a parameter down "
                             "(as ei_keras.infer(..., sharpen=False))")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args):
    from ei_keras.evaluation.evaluate import evaluate
    from ei_keras.inference.domain import READINGS_SLACK
    from ei_keras.inference.default_model import default_model_path

    metrics = evaluate(args.model or default_model_path(), args.data, args.out,
                       n_forecast=args.n_forecast, n_baseline=args.n_baseline,
                       threshold=args.threshold, seed=args.seed, progress=not args.no_progress,
                       prefix_length=args.prefix_length,
                       allow_extrapolation=args.allow_extrapolation,
                       sharpen=not args.network_only)
    domain = metrics["domain"]
    if domain["n_left_out"]:
        print(f"left out {domain['n_left_out']} traces with known inputs outside the ranges "
              f"the model was trained on (e.g. {domain['example']}); --allow-extrapolation "
              f"scores them, flagged")
    if domain.get("n_thinned"):
        print(f"{domain['n_thinned']} traces with more than {READINGS_SLACK:g}× the readings the "
              f"model was trained on were scored as infer answers them: one reading in k")
    if domain["n_extrapolated"]:
        print(f"{domain['n_extrapolated']} of {metrics['n_test']} answers are extrapolations "
              f"(known inputs outside the trained ranges, e.g. {domain['example']}); "
              f"'model_within_ranges' in metrics.json scores the others alone")
    for name, entry in metrics["parameters"].items():
        model, lsq = entry["model_subset"], entry["least_squares_subset"]
        baseline = (f" | same {metrics['n_baseline']} traces: model MAE {model['mae']:.4g} vs "
                    f"least squares {lsq['mae']:.4g}" if metrics["n_baseline"] else "")
        print(f"{name:<10} model: MAE {entry['model']['mae']:.4g} R² {entry['model']['r2']:.3f} "
              f"cov90 {entry['model']['coverage90']:.2f}{baseline}")
    forecast = metrics["forecast"]["model"]
    baseline = (f", least squares {metrics['seconds_per_trace']['least_squares'] * 1e3:.0f} ms"
                if metrics["n_baseline"] else "")
    print(f"forecast RMSE {forecast['rmse']:.4f} pH; per trace: model "
          f"{metrics['seconds_per_trace']['model'] * 1e3:.1f} ms{baseline}")
    for cell in metrics.get("by_format", []):
        coverage = " ".join(f"{name} {scores['coverage90']:.2f}"
                            for name, scores in cell["parameters"].items())
        forecast_rmse = cell["forecast_rmse"]
        cell_name = f"{cell['prefix_length_s']:g} s every {cell['reading_interval_s']:g} s"
        print(f"{cell_name:<18} (n={cell['n']:>4}): cov90 {coverage}; log10 activity RMSE "
              f"{cell['parameters']['activity']['rmse']:.3f}; forecast RMSE "
              + (f"{forecast_rmse:.3f}" if forecast_rmse is not None else "–"))
    agreement = metrics.get("attention_information", {}).get("median_spearman")
    if agreement:
        print("attention vs per-reading information, median Spearman: " + ", ".join(
            f"{name} {rho:.2f}" for name, rho in agreement.items()))
    if args.exact > 0:
        _exact(args, metrics)
    print(f"wrote {args.out}/metrics.json and {args.out}/report.html")


def _exact(args, metrics):
    """``--exact N``: network vs exact posterior on N traces, into metrics.json."""
    from pathlib import Path

    from ei_keras.evaluation.exact import exact_check
    from ei_keras.fileio import write_json

    exact = exact_check(metrics["model"], args.data, args.exact,
                        prefix_length=args.prefix_length, seed=args.seed,
                        threshold=args.threshold, allow_extrapolation=args.allow_extrapolation,
                        progress=not args.no_progress)
    metrics["exact"] = exact
    write_json(Path(args.out) / "metrics.json", metrics)
    print(f"exact posterior on {exact['n']} traces ({exact['n_reliable']} reliable, median ESS "
          f"{exact['ess']['median']:.0f}, {exact['seconds_per_trace']:.2f} s per trace); "
          f"verdicts " + ", ".join(f"{k} {v}" for k, v in exact["verdicts"].items() if v))
    for name, entry in exact["parameters"].items():
        if entry["std_ratio"]["median"] is None:
            continue
        print(f"{name:<10} network/exact σ: median {entry['std_ratio']['median']:.2f}, p90 "
              f"{entry['std_ratio']['p90']:.2f}; median offset "
              f"{entry['offset_sigma']['median']:.2f} exact σ; cov90 network "
              f"{entry['coverage90']['network']:.2f} exact {entry['coverage90']['exact']:.2f}")
    if "forecast_rmse" in exact:
        print(f"forecast RMSE: network {exact['forecast_rmse']['network']:.4f}, exact "
              f"{exact['forecast_rmse']['exact']:.4f} pH")
