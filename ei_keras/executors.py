"""Where independent jobs run: a local process pool, fresh local processes, or Dask.

Each runner is a context manager yielding the jobs' results in the order they finish:

- :func:`pool_results`: a forked pool for light NumPy jobs (the chunks and shards of
  ``ei-keras generate``); a job's error is raised here.
- :func:`process_results`: every job in a fresh Python process with its own environment
  (trainings: a backend and its threads per process, a crash or ``kill -9`` that ends one
  job and no other).
- :func:`dask_results`: on a Dask scheduler, or on a ``LocalCluster`` started here.

With ``on_error`` the last two hand a failed job to it and yield what it returns, so one
failure does not end the others.
"""

import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import pickle
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ei_keras.errors import EiKerasError

EXECUTORS = ("local", "dask")
# glibc settings of the LocalCluster workers started here. Dask's default
# MALLOC_TRIM_THRESHOLD_=65536 also fixes the mmap threshold at 128 kB, so every chunk
# array is mmapped and faulted in anew: shards took twice the local pool's time, mostly
# system time. Large thresholds keep the arrays on the heap (measured: back to par).
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": 1 << 28, "MALLOC_MMAP_THRESHOLD_": 1 << 28}
# One thread per job process: concurrent jobs share the cores instead of each spinning
# a thread per core (read by the backends when they load, so set before the process starts).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
_CHILD = "import sys; from ei_keras.executors import _child_main; _child_main(sys.argv[1])"


