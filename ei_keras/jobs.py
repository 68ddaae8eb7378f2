"""One job protocol: a long job writes its state to one small JSON file; anyone reads it.

Generation (``ei-keras generate --status FILE``), training (``RUN_DIR/status.json``) and
the recipe comparison (``OUT/status.json``) write, atomically, as they work::

    {"kind": "generate", "state": "running", "done": 3000, "total": 10000,
     "unit": "samples", "message": null, "pid": 4242, "host": "lab-1",
     "started": 1700000000.0, "updated": 1700000042.5, ...the job's own fields}

``state`` is ``running`` while the job works, then one of :data:`ENDED`; on failure
``message`` is the job's own one-line error. :func:`read_job` reads the file and adds
``crashed``: a job still "running" whose process is gone (killed hard: SIGKILL, out of
memory, power loss) could not write its end.
"""

import dataclasses
import json
import os
import socket
import time
from pathlib import Path

from ei_keras.errors import EiKerasError
from ei_keras.fileio import make_dirs, write_json

STATE_FILE = "status.json"
RUNNING, FINISHED, STOPPED, FAILED, CRASHED = "running", "finished", "stopped", "failed", "crashed"
# A job's last written state → what it means to a reader.
ENDED = {"finished": FINISHED, "early_stopped": FINISHED, "stopped": STOPPED,
         "interrupted": STOPPED, "failed": FAILED}


def one_line(error) -> str:
    """The one-line message of an exception: an EiKerasError's text, else its type and
    first line."""
    first = (str(error).splitlines() or [""])[0]
    if isinstance(error, EiKerasError):
        return first
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


class JobState:
    """Writes a job's state file (see the module) as the job works.

    Use it as a context manager (``running`` on entry; ``finished``, ``interrupted`` or
    ``failed`` with the exception's one line on exit), or call :meth:`start`,
    :meth:`update` and :meth:`end`. ``path`` None writes nothing (a plain CLI call).
    Before :meth:`start`, :meth:`end` writes nothing either: a job refused before it
    began leaves the file of whoever wrote it before, unless the job calls
    :meth:`refuse` where the file is its own to write.
    """

    def __init__(self, path, kind, *, unit=None, total=None):
        self.path = None if path is None else Path(path)
        self.fields = {"kind": kind, "state": RUNNING, "done": 0, "total": total, "unit": unit,
                       "message": None, "pid": os.getpid(), "host": socket.gethostname(),
                       "started": None, "updated": None}

    @property
    def started(self) -> bool:
        return self.fields["started"] is not None

    def start(self, **fields):
        """Write the first state (the file's folder created)."""
        if self.path is not None:
            make_dirs(self.path.parent)
        self.fields["started"] = time.time()
        self.update(**fields)

    def update(self, **fields):
        """Merge ``fields`` (any of the protocol's or the job's own) and write the file."""
        self.fields.update(fields)
        self.fields["updated"] = time.time()
        if self.path is not None:
            write_json(self.path, self.fields)

    def progress(self, done, total=None):
        """``done`` of ``total`` units (a generator's progress callback)."""
        self.update(done=done, **({} if total is None else {"total": total}))

    def refuse(self, error, **fields):
        """Write the one state of a job refused before it began (a bad setting, a missing
        input): ``failed`` with ``error``'s one line, so that a reader sees why."""
        self.start(**dict(fields, state=FAILED, message=one_line(error)))

    def end(self, state=FINISHED, message=None, **fields):
        if state not in ENDED:
            raise ValueError(f"state: got {state!r}; allowed: {', '.join(ENDED)}")
        if self.started:
            self.update(state=state, message=message, **fields)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, kind, error, traceback):
        if error is None:
            if self.fields["state"] == RUNNING:
                self.end(FINISHED)
        elif isinstance(error, KeyboardInterrupt):
            self.end("interrupted", "interrupted (Ctrl-C or SIGTERM)")
        else:
            self.end(FAILED, one_line(error))
        return False


@dataclasses.dataclass(frozen=True)
class Job:
    """What :func:`read_job` found. ``state``: running, finished, stopped, failed or
    crashed; ``written``: the state as the job wrote it (e.g. ``early_stopped``);
    ``fields``: the whole file (the job's own fields too)."""

    state: str
    written: str | None
    done: float
    total: float | None
    unit: str | None
    message: str | None
    pid: int | None
    started: float | None
    updated: float | None
    fields: dict

    @property
    def fraction(self) -> float:
        """``done / total`` in [0, 1] (0 while the total is unknown)."""
        return min(1.0, self.done / self.total) if self.total else 0.0


def process_alive(pid) -> bool:
    """Whether a process ``pid`` exists on this machine (``os.kill(pid, 0)``)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    except (OSError, TypeError, ValueError, OverflowError):
        return False
    return True


def read_job(path, *, pid=None) -> Job | None:
    """The state of the job writing ``path`` (a state file, or a directory holding
    :data:`STATE_FILE`).

    ``pid``: the process the caller launched, for the time before the job wrote its
    first state (then ``running`` while it lives, ``crashed`` once it is gone). Without
    a file or a ``pid``: None.
    """
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        fields = None
    if not isinstance(fields, dict):
        if pid is None:
            return None
        alive = process_alive(pid)
        return Job(RUNNING if alive else CRASHED, None, 0, None, None,
                   None if alive else "the process ended before it reported any state",
                   int(pid), None, None, {})
    written = fields.get("state")
    state = ENDED.get(written, RUNNING)
    message = fields.get("message")
    job_pid = fields.get("pid") or pid
    on_this_host = fields.get("host") in (None, socket.gethostname())
    if state == RUNNING and job_pid and on_this_host and not process_alive(job_pid):
        state = CRASHED
        message = (f"the process (pid {job_pid}) ended without reporting how: it was killed "
                   "(out of memory, or ended from outside)")
    return Job(state, written, fields.get("done") or 0, fields.get("total"),
               fields.get("unit"), message, job_pid, fields.get("started"),
               fields.get("updated"), fields)
