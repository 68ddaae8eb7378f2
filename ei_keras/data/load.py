"""Reading datasets written by :func:`ei_keras.data.generate_dataset`."""

import contextlib
import dataclasses
import json
import os

import h5py
import numpy as np

from ei_keras.data.generate import ANY_FORMAT_GROUP, FORMAT_VERSION, TRAJECTORY_GROUP
from ei_keras.data.shards import MANIFEST_NAME, verify_shards
from ei_keras.errors import EiKerasError


@dataclasses.dataclass(frozen=True)
class PrefixData:
    """Readings of one prefix length with the inputs and targets of every case.

    ``t`` and ``pH`` are (n, m) float32 (seconds, measured pH); ``known`` (n, 5) holds the
    known inputs (measured initial pH), ``targets`` (n, p) the inferred parameters and
    ``latent`` (n, 4) every latent parameter, all in physical units.

    From :func:`load_any_format`, every case has its own format: ``t`` and ``pH`` are
    NaN-padded after the case's last reading, ``lengths`` (n,) counts its readings,
    ``sample_prefix_lengths`` (n,) and ``sample_reading_intervals`` (n,) are its L and
    effective dt [s], and ``prefix_length`` is the largest L. For a fixed prefix these
    three are None.
    """

    t: np.ndarray
    pH: np.ndarray
    known: np.ndarray
    known_names: tuple
    targets: np.ndarray
    target_names: tuple
    config: dict
    prefix_length: float
    latent: np.ndarray
    latent_names: tuple
    lengths: np.ndarray = None
    sample_prefix_lengths: np.ndarray = None
    sample_reading_intervals: np.ndarray = None


@dataclasses.dataclass(frozen=True)
class TrajectoryData:
    """Full trajectories on the ``t_max``/``n_times`` grid: ``t`` (n_times,), the true
    and measured pH (n, n_times) float32, and the inputs and latent parameters per case."""

    t: np.ndarray
    pH_true: np.ndarray
    pH_measured: np.ndarray
    known: np.ndarray
    known_names: tuple
    latent: np.ndarray
    latent_names: tuple
    config: dict


