"""``ei-keras status``: the state of a generate, train or compare job (``ei_keras.jobs``)."""

import time

from ei_keras.errors import EiKerasError
from ei_keras.jobs import read_job


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "status", help="the state of a generate, train or compare job",
        description="Read the state file a job writes as it works (a run directory, a "
        "compare --out, or generate --status FILE): running with its progress, finished, "
        "stopped, failed with its message, or crashed (killed without a word).")
    parser.add_argument("path", metavar="DIR|STATUS.json", help="the job's directory or file")
    parser.set_defaults(func=run)


def describe(job) -> str:
    """One line: kind, state, progress, pid, how long ago it reported; the message."""
    text = f"{job.fields.get('kind', 'job')}: {job.state}"
    if job.total:
        text += f", {job.done:g} of {job.total:g} {job.unit or ''} ({100 * job.fraction:.0f} %)"
    if job.pid:
        text += f", pid {job.pid}"
    if job.updated:
        text += f", updated {time.time() - job.updated:.0f} s ago"
    return text + (f": {job.message}" if job.message else "")


def run(args):
    job = read_job(args.path)
    if job is None:
        raise EiKerasError(f"{args.path}: no job state there (status.json)")
    print(describe(job))
    return 0
