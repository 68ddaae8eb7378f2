"""Files with one writer: exclusive locks, atomic writes, readable errors.

* :func:`exclusive_lock` holds an ``fcntl.flock`` on a lock file for as long as a job
  writes somewhere (a run directory, a dataset file). A second writer is refused at once
  with the holder's pid. The operating system releases the lock when the holder dies,
  however it dies (SIGKILL, power loss), so a stale lock file never blocks anyone.
* :func:`write_text` / :func:`write_json` write aside under a unique temporary name (pid
  and random) and rename onto the target, so a reader or a crash sees the old file or the
  new one, never half of one, and two writers never share a temporary file.
* :func:`read_json` and :func:`make_dirs` fail with one line naming the file.
"""

import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

from ei_keras.errors import EiKerasError
from ei_keras.jsonutil import dumps_strict

try:
    import fcntl
except ImportError:  # not POSIX: no locking (single-user Windows use)
    fcntl = None

# Lock descriptors held by this process. A forked child (a generation worker) closes its
# copies: flock belongs to the open file, so the lock stays with the parent alone and
# is released when the parent dies, even if orphaned children linger.
_HELD = set()


def _close_inherited_locks():
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def temporary_name(path) -> Path:
    """A unique sibling of ``path`` to write before renaming: ``.NAME.tmp<pid>-<random>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}")


def sync(*paths):
    """Flush files (or directories: their entries, i.e. renames) to disk."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:  # a file system that cannot sync a directory
            pass
        finally:
            os.close(fd)


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (aside, flushed to disk, renamed, the rename
    flushed too), so that after a crash or power loss it holds the old text or the new."""
    path = Path(path)
    temporary = temporary_name(path)
    try:
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync(path.parent)


def write_json(path, payload, indent=2):
    """Write ``payload`` as strict JSON (non-finite floats as null) atomically."""
    write_text(path, dumps_strict(payload, indent=indent) + "\n")


def read_json(path, what="file", fix="delete it or restore it from a backup"):
    """The JSON in ``path``; a one-line EiKerasError naming it if missing or corrupt."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EiKerasError(f"{path}: {what} is missing; {fix}") from None
    except OSError as error:
        raise EiKerasError(f"{path}: cannot read {what} ({error.strerror})") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise EiKerasError(f"{path}: {what} is not valid JSON ({error}); {fix}") from None


def make_dirs(directory):
    """Create ``directory`` and its parents; one line if a file is in the way."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [directory, *directory.parents] if p.exists()
                        and not p.is_dir()), directory)
        raise EiKerasError(f"cannot create directory {directory}: {blocker} is a file, "
                           f"not a directory; choose another path") from None
    except PermissionError:
        raise EiKerasError(f"cannot create directory {directory}: permission denied") from None
    return directory


def _holder(fd):
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def exclusive_lock(path, what, fix="wait for it to finish or stop it"):
    """Hold an exclusive lock on ``path`` (created; removed on release) for the block.

    Args:
        path: the lock file, e.g. ``RUN_DIR/.lock`` or ``OUT.h5.lock``.
        what: what the lock guards, for the message, e.g. ``"run directory runs/r30"``.
        fix: what the refused user should do.

    Raises:
        EiKerasError: another process holds the lock (the message names its pid).
    """
    if fcntl is None:
        yield
        return
    path = Path(path)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = _holder(fd)
            for _ in range(10):  # the holder writes its pid just after locking
                if pid:
                    break
                time.sleep(0.05)
                pid = _holder(fd)
            os.close(fd)
            by = f"pid {pid}" if pid else "another process"
            raise EiKerasError(f"{what} is in use by {by}; {fix}") from None
        # The previous holder may have removed the file between our open and our lock:
        # then we hold a lock on a file nobody else can find. Start over.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    _HELD.add(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        # Remove the file while still holding it, so a newcomer either fails to lock
        # the old file or sees it is gone and creates a new one.
        with contextlib.suppress(OSError):
            os.unlink(path)
        _HELD.discard(fd)
        os.close(fd)


def warn(message):
    """One ``warning:`` line on stderr (not a Python warning with its source line)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


# Signals received inside interrupt_on_signals(), kept until the block ends: their
# KeyboardInterrupt is lost when it is raised inside a finalizer or weakref callback
# (Python only prints it there).
_RECEIVED = []


@contextlib.contextmanager
def interrupt_on_signals():
    """Ctrl-C (SIGINT) and ``kill`` (SIGTERM) raise KeyboardInterrupt in the block (main
    thread only), so a job stopped either way cleans up and records its state. Long loops
    call :func:`check_interrupted` between steps, so a signal whose KeyboardInterrupt was
    lost still stops them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        _RECEIVED.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    unraisable_hook = sys.unraisablehook

    def quiet_when_lost(unraisable):
        # A KeyboardInterrupt raised inside e.g. a weakref callback is lost, and Python
        # prints its traceback; check_interrupted() raises it again, so say nothing here.
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and _RECEIVED):
            unraisable_hook(unraisable)

    previous = {signum: signal.signal(signum, interrupt)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    sys.unraisablehook = quiet_when_lost
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = unraisable_hook
        _RECEIVED.clear()


def check_interrupted():
    """Raise KeyboardInterrupt again for a signal received in :func:`interrupt_on_signals`
    whose own KeyboardInterrupt was lost."""
    if _RECEIVED:
        raise KeyboardInterrupt(f"signal {_RECEIVED[-1]}")
