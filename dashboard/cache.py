"""Cached loaders: data with ``st.cache_data`` (each caller gets a copy), models and large
arrays with ``st.cache_resource`` (shared; never modified). Every key holds the file's
modification time, so a rewritten file is read again."""

import json
import threading
from pathlib import Path

import h5py
import streamlit as st

from dashboard.workspace import folder, mtime
from ei_keras.data import describe_dataset, generate_dataset, load_trajectories, preview
from ei_keras.data.generate import ANY_FORMAT_GROUP
from ei_keras.data.load import open_dataset
from ei_keras.errors import EiKerasError
from ei_keras.evaluation.evaluate import evaluate_dataset
from ei_keras.inference import load_model
from ei_keras.inference.traces import load_traces

DEMO_NAME = "demo"
DEMO_SAMPLES = 300
DEMO_SEED = 1
PREVIEW_POINTS = 1001


@st.cache_data(show_spinner=False, max_entries=256)
def _dataset_info(path: str, version: float) -> dict:
    info = {"name": Path(path).stem, "path": path, "size_mb": Path(path).stat().st_size / 1e6}
    try:
        with open_dataset(path) as handle:  # checks format and, for shards, the manifest
            config = json.loads(handle.attrs["config"])
            info.update(
                n_samples=int(handle["known"].shape[0]), config=config,
                prefix_lengths=sorted(float(group.attrs["prefix_length"])
                                      for group in handle.values()
                                      if isinstance(group, h5py.Group)
                                      and "prefix_length" in group.attrs),
                targets=[str(name) for name in handle["targets"].attrs["names"]],
                any_format=ANY_FORMAT_GROUP in handle, seed=int(config["seed"]), error=None)
    except (OSError, KeyError, ValueError) as error:  # EiKerasError is a ValueError
        info.update(error=f"{Path(path).name} is not a readable ei_keras dataset ({error})",
                    n_samples=0, prefix_lengths=[], targets=[], config={}, seed=None,
                    any_format=False)
    return info


def dataset_info(path) -> dict:
    """Name, path, size, samples, prefix lengths, whether it holds any-format traces
    (``any_format``), targets, seed, config and ``error`` (None if readable)."""
    return _dataset_info(str(path), mtime(path))


def list_datasets() -> list[dict]:
    """Every ``.h5`` in the workspace's datasets folder, newest first."""
    paths = sorted(folder("datasets").glob("*.h5"), key=mtime, reverse=True)
    return [dataset_info(path) for path in paths]


@st.cache_data(show_spinner=False, max_entries=64)
def _describe(path: str, version: float) -> str:
    try:
        return describe_dataset(path)
    except EiKerasError as error:
        return str(error)


def describe(path) -> str:
    """``ei_keras.data.describe_dataset`` text (or the reason it cannot be read)."""
    return _describe(str(path), mtime(path))


def forget_datasets() -> None:
    """Read dataset listings anew (after a job wrote a file)."""
    _dataset_info.clear()
    _describe.clear()


_DEMO_LOCK = threading.Lock()


def ensure_demo_dataset() -> Path | None:
    """Generate a small demo dataset (in-process, about a second) if there is none;
    the path created, or None when the workspace already holds a dataset."""
    with _DEMO_LOCK:
        if any(folder("datasets").glob("*.h5")):
            return None
        path = folder("datasets") / f"{DEMO_NAME}.h5"
        # One chunk and one worker: no process pool inside the server.
        generate_dataset({"n_samples": DEMO_SAMPLES, "seed": DEMO_SEED}, path, workers=1,
                         progress=False)
        forget_datasets()
        return path


@st.cache_data(show_spinner=False, max_entries=16)
def preview_cached(config_json: str, n_cases: int = 4) -> dict:
    """``ei_keras.data.preview`` of a full config given as JSON, its trajectory at most
    :data:`PREVIEW_POINTS` points long."""
    config = json.loads(config_json)
    return preview(dict(config, n_times=min(config["n_times"], PREVIEW_POINTS)), n_cases)


# A resource, not data: any-format arrays are padded to the longest trace, and
# cache_data would copy them on every rerun.
@st.cache_resource(show_spinner=False, max_entries=4)
def _traces(path: str, version: float, prefix_length):
    return load_traces(path, prefix_length)


def traces_cached(path, prefix_length):
    """``ei_keras.inference.traces.load_traces``, cached per file version."""
    return _traces(str(path), mtime(path), prefix_length)


@st.cache_resource(show_spinner=False, max_entries=4)
def _trajectories(path: str, version: float):
    return load_trajectories(path)


def trajectories_cached(path):
    """``ei_keras.data.load_trajectories``, cached per file version."""
    return _trajectories(str(path), mtime(path))


@st.cache_resource(show_spinner=False, max_entries=8)
def _model(path: str, version: float):
    return load_model(path)


def get_model(path):
    """A loaded model (safe mode, cached per file version); EiKerasError if unreadable."""
    return _model(str(path), mtime(path))


@st.cache_data(show_spinner=False, max_entries=16)
def _evaluation(model_path, model_version, data_path, data_version, prefix_length, n_max,
                allow_extrapolation):
    return evaluate_dataset(get_model(model_path), data_path, prefix_length, n_max,
                            allow_extrapolation=allow_extrapolation)


def evaluation(model_path, data_path, prefix_length, n_max=300, *,
               allow_extrapolation=False) -> dict:
    """``ei_keras.evaluation.evaluate.evaluate_dataset``, cached per model and dataset
    file version and the “Allow extrapolation” switch."""
    return _evaluation(str(model_path), mtime(model_path), str(data_path), mtime(data_path),
                       prefix_length, int(n_max), bool(allow_extrapolation))
