"""Simulated training data written to HDF5: parallel, chunked, deterministic, atomic."""

import contextlib
import json
import multiprocessing
import os
import secrets
import signal
import threading
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from ei_keras.config import resolve_dataset_config
from ei_keras.errors import EiKerasError
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES
from ei_keras.simulation.measurement import (
    add_offset_and_noise,
    get_adaptive_prefix_n_points,
    prefix_times,
    probe_response,
)
from ei_keras.simulation.priors import sample_priors, simulator_conditions

FORMAT_VERSION = 1
TRAJECTORY_GROUP = "trajectory"
# Cases per chunk. Each chunk draws from its own child of SeedSequence(seed), so the data
# depend on the seed and this size only, never on the number of workers.
_CHUNK_SIZE = 1000


def prefix_group_name(prefix_length):
    """HDF5 group name of a prefix length: 30 → ``prefix_30s``, 2.5 → ``prefix_2.5s``."""
    length = float(prefix_length)
    return f"prefix_{int(length)}s" if length.is_integer() else f"prefix_{length!r}s"


def reading_grids(config):
    """Reading times per HDF5 group: each prefix group, then the trajectory.

    Parameters
    ----------
    config : mapping
        A resolved dataset config.

    Returns
    -------
    dict of str to ndarray
        ``prefix_<L>s`` → evenly spaced times on [0, L]; ``trajectory`` → the
        ``t_max``/``n_times`` grid.
    """
    grids = {}
    for length in config["prefix_lengths"]:
        n_points = config["prefix_n_points"]
        if config["use_adaptive_n_points"]:
            n_points = get_adaptive_prefix_n_points(length, n_points, config["target_dt"])
        grids[prefix_group_name(length)] = prefix_times(length, n_points)
    grids[TRAJECTORY_GROUP] = np.linspace(0.0, config["t_max"], config["n_times"])
    return grids


def _simulate_chunk(task):
    """Arrays for one chunk of cases, keyed by HDF5 dataset path."""
    config, start, stop, seed_sequence = task
    rng = np.random.default_rng(seed_sequence)
    model = config["measurement_model"]
    samples = sample_priors(
        rng, stop - start, config["param_ranges"],
        use_probe_lag=model["use_probe_lag"], use_offset=model["use_offset"],
    )
    grids = reading_grids(config)
    times, inverse = np.unique(np.concatenate(list(grids.values())), return_inverse=True)
    true_pH, lagged_pH = probe_response(
        simulator_conditions(samples), times, tau_probe=samples["tau_probe"]
    )
    measured_pH = add_offset_and_noise(
        lagged_pH[:, inverse], pH_offset=samples["pH_offset"], noise_std=model["noise_std"],
        rng=rng, add_noise=model["add_noise"],
    )
    true_pH = true_pH[:, inverse]
    arrays = {
        "known": np.stack([samples[name] for name in KNOWN_NAMES], axis=1),
        "latent": np.stack([samples[name] for name in LATENT_NAMES], axis=1),
        "targets": np.stack([samples[name] for name in config["infer_params"]], axis=1),
    }
    offset = 0
    for group, grid in grids.items():
        columns = slice(offset, offset + len(grid))
        offset += len(grid)
        if group == TRAJECTORY_GROUP:
            arrays[f"{group}/pH_true"] = true_pH[:, columns].astype(np.float32)
            arrays[f"{group}/pH_measured"] = measured_pH[:, columns].astype(np.float32)
        else:
            arrays[f"{group}/pH"] = measured_pH[:, columns].astype(np.float32)
    return start, arrays


def _create_layout(handle, config):
    """Root attributes and empty datasets for ``config`` in an open HDF5 file."""
    n = config["n_samples"]
    handle.attrs["format_version"] = FORMAT_VERSION
    handle.attrs["config"] = json.dumps(config)
    for name, names in (("known", KNOWN_NAMES), ("latent", LATENT_NAMES),
                        ("targets", config["infer_params"])):
        handle.create_dataset(name, (n, len(names)), dtype=np.float64).attrs["names"] = list(names)
    for group_name, grid in reading_grids(config).items():
        group = handle.create_group(group_name)
        group.create_dataset("t", data=grid)
        if group_name == TRAJECTORY_GROUP:
            group.create_dataset("pH_true", (n, len(grid)), dtype=np.float32)
            group.create_dataset("pH_measured", (n, len(grid)), dtype=np.float32)
        else:
            group.attrs["prefix_length"] = grid[-1]
            group.attrs["n_points"] = len(grid)
            group.create_dataset("pH", (n, len(grid)), dtype=np.float32)


def _chunk_tasks(config):
    n = config["n_samples"]
    starts = range(0, n, _CHUNK_SIZE)
    seeds = np.random.SeedSequence(config["seed"]).spawn(len(starts))
    return [(config, start, min(start + _CHUNK_SIZE, n), seed)
            for start, seed in zip(starts, seeds)]


def _init_worker():
    # The parent handles Ctrl-C and stops the pool; SIGTERM from the pool just ends us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _chunk_results(tasks, workers):
    """Iterator over chunk results, computed in ``workers`` forked processes.

    Off the main thread (e.g. a web server's thread) forking is unsafe, so there, as for a
    single worker or chunk, the chunks run in this process.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    if workers == 1 or len(tasks) == 1 or not in_main_thread:
        yield map(_simulate_chunk, tasks)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with context.Pool(min(workers, len(tasks)), initializer=_init_worker) as pool:
        yield pool.imap_unordered(_simulate_chunk, tasks)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt (main thread only) so clean-up code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _default_workers():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def generate_dataset(config, path, *, workers=None, progress=True):
    """Simulate a dataset and write it to an HDF5 file.

    The file is written next to ``path`` under a temporary name and renamed onto ``path``
    only when complete, so an interrupted or failed run leaves no partial file (and an
    existing file at ``path`` untouched).

    Parameters
    ----------
    config : mapping or None
        A (partial) dataset config, merged over the defaults; see
        :func:`ei_keras.config.resolve_dataset_config`.
    path : str or os.PathLike
        Output file; parent directories are created.
    workers : int, optional
        Worker processes (default: the usable CPU cores), used when called from the main
        thread. The arrays do not depend on it.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    EiKerasError
        For an invalid config or ``workers``.
    """
    config = resolve_dataset_config(config)
    if workers is None:
        workers = _default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise EiKerasError(f"workers: got {workers!r}; allowed: an integer >= 1")
    path = Path(path)
    if path.is_dir():
        raise EiKerasError(f"output path {path} is a directory; give a file name such as data.h5")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp{secrets.token_hex(4)}")
    tasks = _chunk_tasks(config)
    try:
        with _sigterm_as_interrupt(), h5py.File(temporary, "w-") as handle:
            _create_layout(handle, config)
            with _chunk_results(tasks, workers) as results, tqdm(
                total=config["n_samples"], unit="sample", desc="generate", disable=not progress
            ) as bar:
                for start, arrays in results:
                    for name, values in arrays.items():
                        handle[name][start:start + len(values)] = values
                    bar.update(len(values))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