def default_workers():
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def check_executor(executor, scheduler, workers):
    """Validate executor arguments; returns ``workers`` (default :func:`default_workers`).

    Raises:
        EiKerasError: an unknown executor, a scheduler without ``dask``, a bad worker
            count, or ``dask`` without the dask extra installed.
    """
    if executor not in EXECUTORS:
        raise EiKerasError(f"executor: got {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        raise EiKerasError("a scheduler needs the dask executor (--executor dask)")
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise EiKerasError(f"workers: got {workers!r}; allowed: an integer >= 1")
    if executor == "dask":
        import_distributed()  # before any work
    return workers


def import_distributed():
    """The ``distributed`` module; a one-line EiKerasError if the dask extra is missing."""
    try:
        import distributed
    except ImportError:
        raise EiKerasError("the dask executor needs the dask extra: pip install "
                           "'ei_keras[dask]' (or pip install 'distributed>=2024.1')") from None
    return distributed


def _init_pool_worker():
    # The parent handles Ctrl-C and stops the pool; SIGTERM just ends us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def pool_results(jobs, workers, function):
    """Results of ``function(job)`` from ``workers`` forked processes.

    Off the main thread (e.g. a web server's thread) forking is unsafe, so there, as for
    a single worker or job, the jobs run in this process.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    if workers == 1 or len(jobs) == 1 or not in_main_thread:
        yield map(function, jobs)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    # Not multiprocessing.Pool: interrupted while a worker was writing a large result, its
    # terminate() waited forever for the result pipe's lock (a Ctrl-C'd generate hung).
    # The executor's own thread reads results until its workers end; on leaving early, the
    # jobs not started are cancelled and the running ones finish (one chunk each).
    with concurrent.futures.ProcessPoolExecutor(
            min(workers, len(jobs)), mp_context=multiprocessing.get_context(method),
            initializer=_init_pool_worker) as pool:
        waiting = {pool.submit(function, job) for job in jobs}

        def finished():  # a result is held only until it is handed on
            for future in concurrent.futures.as_completed(waiting):
                waiting.discard(future)
                yield future.result()

        try:
            yield finished()
        finally:
            for future in waiting:
                future.cancel()


@contextlib.contextmanager
def process_results(function, jobs, workers, *, environ=None, on_start=None, on_error=None):
    """Results of ``function(job)``, each job in a fresh Python process.

    At most ``workers`` processes run at once; each gets this process's environment
    updated with ``environ``. ``on_start(job)`` is called as a job's process starts.
    Leaving the block early (an error, Ctrl-C) sends SIGTERM to the running processes,
    waits for them, and drops the jobs not started.
    """
    running, lock, closing = set(), threading.Lock(), threading.Event()
    env = {**os.environ, **(environ or {})}

    def run(job):
        if on_start is not None and not closing.is_set():
            on_start(job)
        return _in_fresh_process(function, job, env, running, lock, closing)

    pool = concurrent.futures.ThreadPoolExecutor(max(1, min(workers, len(jobs))))
    futures = {pool.submit(run, job): job for job in jobs}
    try:
        yield _finished(concurrent.futures.as_completed(futures), futures, on_error)
    finally:
        closing.set()
        for future in futures:
            future.cancel()
        with lock:
            for process in running:
                process.terminate()
        pool.shutdown(wait=True)


def _finished(completed, jobs_of, on_error):
    for future in completed:
        try:
            yield future.result()
        except Exception as error:
            if on_error is None:
                raise
            yield on_error(jobs_of[future], error)


def _in_fresh_process(function, job, env, running, lock, closing):
    payload = pickle.dumps((sys.path, pickle.dumps((function, job))))
    with tempfile.TemporaryDirectory(prefix="ei-keras-job-") as scratch:
        outcome_path = Path(scratch) / "outcome.pickle"
        with lock:
            if closing.is_set():
                raise concurrent.futures.CancelledError()
            process = subprocess.Popen([sys.executable, "-c", _CHILD, str(outcome_path)],
                                       stdin=subprocess.PIPE, env=env)
            running.add(process)
        try:
            process.communicate(payload)
        finally:
            with lock:
                running.discard(process)
        if outcome_path.exists():
            succeeded, value = pickle.loads(outcome_path.read_bytes())
            if succeeded:
                return value
            raise value
    code = process.returncode
    how = (f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
           else f"exit status {code}")
    raise EiKerasError(f"its process ended by {how} before finishing")


def _child_main(outcome_path):
    """Run one pickled job from stdin in this fresh process; pickle its outcome."""
    path, payload = pickle.load(sys.stdin.buffer)
    sys.path[:0] = [entry for entry in path if entry not in sys.path]
    try:
        function, job = pickle.loads(payload)
        outcome = (True, function(job))
    except BaseException as error:  # Ctrl-C and SIGTERM too: the parent reports them
        outcome = (False, error)
    try:
        data = pickle.dumps(outcome)
    except Exception:
        error = outcome[1] if not outcome[0] else None
        text = f"{type(error).__name__}: {error}" if error else "an unpicklable result"
        data = pickle.dumps((False, EiKerasError(text)))
    temporary = Path(f"{outcome_path}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, outcome_path)


@contextlib.contextmanager
def dask_results(function, jobs, workers, scheduler, *, name="ei-keras", environ=None,
                 on_error=None):
    """Results of ``function(job)`` on Dask: on ``scheduler`` (an address, or a cluster
    object), or on a LocalCluster of ``workers`` single-threaded worker processes started
    here with ``environ`` (and :data:`WORKER_MALLOC`) in their environment."""
    distributed = import_distributed()
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            import dask

            worker_environ = {**WORKER_MALLOC, **(environ or {})}
            with dask.config.set({f"distributed.nanny.pre-spawn-environ.{key}": value
                                  for key, value in worker_environ.items()}):
                scheduler = stack.enter_context(distributed.LocalCluster(
                    n_workers=min(workers, len(jobs)), threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=logging.ERROR))
        try:
            client = stack.enter_context(distributed.Client(scheduler, set_as_default=False))
        except OSError as error:
            raise EiKerasError(f"cannot reach the Dask scheduler {scheduler}: {error}") from None
        run = secrets.token_hex(4)
        futures = {client.submit(function, job, key=f"{name}-{index:05d}-{run}", pure=False): job
                   for index, job in enumerate(jobs)}
        try:
            yield _finished(distributed.as_completed(list(futures), loop=client.loop),
                            futures, on_error)
        finally:
            client.cancel(list(futures))