@contextlib.contextmanager
def open_dataset(path):
    """Open an ei_keras dataset, turning every way it can be wrong into EiKerasError."""
    if not os.path.isfile(path):
        raise EiKerasError(f"dataset {path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise EiKerasError(f"dataset {path}: not an HDF5 file, or a corrupt one") from None
    with handle:
        version = handle.attrs.get("format_version")
        if version is None or "config" not in handle.attrs:
            raise EiKerasError(
                f"dataset {path}: not an ei_keras dataset (no format_version/config "
                "attributes); create one with `ei-keras generate`"
            )
        if int(version) != FORMAT_VERSION:
            raise EiKerasError(
                f"dataset {path}: format version {int(version)} is not supported "
                f"(this ei_keras reads version {FORMAT_VERSION})"
            )
        if handle.attrs.get("sharded"):  # virtual datasets read a lost shard as fill values
            verify_shards(path, json.loads(handle.attrs["config"]))
        try:
            yield handle
        except (KeyError, OSError, ValueError) as error:
            if isinstance(error, EiKerasError):
                raise
            raise EiKerasError(f"dataset {path}: corrupt or incomplete ({error})") from None


def _names(dataset):
    return tuple(str(name) for name in dataset.attrs["names"])


def _prefix_groups(handle):
    """``prefix_length -> group`` for every prefix group, sorted by length."""
    groups = {
        float(group.attrs["prefix_length"]): group
        for group in handle.values()
        if isinstance(group, h5py.Group) and "prefix_length" in group.attrs
    }
    return dict(sorted(groups.items()))


def _format_lengths(lengths):
    return ", ".join(f"{length:g}" for length in lengths) or "none"


def prefix_group(handle, path, prefix_length):
    """The group of one prefix length in an open dataset; one line listing the lengths
    there are when it has none of that length."""
    groups = _prefix_groups(handle)
    matches = [g for length, g in groups.items() if np.isclose(length, float(prefix_length))]
    if not matches:
        raise EiKerasError(
            f"dataset {path}: no prefix of length {prefix_length!r} s; available "
            f"prefix lengths: {_format_lengths(groups)} s"
        )
    return matches[0]


def any_format_group(handle, path):
    """The any-format group of an open dataset; one line saying how to make one when it
    has none."""
    if ANY_FORMAT_GROUP not in handle:
        raise EiKerasError(
            f"dataset {path}: no any-format readings (group {ANY_FORMAT_GROUP}/); "
            "generate it with --any-format (config any_format.enabled)"
        )
    return handle[ANY_FORMAT_GROUP]


def load_prefix(path, prefix_length):
    """Load the readings of one prefix length.

    Parameters
    ----------
    path : str or os.PathLike
        A dataset written by :func:`ei_keras.data.generate_dataset`.
    prefix_length : float
        Prefix length in seconds, one of those in the file.

    Returns
    -------
    PrefixData

    Raises
    ------
    EiKerasError
        If the file is missing, not HDF5, not an ei_keras dataset or corrupt, or has no
        prefix of that length (the message lists the lengths it has).
    """
    with open_dataset(path) as handle:
        group = prefix_group(handle, path, prefix_length)
        pH = group["pH"][...].astype(np.float32, copy=False)
        t = np.ascontiguousarray(np.broadcast_to(group["t"][...].astype(np.float32), pH.shape))
        return PrefixData(
            t=t,
            pH=pH,
            known=handle["known"][...],
            known_names=_names(handle["known"]),
            targets=handle["targets"][...],
            target_names=_names(handle["targets"]),
            config=json.loads(handle.attrs["config"]),
            prefix_length=float(group.attrs["prefix_length"]),
            latent=handle["latent"][...],
            latent_names=_names(handle["latent"]),
        )


def load_any_format(path):
    """Load the any-format readings: every case with its own length and interval.

    Parameters
    ----------
    path : str or os.PathLike
        A dataset written with ``any_format.enabled`` (``ei-keras generate --any-format``).

    Returns
    -------
    PrefixData
        ``t`` and ``pH`` (n, max_readings) float32, NaN after each case's last reading,
        with ``lengths``, ``sample_prefix_lengths`` and ``sample_reading_intervals``;
        ``prefix_length`` is the largest L in the file.

    Raises
    ------
    EiKerasError
        If the file is missing, not HDF5, not an ei_keras dataset or corrupt, or has no
        any-format group.
    """
    with open_dataset(path) as handle:
        group = any_format_group(handle, path)
        lengths = group["prefix_length"][...]
        return PrefixData(
            t=group["t"][...],
            pH=group["pH"][...],
            known=handle["known"][...],
            known_names=_names(handle["known"]),
            targets=handle["targets"][...],
            target_names=_names(handle["targets"]),
            config=json.loads(handle.attrs["config"]),
            prefix_length=float(lengths.max(initial=0.0)),
            latent=handle["latent"][...],
            latent_names=_names(handle["latent"]),
            lengths=group["length"][...],
            sample_prefix_lengths=lengths,
            sample_reading_intervals=group["reading_interval"][...],
        )


# Generation settings that must agree for datasets to be trained on as one (the seed, size
# and formats may differ), with how an error names them.
SHARED_GENERATION = {"param_ranges": "prior ranges", "measurement_model": "measurement models",
                     "infer_params": "parameters to infer"}


def combine_datasets(paths, load):
    """Several datasets as one ``PrefixData``: their rows one after the other.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Datasets from ``ei-keras generate`` with the same prior, measurement model and
        inferred parameters (seeds, sizes and formats may differ, e.g. a dataset of long
        traces added to an any-format one: the posterior given a trace does not change
        with how often its format is drawn).
    load : callable
        ``path -> PrefixData``, e.g. :func:`load_any_format`.

    Returns
    -------
    PrefixData
        Readings NaN-padded to the widest part; ``config`` holds the shared settings and
        ``combined_from``, each part's full generation config (seeds included, so a
        resumed run checks it has the same parts, wherever the files are).

    Raises
    ------
    EiKerasError
        If a part cannot be read, or the parts differ in known inputs, targets or a
        shared setting (named), or fixed prefixes differ in length or readings.
    """
    parts = [load(path) for path in paths]
    first, first_path = parts[0], paths[0]
    for part, path in zip(parts[1:], paths[1:]):
        for what, ours, theirs in (("known inputs", part.known_names, first.known_names),
                                   ("inferred parameters", part.target_names,
                                    first.target_names),
                                   *((label, (part.config or {}).get(name),
                                      (first.config or {}).get(name))
                                     for name, label in SHARED_GENERATION.items())):
            if ours != theirs:
                raise EiKerasError(
                    f"datasets {first_path} and {path} cannot be trained on as one: their "
                    f"{what} differ ({theirs} vs {ours}); generate them with the same prior "
                    "and measurement model")
        if first.lengths is None and (part.lengths is not None or not np.isclose(
                part.prefix_length, first.prefix_length) or part.t.shape[1] != first.t.shape[1]):
            raise EiKerasError(
                f"datasets {first_path} and {path} cannot be trained on as one: their "
                "prefixes differ in length or readings")
    width = max(part.t.shape[1] for part in parts)

    def padded(array):
        return np.pad(array, ((0, 0), (0, width - array.shape[1])), constant_values=np.nan)

    def joined(name, pad=False):
        if getattr(first, name) is None:
            return None
        return np.concatenate([padded(getattr(p, name)) if pad else getattr(p, name)
                               for p in parts])

    config = {name: first.config[name] for name in SHARED_GENERATION if name in first.config}
    config["combined_from"] = [part.config for part in parts]  # (paths: the caller's record)
    return dataclasses.replace(
        first, t=joined("t", pad=True), pH=joined("pH", pad=True), known=joined("known"),
        targets=joined("targets"), latent=joined("latent"), config=config,
        prefix_length=max(part.prefix_length for part in parts), lengths=joined("lengths"),
        sample_prefix_lengths=joined("sample_prefix_lengths"),
        sample_reading_intervals=joined("sample_reading_intervals"))


def _describe_any_format(group):
    """One summary line of the any-format group: ranges of L, dt and readings."""
    lengths, intervals = group["prefix_length"][...], group["reading_interval"][...]
    counts = group["length"][...]
    if not counts.size:
        return "none"
    settings = json.loads(group.attrs["config"])
    return (f"L {lengths.min():.3g}–{lengths.max():.3g} s, dt {intervals.min():.3g}–"
            f"{intervals.max():.3g} s, {counts.min()}–{counts.max()} readings "
            f"(median {np.median(counts):g}, padded to {group.attrs['max_readings']}), "
            f"{settings['sampling']}")


def _describe_shards(path):
    """One summary line of a sharded dataset: its shard files and their total size."""
    directory = os.path.dirname(os.path.abspath(path))
    with open(os.path.join(directory, MANIFEST_NAME), encoding="utf-8") as stream:
        shards = json.load(stream)["shards"]
    size = sum(entry["bytes"] for entry in shards)
    return (f"  shards:      {len(shards)} files in {directory} ({size / 1e6:.1f} MB), "
            f"{MANIFEST_NAME}")


def load_trajectories(path):
    """Load the full true and measured trajectories of every case.

    Parameters
    ----------
    path : str or os.PathLike
        A dataset written by :func:`ei_keras.data.generate_dataset`.

    Returns
    -------
    TrajectoryData

    Raises
    ------
    EiKerasError
        If the file is missing, not HDF5, not an ei_keras dataset or corrupt.
    """
    with open_dataset(path) as handle:
        group = handle[TRAJECTORY_GROUP]
        return TrajectoryData(
            t=group["t"][...],
            pH_true=group["pH_true"][...],
            pH_measured=group["pH_measured"][...],
            known=handle["known"][...],
            known_names=_names(handle["known"]),
            latent=handle["latent"][...],
            latent_names=_names(handle["latent"]),
            config=json.loads(handle.attrs["config"]),
        )


def describe_dataset(path):
    """A printable summary: samples, prefixes, trajectory grid, parameters and config.

    Parameters
    ----------
    path : str or os.PathLike
        A dataset written by :func:`ei_keras.data.generate_dataset`.

    Returns
    -------
    str
        Several lines of text.
    """
    with open_dataset(path) as handle:
        config = json.loads(handle.attrs["config"])
        model = config["measurement_model"]
        known, latent = handle["known"], handle["latent"]
        n = known.shape[0]
        prefixes = ", ".join(
            f"{length:g} s × {group['pH'].shape[1]} points"
            for length, group in _prefix_groups(handle).items()
        ) or "none"
        trajectory_t = handle[TRAJECTORY_GROUP]["t"]
        noise = f"σ = {model['noise_std']:g} pH" if model["add_noise"] else "off"
        lines = [
            f"ei_keras dataset {path} (format {FORMAT_VERSION}, "
            f"{os.path.getsize(path) / 1e6:.1f} MB)",
            f"  samples:     {n} (seed {config['seed']})",
            *([_describe_shards(path)] if handle.attrs.get("sharded") else []),
            f"  prefixes:    {prefixes}",
            *([f"  any format:  {_describe_any_format(handle[ANY_FORMAT_GROUP])}"]
              if ANY_FORMAT_GROUP in handle else []),
            f"  trajectory:  {len(trajectory_t)} times on [0, {trajectory_t[-1]:g}] s",
            f"  targets:     {', '.join(_names(handle['targets']))}",
            f"  measurement: probe lag {'on' if model['use_probe_lag'] else 'off'}, "
            f"offset {'on' if model['use_offset'] else 'off'}, noise {noise}",
            f"  {'parameter':<20} {'prior range':<22} in file (min … max)",
        ]
        for dataset in (known, latent):
            values = dataset[...]
            for column, name in enumerate(_names(dataset)):
                low, high = config["param_ranges"][name]
                lines.append(
                    f"  {name:<20} {f'[{low:g}, {high:g}]':<22} "
                    f"{values[:, column].min():.4g} … {values[:, column].max():.4g}"
                )
        lines.append(f"  config: {json.dumps(config, sort_keys=True)}")
        return "\n".join(lines)
