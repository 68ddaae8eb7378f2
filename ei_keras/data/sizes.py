"""How big a dataset will be, from its config alone: refuse before any work what can't fit.

``t_max = 1e12`` (a probe-response grid of 1e11 nodes), ``target_dt = 1e-9`` (readings
every nanosecond) or ``prefix_n_points = 1e8`` pass every per-key check yet would end in
an out-of-memory kill or a full disk after minutes. :func:`check_dataset_fits` estimates
the bytes of one chunk in memory and of the file on disk without building any array, and
refuses with one line naming what to lower.
"""

import math
import os
import shutil
from pathlib import Path

from ei_keras.errors import EiKerasError
from ei_keras.simulation.measurement import (
    MAX_NODE_SPACING_S,
    get_adaptive_prefix_n_points,
    probe_grid,
)

# Peak bytes per (case, simulated time) while a chunk is simulated: float64 pH, probe
# response, interpolation indices and copies. Measured 36–45 on the default and
# adaptive configs (tracemalloc); 64 leaves a margin.
BYTES_PER_SIMULATED_VALUE = 64
# Share of the available memory one chunk may take (the parent holds results too).
MEMORY_SHARE = 0.5
# Beyond this time the probe grid is uniform at MAX_NODE_SPACING_S: counted, not built.
_GRID_BUILT_UP_TO_S = 1e6


def _probe_nodes(t_end):
    built = len(probe_grid(min(t_end, _GRID_BUILT_UP_TO_S)))
    return built + max(0, math.ceil((t_end - _GRID_BUILT_UP_TO_S) / MAX_NODE_SPACING_S))


def _prefix_points(config):
    points = []
    for length in config["prefix_lengths"]:
        n_points = int(config["prefix_n_points"])
        if config["use_adaptive_n_points"]:
            n_points = int(get_adaptive_prefix_n_points(length, n_points, config["target_dt"]))
        points.append(n_points)
    return points


def estimate_dataset_size(config, chunk_size):
    """Bytes of the file and of one chunk in memory for a resolved dataset ``config``.

    Returns:
        dict: ``file_bytes`` (uncompressed, an upper bound), ``chunk_bytes`` (peak while
        simulating ``min(n_samples, chunk_size)`` cases), ``chunk_cases`` and
        ``simulated_times`` (times simulated per case).
    """
    n = int(config["n_samples"])
    prefixes = _prefix_points(config)
    n_times = int(config["n_times"])
    lengths = [float(length) for length in config["prefix_lengths"]]
    t_end = max([float(config["t_max"]), *lengths])
    lag = config["measurement_model"].get("use_probe_lag", True)
    simulated = sum(prefixes) + n_times + (_probe_nodes(t_end) if lag else 0)
    stored = sum(prefixes) + 2 * n_times
    per_case_fixed = 8 * (5 + 4 + len(config["infer_params"]))
    any_format = config.get("any_format") or {}
    if any_format.get("enabled"):
        width = int(any_format["max_readings"])
        longest = float(max(any_format["prefix_length_s"]))
        simulated += width + (_probe_nodes(longest) if lag else 0)
        stored += 2 * width
        per_case_fixed += 4 + 8 + 8
    chunk = min(n, int(chunk_size))
    grids = 8 * (sum(prefixes) + n_times)
    return {
        "file_bytes": n * (4 * stored + per_case_fixed) + grids,
        "chunk_bytes": chunk * simulated * BYTES_PER_SIMULATED_VALUE + grids,
        "chunk_cases": chunk,
        "simulated_times": simulated,
    }


def available_memory():
    """Bytes of memory this process may still use (MemAvailable, capped by a cgroup limit)."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            available = min(available, int(limit) - int(used))
    except OSError:
        pass
    return max(available, 0)


def _size(n_bytes):
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{n_bytes / 1e3:,.0f} kB"


def check_dataset_fits(config, path, workers, chunk_size):
    """Refuse (one line) a dataset that cannot fit; the worker count that fits in memory.

    Args:
        config: a resolved dataset config.
        path: the output file (its directory's free space is checked).
        workers: worker processes asked for.
        chunk_size: cases simulated together by one worker.

    Returns:
        ``workers``, lowered where that many chunks at once would not fit in memory (the
        data do not depend on it).

    Raises:
        EiKerasError: one chunk would need more than half the available memory, or the
            file more than the free disk space.
    """
    sizes = estimate_dataset_size(config, chunk_size)
    memory = available_memory()
    if memory is not None and sizes["chunk_bytes"] > MEMORY_SHARE * memory:
        raise EiKerasError(
            f"this dataset config needs about {_size(sizes['chunk_bytes'])} of memory per "
            f"chunk of {sizes['chunk_cases']} samples ({sizes['simulated_times']:,} simulated "
            f"times per sample) but {_size(memory)} is available; lower t_max, n_times or "
            f"prefix_n_points, or raise target_dt")
    directory = Path(path).parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    free = shutil.disk_usage(directory).free
    if sizes["file_bytes"] > free:
        raise EiKerasError(
            f"{path} would take about {_size(sizes['file_bytes'])} but {directory} has "
            f"{_size(free)} free; lower n_samples, n_times or prefix_n_points, or write "
            f"elsewhere")
    if memory is not None:
        workers = max(1, min(workers, int(MEMORY_SHARE * memory // sizes["chunk_bytes"])))
    return workers
