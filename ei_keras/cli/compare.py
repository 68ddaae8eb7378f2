"""``ei-keras compare``: the baseline and improved recipes side by side."""

from ei_keras.cli.train import add_tracking_flags, check_tracking_flags
from ei_keras.executors import EXECUTORS


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "compare", help="train baseline and improved recipes and compare them",
        description="Train both recipes for each prefix length (and the improved one on "
        "adaptive-points data when given), plus pooling and variance-penalty ablations; score "
        "every best model on a held-out test set; write results.json, table.md, compare.html. "
        "The runs train concurrently, each in its own process with one thread; run the same "
        "command again to keep the runs that ended and resume the others.")
    parser.add_argument("--data", required=True, metavar="FILE.h5", help="training dataset")
    parser.add_argument("--test-data", required=True, metavar="TEST.h5",
                        help="held-out dataset (different seed) with the same prefix lengths")
    parser.add_argument("--adaptive-data", metavar="FILE.h5",
                        help="training dataset generated with --adaptive-n-points")
    parser.add_argument("--adaptive-test-data", metavar="TEST.h5",
                        help="held-out adaptive-points dataset (needed with --adaptive-data)")
    parser.add_argument("--prefix-lengths", type=float, nargs="+", default=[10, 30, 60, 300])
    parser.add_argument("--presets", nargs="+", default=["baseline", "improved"],
                        choices=("baseline", "improved"))
    parser.add_argument("--ablation-prefix", type=float, default=30.0,
                        help="prefix length of the pooling / variance-penalty ablations")
    parser.add_argument("--out", default="comparison", metavar="DIR")
    parser.add_argument("--epochs", type=int, help="maximum epochs of every run")
    parser.add_argument("--max-samples", type=int, help="use only the first N samples")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress lines (one as each run starts and ends)")
    scale = parser.add_argument_group("where the runs train")
    scale.add_argument("--workers", type=int, metavar="N",
                       help="runs at once (default: the runs, at most the usable cores; each "
                            "run uses one core); with --executor dask and no --scheduler, "
                            "the local Dask workers")
    scale.add_argument("--executor", choices=EXECUTORS,
                       help="local: a fresh process per run on this machine (default); dask: "
                            "Dask workers")
    scale.add_argument("--scheduler", metavar="ADDRESS",
                       help="Dask scheduler, e.g. tcp://host:8786 (implies --executor dask; "
                            "its workers must see the data and --out)")
    add_tracking_flags(parser)
    parser.set_defaults(func=run)


def run(args):
    from ei_keras.evaluation.compare import compare

    overrides = {key: value for key, value in (("epochs", args.epochs),
                                               ("max_samples", args.max_samples))
                 if value is not None}
    check_tracking_flags(args)
    executor = args.executor or ("dask" if args.scheduler else "local")
    results = compare(args.data, args.out, prefix_lengths=tuple(args.prefix_lengths),
                      presets=tuple(args.presets), test_data=args.test_data,
                      adaptive_data=args.adaptive_data,
                      adaptive_test_data=args.adaptive_test_data,
                      ablation_prefix=args.ablation_prefix, progress=not args.quiet,
                      executor=executor, workers=args.workers, scheduler=args.scheduler,
                      track=args.track, tracking_uri=args.tracking_uri, **overrides)
    from ei_keras.evaluation.compare import results_table
    print(results_table(results))
    print(f"wrote {args.out}/results.json, table.md and compare.html")
    failed = [r["name"] for r in results if r["status"] == "error"]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}; run the same command again "
              "to retry them (the others are kept)")
    return 1 if failed else 0
