"""Simulated training data written to HDF5: parallel, chunked, deterministic, atomic."""

import glob
import json
import os
import secrets
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from ei_keras.config import resolve_dataset_config
from ei_keras.data.sizes import check_dataset_fits
from ei_keras.errors import EiKerasError
from ei_keras.executors import default_workers, pool_results
from ei_keras.fileio import (
    check_interrupted,
    exclusive_lock,
    interrupt_on_signals,
    make_dirs,
    warn,
)
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
ANY_FORMAT_GROUP = "any_format"
# Largest timing jitter, as a fraction of the reading interval: below one half, so that
# jittered times stay strictly increasing (at least 2 % of an interval apart).
MAX_JITTER = 0.49
# Reading k counts as at or before L when k <= L / dt + 1e-9: 30 s at 0.1 s has 301.
_LENGTH_TOLERANCE = 1e-9
# Values per HDF5 chunk of the any-format arrays at most: 1 MiB of float32, HDF5's
# default chunk cache.
_ANY_FORMAT_CHUNK_VALUES = 2**18
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


def _log_uniform(rng, bounds, n):
    low, high = np.log(bounds[0]), np.log(bounds[1])
    return np.exp(rng.uniform(low, high, size=n))


def sample_any_format_times(rng, n, settings):
    """Reading times of ``n`` any-format samples, each with its own L and dt.

    Each sample draws a prefix length L and a reading interval dt (log-uniformly within
    ``prefix_length_s`` / ``reading_interval_s``, or uniformly from their lists with
    ``sampling="grid"``) and reads at t = 0, dt, 2 dt, … <= L. With fewer than
    ``min_readings`` or more than ``max_readings`` readings, dt is raised or lowered to
    L / (readings − 1) with that many readings. ``timing_jitter`` adds N(0, jitter·dt) to
    every time but t = 0, clipped to ±``MAX_JITTER``·dt so that times stay strictly
    increasing, and the last time is capped at L; ``drop_fraction`` then drops each
    reading but the first with that probability, keeping at least ``min_readings``
    (those with the largest draws). L and every time are rounded to float32, the type
    stored, so the stored times are exactly those simulated and never exceed L.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the draws.
    n : int
        Number of samples.
    settings : mapping
        The resolved ``any_format`` sub-config.

    Returns
    -------
    dict of str to ndarray
        ``t`` (n, max_readings) float64 seconds, NaN after each sample's last reading;
        ``length`` (n,) readings per sample; ``prefix_length`` (n,) L and
        ``reading_interval`` (n,) the effective nominal dt [s].
    """
    width, fewest = settings["max_readings"], settings["min_readings"]
    if settings["sampling"] == "grid":
        length = rng.choice(np.asarray(settings["prefix_length_s"], dtype=float), size=n)
        interval = rng.choice(np.asarray(settings["reading_interval_s"], dtype=float), size=n)
    else:
        length = _log_uniform(rng, settings["prefix_length_s"], n)
        interval = _log_uniform(rng, settings["reading_interval_s"], n)
    length = length.astype(np.float32).astype(np.float64)
    count = np.floor(length / interval + _LENGTH_TOLERANCE) + 1
    interval = np.where(count < fewest, length / (fewest - 1), interval)
    interval = np.where(count > width, length / (width - 1), interval)
    count = np.clip(count, fewest, width).astype(np.int64)
    step = np.arange(width)
    t = np.minimum(step * interval[:, None], length[:, None])
    if settings["timing_jitter"] > 0:
        jitter = rng.normal(0.0, settings["timing_jitter"], size=(n, width))
        np.clip(jitter, -MAX_JITTER, MAX_JITTER, out=jitter)
        jitter[:, 0] = 0.0
        t = np.minimum(t + jitter * interval[:, None], length[:, None])
    kept = step < count[:, None]
    if settings["drop_fraction"] > 0:
        draw = rng.uniform(size=(n, width))
        candidates = kept.copy()
        kept &= draw >= settings["drop_fraction"]
        kept[:, 0] = True
        short = np.flatnonzero(kept.sum(axis=1) < fewest)
        if short.size:  # keep the first and the fewest - 1 readings with the largest draws
            score = np.where(candidates[short], draw[short], -1.0)
            score[:, 0] = 2.0
            best = np.argsort(-score, axis=1, kind="stable")[:, :fewest]
            kept[short] = False
            kept[short[:, None], best] = True
    rows, columns = np.nonzero(kept)
    position = np.cumsum(kept, axis=1) - 1
    times = np.full((n, width), np.nan)
    times[rows, position[rows, columns]] = t[rows, columns].astype(np.float32)
    return {"t": times, "length": kept.sum(axis=1), "prefix_length": length,
            "reading_interval": interval}


