"""``ei-keras`` command line: one sub-command per module in this package.

Each sub-command module defines ``add_parser(subparsers)`` (which sets ``func``) and is
imported only when listed in ``SUBCOMMANDS``. Bad input ends with a one-line error and
exit status 2, never a traceback.
"""

import argparse
import importlib
import sys

from ei_keras.errors import EiKerasError

SUBCOMMANDS = ["generate", "demo", "infer", "evaluate", "calibrate", "compare", "train",
               "watch", "status"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ei-keras",
        description="Early inference of urease kinetics from pH traces.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"ei_keras.cli.{name}").add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (EiKerasError, ValueError, FileNotFoundError, OSError) as error:
        print(f"ei-keras {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ei-keras {args.command}: interrupted; nothing was left half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
