"""Sharded generation: the same arrays as one file whatever the executor, a manifest the
loaders check, and a killed run that resumes without redoing its finished shards."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import ei_keras.data.generate as generate_module
from ei_keras.cli import main
from ei_keras.data import (
    describe_dataset,
    generate_dataset,
    load_any_format,
    load_prefix,
    load_trajectories,
)
from ei_keras.data.shards import MANIFEST_NAME, generate_sharded, sha256_of
from ei_keras.errors import EiKerasError

REPO = Path(__file__).resolve().parents[1]
CHUNK = 50  # cases per chunk in these tests (1000 in use), so 230 cases make 5 chunks
SMALL = {"n_samples": 230, "seed": 7, "t_max": 100, "n_times": 15, "prefix_lengths": [10, 30],
         "prefix_n_points": 12, "any_format": {"enabled": True, "max_readings": 40}}
CLI_ARGS = ["--n-samples", "230", "--seed", "7", "--t-max", "100", "--n-times", "15",
            "--prefix-lengths", "10", "30", "--prefix-n-points", "12", "--no-progress"]

# A CLI run into a shard directory that is slow from its second shard on, so a test can
# kill it once the first shard is written and listed in the manifest.
SLOW_RUN = textwrap.dedent(f"""
    import sys, time
    import ei_keras.data.generate as generate_module
    import ei_keras.data.shards as shards_module
    from ei_keras.cli import main
    generate_module._CHUNK_SIZE = {CHUNK}
    write = shards_module._write_shard
    def slow(job):
        if job[1] > 0:
            time.sleep(30)
        return write(job)
    shards_module._write_shard = slow
    sys.exit(main(["generate", "--out", sys.argv[1], "--shards", "4", "--workers", "1",
                   *{CLI_ARGS!r}]))
""")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(generate_module, "_CHUNK_SIZE", CHUNK)


def file_contents(path):
    """Every dataset's bytes and every attribute of a file, by HDF5 path."""
    contents = {}

    def visit(name, item):
        attrs = {key: str(value) for key, value in item.attrs.items()}
        if isinstance(item, h5py.Dataset):
            contents[name] = (item.dtype.str, item.shape, item[...].tobytes(), attrs)
        else:
            contents[name] = attrs

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
        contents["/"] = {key: str(handle.attrs[key]) for key in ("format_version", "config")}
    return contents


def shard_files(directory):
    return sorted(Path(directory).glob("shard-*.h5"))


