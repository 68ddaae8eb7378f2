"""Sharded generation: one dataset as K shard files written by any executor, read as one.

``generate_sharded(config, DIR, shards=K)`` writes::

    DIR/
    ├─ shard-00000.h5 …  contiguous ranges of the single file's chunks (same seeds), each a
    │                    complete ei_keras file of its rows (attrs shard_index, shard_start,
    │                    shard_stop; config = the whole dataset's), written aside and renamed
    ├─ manifest.json     config, chunk size, per-shard rows, seeds, bytes and sha256,
    │                    package version, ``complete``
    └─ dataset.h5        the single-file layout; the per-sample arrays are HDF5 virtual
                         datasets over the shards (relative names: DIR moves as a whole)

The arrays equal those of :func:`ei_keras.data.generate_dataset` with the same config and
seed, whatever the executor (``local`` process pool, or Dask) and the number of workers:
every chunk draws from its own child of ``SeedSequence(seed)`` and a shard is a run of
whole chunks. A rerun keeps the shards that the manifest lists and that still match their
size and checksum, and writes the rest. A virtual dataset reads a missing source as fill
values without a word, so the loaders call :func:`verify_shards` before reading.
"""

import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from ei_keras.config import resolve_dataset_config
from ei_keras.data import generate as single_file
from ei_keras.data.generate import _chunk_tasks, _create_layout, _simulate_chunk
from ei_keras.data.sizes import check_dataset_fits
from ei_keras.errors import EiKerasError
from ei_keras.executors import check_executor, dask_results, pool_results
from ei_keras.fileio import (
    check_interrupted,
    exclusive_lock,
    interrupt_on_signals,
    make_dirs,
    sync,
    warn,
    write_json,
)

MANIFEST_NAME = "manifest.json"
DATASET_NAME = "dataset.h5"
MANIFEST_VERSION = 1
REGENERATE = "rerun `ei-keras generate` with the same arguments to regenerate it"
_HASH_BLOCK = 1 << 20
# sha256 of shard files already hashed by this process, keyed by what a change would
# alter (path, size, mtime, inode): loading several groups of one dataset hashes once.
_HASHED = {}


def shard_name(index):
    """File name of shard ``index``: 0 → ``shard-00000.h5``."""
    return f"shard-{index:05d}.h5"


