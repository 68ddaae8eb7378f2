"""``ei-keras generate``: simulate a training dataset into an HDF5 file."""

import argparse

from ei_keras.config import DatasetConfig, dataset_config, load_dataset_config
from ei_keras.data import describe_dataset, generate_dataset
from ei_keras.data.shards import generate_sharded
from ei_keras.errors import EiKerasError
from ei_keras.executors import EXECUTORS
from ei_keras.jobs import JobState
from ei_keras.settings import (
    add_flags,
    field_named,
    flag_name,
    from_dict,
    given_flags,
    settings_of,
)


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
    formats = parser.add_argument_group(
        "any format", "every sample with its own prefix length L and reading interval dt "
        "(the any_format/ group); the flags below need --any-format")
    add_flags(parser, DatasetConfig, groups={"any_format": formats})
    formats.add_argument("--format-grid", action=argparse.BooleanOptionalAction,
                         help="shorthand for --sampling grid: draw L and dt uniformly from the "
                         "lists given to --prefix-range and --interval-range (a test set by "
                         "format cell)")
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
    parser.add_argument("--status", metavar="STATUS.json",
                        help="write the job's state (progress, error, pid) to this file as "
                        "it works (see ei_keras.jobs)")
    parser.set_defaults(func=run)


def add_run_arguments(parser):
    """The ``--workers`` and ``--no-progress`` flags shared with ``ei-keras demo``."""
    parser.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def generate_and_describe(config, out, args, on_progress=None):
    """Generate ``out`` from ``config`` and print its summary."""
    path = generate_dataset(config, out, workers=args.workers, progress=not args.no_progress,
                            on_progress=on_progress)
    print(describe_dataset(path))


def _flags_config(args):
    """The settings given as flags (``--format-grid`` as the sampling)."""
    given = given_flags(args, DatasetConfig)
    if args.format_grid is not None:
        given.setdefault("any_format", {})["sampling"] = (
            "grid" if args.format_grid else "log-uniform")
    return given


def _check_needs(config, given, flags, cls=DatasetConfig, where=""):
    """A flag whose switch is off means nothing: refuse it, naming the switch.

    ``flags`` maps a setting's name to the flag that gave it where that is not its own.
    """
    for field in settings_of(cls):
        if "section" in field.metadata:
            _check_needs(getattr(config, field.name), given.get(field.name, {}), flags,
                         field.metadata["section"], f"{where}{field.name}.")
        elif field.name in given and field.metadata["needs"]:
            switch = field_named(cls, field.metadata["needs"])
            if getattr(config, switch.name) is not True:
                raise EiKerasError(f"{flags.get(field.name, flag_name(field))} needs "
                                   f"{flag_name(switch)} (or {where}{switch.name} in the config)")


def run(args):
    with JobState(args.status, "generate", unit="samples") as job:
        _generate(args, job)
    return 0


def _generate(args, job):
    base = dataset_config(load_dataset_config(args.config) if args.config else None)
    given = _flags_config(args)
    settings = from_dict(DatasetConfig, given, base=base)
    grid_only = args.format_grid is not None and "sampling" not in vars(args)
    _check_needs(settings, given, {"sampling": "--format-grid"} if grid_only else {})
    config = settings.to_dict()
    if args.shards is None:
        if args.executor is not None or args.scheduler is not None:
            flag = "--executor" if args.executor is not None else "--scheduler"
            raise EiKerasError(f"{flag} needs --shards K (--out is then a directory)")
        generate_and_describe(config, args.out, args, job.progress)
        return
    executor = args.executor or ("dask" if args.scheduler else "local")
    path = generate_sharded(config, args.out, shards=args.shards, executor=executor,
                            scheduler=args.scheduler, workers=args.workers,
                            progress=not args.no_progress, on_progress=job.progress)
    print(describe_dataset(path))
