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
    parser.add_argument("--n-forecast", type=int, default=100, help="traces to forecast")
    parser.add_argument("--n-baseline", type=int, default=50,
                        help="traces also fitted by least squares")
    parser.add_argument("--threshold", type=float, default=8.5, help="threshold pH")
    parser.add_argument("--seed", type=int, default=0, help="seed of the posterior draws")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args):
    from ei_keras.evaluation.evaluate import evaluate
    from ei_keras.inference.default_model import default_model_path

    metrics = evaluate(args.model or default_model_path(), args.data, args.out,
                       n_forecast=args.n_forecast, n_baseline=args.n_baseline,
                       threshold=args.threshold, seed=args.seed, progress=not args.no_progress)
    for name, entry in metrics["parameters"].items():
        model, lsq = entry["model_subset"], entry["least_squares_subset"]
        print(f"{name:<10} model: MAE {entry['model']['mae']:.4g} R² {entry['model']['r2']:.3f} "
              f"cov90 {entry['model']['coverage90']:.2f} | same {metrics['n_baseline']} traces: "
              f"model MAE {model['mae']:.4g} vs least squares {lsq['mae']:.4g}")
    forecast = metrics["forecast"]["model"]
    print(f"forecast RMSE {forecast['rmse']:.4f} pH; per trace: model "
          f"{metrics['seconds_per_trace']['model'] * 1e3:.1f} ms, least squares "
          f"{metrics['seconds_per_trace']['least_squares'] * 1e3:.0f} ms")
    print(f"wrote {args.out}/metrics.json and {args.out}/report.html")