def sha256_of(path):
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_shards(config, shards):
    """Split the chunks of a resolved ``config`` into ``shards`` contiguous runs.

    Returns:
        list of dict: per shard ``index``, ``file``, ``start``, ``stop`` (rows) and
        ``tasks`` (the chunk tasks of :func:`ei_keras.data.generate._simulate_chunk`).

    Raises:
        EiKerasError: ``shards`` is not an integer from 1 to the number of chunks.
    """
    tasks = _chunk_tasks(config)
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= len(tasks):
        raise EiKerasError(
            f"shards: got {shards!r}; allowed: an integer from 1 to {len(tasks)} for "
            f"{config['n_samples']} samples (a shard holds whole chunks of "
            f"{single_file._CHUNK_SIZE})")
    plan = []
    for index in range(shards):
        part = tasks[index * len(tasks) // shards:(index + 1) * len(tasks) // shards]
        plan.append({"index": index, "file": shard_name(index), "start": part[0][1],
                     "stop": part[-1][2], "tasks": part})
    return plan


def _seeds(tasks):
    return [{"entropy": task[3].entropy, "spawn_key": list(task[3].spawn_key)} for task in tasks]


def _temporary(path):
    return path.with_name(f"{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}")


def _write_shard(job):
    """Simulate one shard's chunks into ``DIR/shard-NNNNN.h5`` (aside, then renamed).

    Runs on a worker (a pool process, a Dask worker); ``job`` is ``(directory, index,
    tasks)``. Returns the shard's manifest entry and the names of its per-sample arrays.
    """
    directory, index, tasks = job
    path = Path(directory) / shard_name(index)
    config, start, stop = tasks[0][0], tasks[0][1], tasks[-1][2]
    temporary = _temporary(path)
    try:
        with h5py.File(temporary, "w-") as handle:
            _create_layout(handle, {**config, "n_samples": stop - start})
            handle.attrs["config"] = json.dumps(config)
            handle.attrs["shard_index"] = index
            handle.attrs["shard_start"] = start
            handle.attrs["shard_stop"] = stop
            for task in tasks:
                first, arrays = _simulate_chunk(task)
                for name, values in arrays.items():
                    handle[name][first - start:first - start + len(values)] = values
        sync(temporary)
        entry = {"file": path.name, "start": start, "stop": stop, "n_samples": stop - start,
                 "seeds": _seeds(tasks), "bytes": temporary.stat().st_size,
                 "sha256": sha256_of(temporary)}
        os.replace(temporary, path)
        sync(path.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return index, entry, sorted(arrays)


def _shard_problem(path, entry):
    """None if ``path`` has the manifest entry's size and sha256; else what is wrong."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "is missing"
    if stat.st_size != entry["bytes"]:
        return f"is altered ({stat.st_size} bytes; {MANIFEST_NAME} says {entry['bytes']})"
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    digest = _HASHED.get(key) or sha256_of(path)
    if digest != entry["sha256"]:
        return f"is altered (its sha256 differs from {MANIFEST_NAME})"
    _HASHED[key] = digest
    return None


def verify_shards(dataset_path, config=None):
    """Check a sharded ``dataset.h5`` against the ``manifest.json`` beside it.

    Every shard must be present with the size and sha256 the manifest lists, the manifest
    complete and (when ``config`` is given) of the same config as the dataset file.

    Raises:
        EiKerasError: one line naming the missing or altered shard (or manifest) and
            saying to rerun ``ei-keras generate`` with the same arguments.
    """
    directory = Path(dataset_path).parent
    manifest_path = directory / MANIFEST_NAME
    where = f"dataset {dataset_path}"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        shards = manifest["shards"]
        complete = manifest["complete"]
        manifest_config = manifest["config"]
    except FileNotFoundError:
        raise EiKerasError(f"{where}: {manifest_path} is missing; {REGENERATE}") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise EiKerasError(f"{where}: {manifest_path} is unreadable or not a shard manifest; "
                           f"{REGENERATE}") from None
    if not complete:
        raise EiKerasError(f"{where}: the generate run writing {directory} has not finished; "
                           f"{REGENERATE}")
    if config is not None and manifest_config != config:
        raise EiKerasError(f"{where}: {manifest_path} describes another config than the "
                           f"dataset file; {REGENERATE}")
    for entry in shards:
        try:
            problem = _shard_problem(directory / entry["file"], entry)
        except (KeyError, TypeError):
            raise EiKerasError(f"{where}: {manifest_path} is not a shard manifest; "
                               f"{REGENERATE}") from None
        except OSError as error:
            problem = f"is unreadable ({error.strerror})"
        if problem:
            raise EiKerasError(f"{where}: shard {entry['file']} {problem}; {REGENERATE}")
    return manifest


def _reusable_shards(directory, config, plan):
    """Shards of an earlier run to keep: same config, chunk size and rows, and intact."""
    try:
        old = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
        if old["config"] != config or old["chunk_size"] != single_file._CHUNK_SIZE:
            return {}, None
        entries = {entry["file"]: entry for entry in old["shards"] if entry.get("sha256")}
        arrays = old["arrays"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}, None
    kept = {}
    for shard in plan:
        entry = entries.get(shard["file"])
        if (entry and (entry["start"], entry["stop"]) == (shard["start"], shard["stop"])
                and _shard_problem(directory / shard["file"], entry) is None):
            kept[shard["index"]] = entry
    return kept, arrays


def _remove_leftovers(directory, plan):
    """Temporary files of runs that died, and shard files beyond this plan."""
    planned = {shard["file"] for shard in plan}
    patterns = ("shard-*.h5.tmp*", f"{DATASET_NAME}.tmp*", f".{MANIFEST_NAME}.tmp*",
                "shard-*.h5")
    for pattern in patterns:
        for stale in sorted(directory.glob(pattern)):
            if stale.name in planned:
                continue
            with contextlib.suppress(OSError):
                size = stale.stat().st_size
                stale.unlink()
                warn(f"removed {stale} ({size / 1e6:.1f} MB), left by an interrupted or "
                     "earlier generate run")


def _manifest(config, plan, entries, arrays, complete):
    from ei_keras import __version__

    shards = [entries.get(shard["index"]) or
              {"file": shard["file"], "start": shard["start"], "stop": shard["stop"],
               "n_samples": shard["stop"] - shard["start"], "seeds": _seeds(shard["tasks"]),
               "bytes": None, "sha256": None}
              for shard in plan]
    return {"manifest_version": MANIFEST_VERSION, "package_version": __version__,
            "complete": complete, "n_samples": config["n_samples"], "seed": config["seed"],
            "chunk_size": single_file._CHUNK_SIZE, "dataset": DATASET_NAME, "arrays": arrays,
            "shards": shards, "config": config}


def _write_virtual_dataset(directory, config, entries, arrays):
    """``DIR/dataset.h5``: the single-file layout, per-sample arrays mapped to the shards."""
    path = directory / DATASET_NAME
    temporary = _temporary(path)
    try:
        with h5py.File(temporary, "w-") as handle:
            _create_layout(handle, config)  # nothing is allocated: each array is replaced
            handle.attrs["sharded"] = True
            handle.attrs["manifest"] = MANIFEST_NAME
            for name in arrays:
                shape, dtype = handle[name].shape, handle[name].dtype
                attrs = dict(handle[name].attrs)
                del handle[name]
                layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
                for entry in entries:
                    rows = (entry["stop"] - entry["start"], *shape[1:])
                    layout[entry["start"]:entry["stop"]] = h5py.VirtualSource(
                        entry["file"], name, shape=rows)
                fill = np.nan if np.issubdtype(dtype, np.floating) else 0
                handle.create_virtual_dataset(name, layout, fillvalue=fill).attrs.update(attrs)
        sync(temporary)
        os.replace(temporary, path)
        sync(directory)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def generate_sharded(config, directory, *, shards, executor="local", scheduler=None,
                     workers=None, progress=True, on_progress=None):
    """Simulate a dataset into shard files, a manifest and a virtual ``dataset.h5``.

    Parameters
    ----------
    config : mapping or None
        A (partial) dataset config, merged over the defaults.
    directory : str or os.PathLike
        Output directory (created): ``shard-NNNNN.h5``, ``manifest.json``, ``dataset.h5``.
    shards : int
        Number of shard files, from 1 to the number of chunks (one per 1000 samples).
    executor : {"local", "dask"}
        ``local``: a process pool on this machine; ``dask``: Dask workers.
    scheduler : str or distributed cluster, optional
        With ``dask``: the scheduler's address (``tcp://host:8786``) or a cluster object;
        default a LocalCluster of ``workers`` processes. Its workers must see
        ``directory`` (a shared file system) and have ei_keras installed.
    workers : int, optional
        Local pool processes or LocalCluster workers (default: the usable cores). The
        arrays do not depend on it, nor on the executor.
    progress : bool
        Show a progress bar on stderr.
    on_progress : callable, optional
        Called as ``on_progress(samples_done, n_samples)`` when the work starts (shards
        kept from an earlier run count as done) and after every shard written.

    Returns
    -------
    pathlib.Path
        ``directory / "dataset.h5"``, which every loader reads as a single file.

    Raises
    ------
    EiKerasError
        Invalid arguments or config, a dataset that cannot fit, ``directory`` being
        written by another process, or the dask extra missing.
    """
    config = json.loads(json.dumps(resolve_dataset_config(config)))
    workers = check_executor(executor, scheduler, workers)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise EiKerasError(f"output {directory} is a file; with shards the output is a "
                           "directory")
    plan = plan_shards(config, shards)
    workers = check_dataset_fits(config, directory / DATASET_NAME, workers,
                                 single_file._CHUNK_SIZE)
    make_dirs(directory)
    with exclusive_lock(directory / ".lock", f"output {directory}",
                        fix="wait for that generate run to end, stop it, or choose another "
                            "--out"):
        _remove_leftovers(directory, plan)
        entries, arrays = _reusable_shards(directory, config, plan)
        pending = [shard for shard in plan if shard["index"] not in entries]
        if pending:
            (directory / DATASET_NAME).unlink(missing_ok=True)
            write_json(directory / MANIFEST_NAME, _manifest(config, plan, entries, arrays,
                                                            complete=False))
        jobs = [(str(directory.resolve()), shard["index"], shard["tasks"]) for shard in pending]
        done = sum(entry["n_samples"] for entry in entries.values())
        try:
            with interrupt_on_signals(), tqdm(
                total=config["n_samples"], initial=done, unit="sample", desc="generate",
                disable=not progress
            ) as bar:
                report = on_progress or (lambda done, total: None)
                report(done, config["n_samples"])
                if jobs:
                    results = (dask_results(_write_shard, jobs, workers, scheduler,
                                            name="ei-keras-shard") if executor == "dask"
                               else pool_results(jobs, workers, _write_shard))
                    with results as finished:
                        for index, entry, arrays in finished:
                            entries[index] = entry
                            write_json(directory / MANIFEST_NAME,
                                       _manifest(config, plan, entries, arrays, False))
                            bar.update(entry["n_samples"])
                            done += entry["n_samples"]
                            report(done, config["n_samples"])
                            check_interrupted()
        finally:
            if len(entries) < len(plan):  # workers stopped mid-shard leave temporaries
                _remove_leftovers(directory, plan)
        ordered = [entries[shard["index"]] for shard in plan]
        path = _write_virtual_dataset(directory, config, ordered, arrays)
        write_json(directory / MANIFEST_NAME, _manifest(config, plan, entries, arrays, True))
    return path