def test_local_pool_and_dask_cluster_write_the_single_files_arrays(tmp_path):
    distributed = pytest.importorskip("distributed")
    single = file_contents(generate_dataset(SMALL, tmp_path / "single.h5", workers=1,
                                            progress=False))
    local = generate_sharded(SMALL, tmp_path / "local", shards=3, workers=2, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        dask = generate_sharded(SMALL, tmp_path / "dask", shards=3, executor="dask",
                                scheduler=cluster, progress=False)
    # Every array's bytes and every attribute (the files' own bytes may differ: HDF5 does
    # not promise to zero the unused space of its metadata blocks).
    assert file_contents(local) == single == file_contents(dask)
    manifest = json.loads((local.parent / MANIFEST_NAME).read_text())
    assert manifest["complete"] and manifest["config"]["n_samples"] == 230
    assert [(s["start"], s["stop"]) for s in manifest["shards"]] == [(0, 50), (50, 150),
                                                                     (150, 230)]
    assert manifest["shards"][1]["seeds"] == [{"entropy": 7, "spawn_key": [1]},
                                              {"entropy": 7, "spawn_key": [2]}]
    assert all(s["sha256"] == sha256_of(local.parent / s["file"]) for s in manifest["shards"])
    with h5py.File(local, "r") as handle:
        assert handle.attrs["sharded"] and handle["prefix_30s/pH"].is_virtual
    # The loaders take it as a single file.
    reference = tmp_path / "single.h5"
    np.testing.assert_array_equal(load_prefix(local, 30).pH, load_prefix(reference, 30).pH)
    np.testing.assert_array_equal(load_any_format(dask).t, load_any_format(reference).t)
    np.testing.assert_array_equal(load_trajectories(local).pH_true,
                                  load_trajectories(reference).pH_true)
    assert "shards:      3 files" in describe_dataset(local)


def test_a_deleted_or_altered_shard_is_refused_in_one_line_and_a_rerun_repairs_it(tmp_path):
    path = generate_sharded(SMALL, tmp_path / "d", shards=3, workers=1, progress=False)
    reference = load_prefix(path, 10).pH  # hashes the shards once (cached by mtime)
    shard = tmp_path / "d" / "shard-00001.h5"
    with open(shard, "r+b") as stream:  # flip bytes inside, keeping the size
        stream.seek(shard.stat().st_size // 2)
        block = stream.read(64)
        stream.seek(shard.stat().st_size // 2)
        stream.write(bytes(255 - b for b in block))
    for load in (lambda: load_prefix(path, 10), lambda: load_any_format(path),
                 lambda: load_trajectories(path), lambda: describe_dataset(path)):
        with pytest.raises(EiKerasError) as error:
            load()
        message = str(error.value)
        assert "shard shard-00001.h5 is altered" in message and "\n" not in message
        assert "rerun `ei-keras generate` with the same arguments" in message
    (tmp_path / "d" / "shard-00002.h5").unlink()
    shard.unlink()
    with pytest.raises(EiKerasError, match="shard shard-00001.h5 is missing"):
        load_prefix(path, 10)
    untouched = (tmp_path / "d" / "shard-00000.h5").stat().st_mtime_ns
    generate_sharded(SMALL, tmp_path / "d", shards=3, workers=1, progress=False)
    np.testing.assert_array_equal(load_prefix(path, 10).pH, reference)
    assert (tmp_path / "d" / "shard-00000.h5").stat().st_mtime_ns == untouched


def test_a_killed_run_resumes_without_redoing_its_finished_shards(tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO),
                                                        os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(out)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                listed = json.loads((out / MANIFEST_NAME).read_text())["shards"][0]["sha256"]
            except (OSError, ValueError, KeyError):
                listed = None
            if listed:
                break
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    assert [p.name for p in shard_files(out)] == ["shard-00000.h5"]
    assert not (out / "dataset.h5").exists()
    first = (out / "shard-00000.h5").stat().st_mtime_ns
    assert main(["generate", "--out", str(out), "--shards", "4", "--workers", "1",
                 *CLI_ARGS]) == 0
    assert (out / "shard-00000.h5").stat().st_mtime_ns == first
    assert len(shard_files(out)) == 4
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset.h5", MANIFEST_NAME, *(f"shard-0000{i}.h5" for i in range(4))]
    assert main(["generate", "--out", str(tmp_path / "whole"), "--shards", "4", *CLI_ARGS]) == 0
    assert file_contents(out / "dataset.h5") == file_contents(tmp_path / "whole" / "dataset.h5")


def test_fewer_shards_on_a_rerun_and_training_from_the_shards(tmp_path):
    from ei_keras.training import train

    config = {**SMALL, "any_format": {"enabled": False}}
    generate_sharded(config, tmp_path / "d", shards=4, workers=1, progress=False)
    path = generate_sharded(config, tmp_path / "d", shards=2, workers=2, progress=False)
    assert [p.name for p in shard_files(tmp_path / "d")] == ["shard-00000.h5",
                                                             "shard-00001.h5"]
    result = train(path, 10.0, "improved", tmp_path / "run", epochs=1, verbose=0,
                   batch_size=64, model={"filters": [4], "dilations": [1], "pool_sizes": [1],
                                         "known_units": [4], "head_units": [8]})
    assert result.status == "finished"


def test_bad_shard_arguments_are_one_line(tmp_path, capsys, monkeypatch):
    cases = [
        (["--executor", "dask"], "--executor needs --shards K"),
        (["--shards", "6"], "shards: got 6; allowed: an integer from 1 to 5 for 230 samples"),
        (["--shards", "2", "--executor", "local", "--scheduler", "tcp://x:1"],
         "a scheduler needs the dask executor"),
    ]
    monkeypatch.setitem(sys.modules, "distributed", None)  # the dask extra not installed
    cases.append((["--shards", "2", "--executor", "dask"], "pip install 'ei_keras[dask]'"))
    for arguments, text in cases:
        assert main(["generate", "--out", str(tmp_path / "d"), *CLI_ARGS, *arguments]) == 2
        stderr = capsys.readouterr().err
        assert text in stderr and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "d").exists()