def _any_format_arrays(config, samples, seed_sequence):
    """The any_format/ arrays of one chunk's cases. Formats and noise come from a child
    of the chunk's seed, so the other groups are the same with or without them."""
    child = np.random.SeedSequence(seed_sequence.entropy, spawn_key=(*seed_sequence.spawn_key, 0),
                                   pool_size=seed_sequence.pool_size)
    rng = np.random.default_rng(child)
    model = config["measurement_model"]
    formats = sample_any_format_times(rng, len(samples["activity"]), config["any_format"])
    _, lagged_pH = probe_response(
        simulator_conditions(samples), formats["t"], tau_probe=samples["tau_probe"]
    )
    measured_pH = add_offset_and_noise(
        lagged_pH, pH_offset=samples["pH_offset"], noise_std=model["noise_std"],
        rng=rng, add_noise=model["add_noise"],
    )
    group = ANY_FORMAT_GROUP
    return {
        f"{group}/t": formats["t"].astype(np.float32),
        f"{group}/pH": measured_pH.astype(np.float32),
        f"{group}/length": formats["length"].astype(np.int32),
        f"{group}/prefix_length": formats["prefix_length"],
        f"{group}/reading_interval": formats["reading_interval"],
    }


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
    if config["any_format"]["enabled"]:
        arrays.update(_any_format_arrays(config, samples, seed_sequence))
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
    if config["any_format"]["enabled"]:
        _create_any_format_layout(handle, config)


