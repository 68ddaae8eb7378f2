"""``ei-keras demo``: generate a small demo dataset and print its summary."""

from ei_keras.cli.generate import add_run_arguments, generate_and_describe

DEMO_PATH = "data/demo.h5"
DEMO_SAMPLES = 2000


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="generate a small demo dataset and print its summary",
        description=f"Simulate {DEMO_SAMPLES} cases with the default config into {DEMO_PATH} "
        "(or --out) and print what the file holds.",
    )
    parser.add_argument("--out", metavar="FILE.h5", default=DEMO_PATH,
                        help=f"output HDF5 file (default {DEMO_PATH})")
    parser.add_argument("--n-samples", type=int, default=DEMO_SAMPLES,
                        help=f"number of simulated cases (default {DEMO_SAMPLES})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def run(args):
    generate_and_describe({"n_samples": args.n_samples, "seed": args.seed}, args.out, args)
    return 0
