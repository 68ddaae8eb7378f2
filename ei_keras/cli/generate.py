"""``ei-keras generate``: simulate a training dataset into an HDF5 file."""

import argparse

from ei_keras.config import load_dataset_config, resolve_dataset_config
from ei_keras.data import describe_dataset, generate_dataset
from ei_keras.data.shards import EXECUTORS, generate_sharded
from ei_keras.errors import EiKerasError

# Command-line flag → top-level config key it overrides.
_OVERRIDES = {
    "n_samples": "n_samples",
    "seed": "seed",
    "t_max": "t_max",
    "n_times": "n_times",
    "prefix_lengths": "prefix_lengths",
    "prefix_n_points": "prefix_n_points",
    "adaptive_n_points": "use_adaptive_n_points",
    "target_dt": "target_dt",
    "infer_params": "infer_params",
}
# Command-line flag → key of the ``any_format`` sub-config it overrides.
_ANY_FORMAT_OVERRIDES = {
    "any_format": "enabled",
    "prefix_range": "prefix_length_s",
    "interval_range": "reading_interval_s",
    "timing_jitter": "timing_jitter",
    "drop_fraction": "drop_fraction",
    "max_readings": "max_readings",
}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "generate",
        help="simulate a training dataset (HDF5)",
        description="Simulate pH prefixes and full trajectories over the priors into an "
        "HDF5 file. Flags override the config file; without one, the defaults are used.",
    )
    parser.add_argument("--config", metavar="CONFIG.json", help="dataset config (JSON, partial ok)")
    parser.add_argument("--out", metavar="FILE.h5", required=True,
                        help="output HDF5 file; with --shards an output directory")
    parser.add_argument("--n-samples", type=int, help="number of simulated cases")
    parser.add_argument("--seed", type=int, help="random seed (same seed, same data)")
    parser.add_argument("--t-max", type=float, help="end of the full trajectory [s]")
    parser.add_argument("--n-times", type=int, help="points on the full trajectory")
    parser.add_argument("--prefix-lengths", type=float, nargs="*", metavar="SECONDS",
                        help="prefix lengths [s], e.g. 10 30 60 300; none (the flag alone) "
                        "writes no fixed prefixes, allowed with --any-format")
    parser.add_argument("--prefix-n-points", type=int, help="readings per prefix")
    parser.add_argument("--adaptive-n-points", action=argparse.BooleanOptionalAction,
                        help="more readings on long prefixes (one per --target-dt seconds)")
    parser.add_argument("--target-dt", type=float, help="reading spacing for adaptive prefixes [s]")
    parser.add_argument("--infer-params", nargs="+", metavar="NAME",
                        help="targets: activity k_d [tau_probe] [pH_offset]")
    parser.add_argument("--noise-std", type=float, help="measurement noise σ [pH]")
    formats = parser.add_argument_group(
        "any format", "every sample with its own prefix length L and reading interval dt "
        "(the any_format/ group); the flags below need --any-format")
    formats.add_argument("--any-format", action=argparse.BooleanOptionalAction,
                         help="also write readings in any format")
    formats.add_argument("--prefix-range", type=float, nargs="+", metavar="SECONDS",
                         help="L: LO HI, drawn log-uniformly (default 2 600); with "
                         "--format-grid the lengths to draw from, e.g. 10 30 60 120 300 600")
    formats.add_argument("--interval-range", type=float, nargs="+", metavar="SECONDS",
                         help="dt: LO HI, drawn log-uniformly (default 0.1 10); with "
                         "--format-grid the intervals to draw from, e.g. 0.1 0.3 1 2 5")
    formats.add_argument("--format-grid", action=argparse.BooleanOptionalAction,
                         help="draw L and dt uniformly from the lists given to --prefix-range "
                         "and --interval-range (a test set by format cell)")
    formats.add_argument("--timing-jitter", type=float, metavar="FRACTION",
                         help="σ of the timing error, as a fraction of dt (default 0)")
    formats.add_argument("--drop-fraction", type=float, metavar="P",
                         help="probability of dropping each reading but the first (default 0)")
    formats.add_argument("--max-readings", type=int,
                         help="most readings per sample (default 1201); dt is raised to fit")
    scale = parser.add_argument_group(
        "scaling out", "write --out DIR as shard files, manifest.json and one dataset.h5 "
        "(the same arrays as a single file); a rerun keeps the shards already written")
    scale.add_argument("--shards", type=int, metavar="K",
                       help="number of shard files (at most one per 1000 samples)")
    scale.add_argument("--executor", choices=EXECUTORS,
                       help="who writes the shards: local processes (default) or dask")
    scale.add_argument("--scheduler", metavar="ADDRESS",
                       help="Dask scheduler, e.g. tcp://host:8786 (default: a local "
                       "cluster of --workers processes); its workers must see --out")
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def add_run_arguments(parser):
    """The ``--workers`` and ``--no-progress`` flags shared with ``ei-keras demo``."""
    parser.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def generate_and_describe(config, out, args):
    """Generate ``out`` from ``config`` and print its summary."""
    path = generate_dataset(config, out, workers=args.workers, progress=not args.no_progress)
    print(describe_dataset(path))


def _override_any_format(settings, args):
    """Apply the any-format flags; they mean nothing unless any-format data are written."""
    given = [flag for flag in (*_ANY_FORMAT_OVERRIDES, "format_grid")
             if getattr(args, flag) is not None]
    for flag, key in _ANY_FORMAT_OVERRIDES.items():
        if getattr(args, flag) is not None:
            settings[key] = getattr(args, flag)
    if args.format_grid is not None:
        settings["sampling"] = "grid" if args.format_grid else "log-uniform"
    unused = [flag for flag in given if flag != "any_format"]
    if unused and settings["enabled"] is not True:
        flag = "--" + unused[0].replace("_", "-")
        raise EiKerasError(f"{flag} needs --any-format (or any_format.enabled in the config)")


def run(args):
    config = load_dataset_config(args.config) if args.config else resolve_dataset_config()
    for flag, key in _OVERRIDES.items():
        if getattr(args, flag) is not None:
            config[key] = getattr(args, flag)
    if args.noise_std is not None:
        config["measurement_model"]["noise_std"] = args.noise_std
    _override_any_format(config["any_format"], args)
    if args.shards is None:
        if args.executor is not None or args.scheduler is not None:
            flag = "--executor" if args.executor is not None else "--scheduler"
            raise EiKerasError(f"{flag} needs --shards K (--out is then a directory)")
        generate_and_describe(config, args.out, args)
        return 0
    executor = args.executor or ("dask" if args.scheduler else "local")
    path = generate_sharded(config, args.out, shards=args.shards, executor=executor,
                            scheduler=args.scheduler, workers=args.workers,
                            progress=not args.no_progress)
    print(describe_dataset(path))
    return 0