def _create_any_format_layout(handle, config):
    """The any_format/ group: NaN-padded (n, max_readings) arrays, chunked and compressed
    (shuffle + lzf) so that the padding costs little on disk; a chunk's rows divide the
    rows of a case chunk, so no HDF5 chunk is written twice. No ``prefix_length``
    attribute: it is not a prefix group."""
    n, settings = config["n_samples"], config["any_format"]
    width = settings["max_readings"]
    group = handle.create_group(ANY_FORMAT_GROUP)
    group.attrs["max_readings"] = width
    group.attrs["config"] = json.dumps(settings)
    most = max(1, min(n, _ANY_FORMAT_CHUNK_VALUES // width))
    rows = max(d for d in range(1, most + 1) if _CHUNK_SIZE % d == 0)
    for name in ("t", "pH"):
        group.create_dataset(name, (n, width), dtype=np.float32, chunks=(rows, width),
                             compression="lzf", shuffle=True, fillvalue=np.nan)
    group.create_dataset("length", (n,), dtype=np.int32)
    group.create_dataset("prefix_length", (n,), dtype=np.float64)
    group.create_dataset("reading_interval", (n,), dtype=np.float64)


def _chunk_tasks(config):
    n = config["n_samples"]
    starts = range(0, n, _CHUNK_SIZE)
    seeds = np.random.SeedSequence(config["seed"]).spawn(len(starts))
    return [(config, start, min(start + _CHUNK_SIZE, n), seed)
            for start, seed in zip(starts, seeds)]


def generate_dataset(config, path, *, workers=None, progress=True, on_progress=None):
    """Simulate a dataset and write it to an HDF5 file.

    The file is written next to ``path`` under a temporary name and renamed onto ``path``
    only when complete, so an interrupted or failed run leaves no partial file (and an
    existing file at ``path`` untouched). One run at a time writes ``path`` (an exclusive
    lock on ``PATH.lock``); temporary files left by runs that were killed are removed, with
    a warning line on stderr.

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
    on_progress : callable, optional
        Called as ``on_progress(samples_done, n_samples)`` when the work starts and after
        every chunk written (e.g. :meth:`ei_keras.jobs.JobState.progress`).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    EiKerasError
        For an invalid config or ``workers``; a dataset that would not fit in memory or
        on disk (checked before any work); ``path`` being written by another process
        (one writer per output: ``PATH.lock``, naming the holder's pid).
    """
    config = resolve_dataset_config(config)
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise EiKerasError(f"workers: got {workers!r}; allowed: an integer >= 1")
    path = Path(path)
    if path.is_dir():
        raise EiKerasError(f"output path {path} is a directory; give a file name such as data.h5")
    workers = check_dataset_fits(config, path, workers, _CHUNK_SIZE)  # before any work
    make_dirs(path.parent)
    with exclusive_lock(path.with_name(f"{path.name}.lock"), f"output {path}",
                        fix="wait for that generate run to end, stop it, or choose another "
                            "--out"):
        _remove_stale_temporaries(path)  # we hold the lock: their writers are gone
        temporary = path.with_name(f"{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}")
        tasks = _chunk_tasks(config)
        try:
            with interrupt_on_signals(), h5py.File(temporary, "w-") as handle:
                _create_layout(handle, config)
                with pool_results(tasks, workers, _simulate_chunk) as results, tqdm(
                    total=config["n_samples"], unit="sample", desc="generate",
                    disable=not progress
                ) as bar:
                    report = on_progress or (lambda done, total: None)
                    done = 0
                    report(done, config["n_samples"])
                    for start, arrays in results:
                        check_interrupted()
                        for name, values in arrays.items():
                            handle[name][start:start + len(values)] = values
                        bar.update(len(values))
                        done += len(values)
                        report(done, config["n_samples"])
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    return path


def _remove_stale_temporaries(path):
    """Delete ``PATH.tmp*`` files of runs that died before renaming (SIGKILL, power loss)."""
    for stale in sorted(path.parent.glob(f"{glob.escape(path.name)}.tmp*")):
        try:
            size = stale.stat().st_size
            stale.unlink()
        except OSError:
            continue
        warn(f"removed {stale} ({size / 1e6:.1f} MB), left by an interrupted generate run")


def preview(config, n_cases=4):
    """A few cases simulated by the generator's own code (priors, grids, probe model,
    noise drawn per group): the arrays ``generate_dataset`` writes for the same config
    with ``n_samples = n_cases`` (at most one chunk, 1000).

    Returns
    -------
    dict
        ``trajectory`` (``t``, ``pH_true``, ``pH_measured``), ``prefixes`` (prefix length
        [s] → ``t``, ``pH``) and ``parameters`` (one dict of known inputs and latent
        parameters per case).
    """
    if not 1 <= int(n_cases) <= _CHUNK_SIZE:
        raise EiKerasError(f"n_cases: got {n_cases!r}; allowed: 1–{_CHUNK_SIZE}")
    config = resolve_dataset_config(config)
    config.update(n_samples=int(n_cases), any_format=dict(config["any_format"], enabled=False))
    _, arrays = _simulate_chunk(_chunk_tasks(config)[0])  # the other groups are the same
    grids = reading_grids(config)
    prefixes = {float(length): {"t": grids[prefix_group_name(length)],
                                "pH": arrays[f"{prefix_group_name(length)}/pH"]}
                for length in config["prefix_lengths"]}
    parameters = [dict(zip(KNOWN_NAMES + LATENT_NAMES, map(float, (*known, *latent))))
                  for known, latent in zip(arrays["known"], arrays["latent"])]
    return {"trajectory": {"t": grids[TRAJECTORY_GROUP],
                           "pH_true": arrays[f"{TRAJECTORY_GROUP}/pH_true"],
                           "pH_measured": arrays[f"{TRAJECTORY_GROUP}/pH_measured"]},
            "prefixes": prefixes, "parameters": parameters}
