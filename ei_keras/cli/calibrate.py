"""``ei-keras calibrate``: fit a trained model's interval widths on held-out traces."""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "calibrate", help="scale a model's intervals so 90 %% of them hold the truth",
        description="Measure on held-out traces (a dataset with a seed of its own, not the "
        "training or test set) how often the model's 90 % intervals hold the truth, and "
        "write a copy of the model whose standard deviations are scaled, one factor per "
        "parameter, so that they hold it 90 % of the time. Medians do not change.")
    parser.add_argument("--model", required=True, help="the trained .keras model")
    parser.add_argument("--data", required=True, metavar="CALIBRATION.h5",
                        help="held-out dataset from ei-keras generate (at least 500 traces)")
    parser.add_argument("--out", required=True, metavar="MODEL.keras",
                        help="where the calibrated model is written (a new file)")
    parser.set_defaults(func=run)


def run(args):
    from ei_keras.evaluation.calibration import calibrate

    report = calibrate(args.model, args.data, args.out)
    print(f"{report['n']} held-out traces of {report['data']}")
    print(f"{'parameter':<10} {'factor':>7}   coverage 50/90/95 % before → after")
    for name, entry in report["parameters"].items():
        before, after = entry["before"], entry["after"]
        print(f"{name:<10} {entry['std_scale']:>7.3f}   "
              + " ".join(f"{before[f'coverage{level}']:.3f}" for level in (50, 90, 95))
              + "  →  "
              + " ".join(f"{after[f'coverage{level}']:.3f}" for level in (50, 90, 95)))
    print(f"wrote {report['out']}")
