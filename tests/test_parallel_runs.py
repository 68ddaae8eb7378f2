"""Runs in parallel: concurrent compare equals sequential, reruns keep ended runs and resume
interrupted ones, a killed process fails only its run, Dask runs trainings."""

import json
import os
import signal

import keras
import pytest

import ei_keras
from ei_keras.evaluation.compare import compare
from ei_keras.executors import process_results
from ei_keras.training import train
from ei_keras.training_runs import TrainingSpec, run_trainings

TINY = {"model": {"filters": [4, 4], "dilations": [1, 2], "pool_sizes": [1, 2],
                  "known_units": [4], "head_units": [8]},
        "batch_size": 16, "warmup_epochs": 1, "epochs": 2}
STUDY = {"prefix_lengths": (10,), "presets": ("baseline", "improved"), "ablation_prefix": None}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    config = {"n_samples": 48, "prefix_lengths": [10], "n_times": 51,
              "measurement_model": {"use_probe_lag": False, "use_offset": False}}
    return [ei_keras.generate_dataset(dict(config, seed=seed), folder / f"{name}.h5",
                                      progress=False, workers=1)
            for seed, name in ((1, "train"), (2, "test"))]


def runs_of(out_dir):
    return [(r["name"], r["status"]) for r in json.loads((out_dir / "results.json").read_text())]


def test_concurrent_equals_sequential_and_a_rerun_keeps_ended_runs(tmp_path, data, capsys):
    train_h5, test_h5 = data
    compare(train_h5, tmp_path / "one", test_data=test_h5, workers=1, **STUDY, **TINY)
    compare(train_h5, tmp_path / "two", test_data=test_h5, workers=2, **STUDY, **TINY)
    assert runs_of(tmp_path / "two") == runs_of(tmp_path / "one") == [
        ("baseline-10s", "finished"), ("improved-10s", "finished")]
    history = tmp_path / "two" / "runs" / "improved-10s" / "history.jsonl"
    written = history.stat().st_mtime_ns
    capsys.readouterr()
    results = compare(train_h5, tmp_path / "two", test_data=test_h5, workers=2, **STUDY, **TINY)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["kept", "baseline-10s:"],
                                                    ["kept", "improved-10s:"]]
    assert history.stat().st_mtime_ns == written and results[1]["epochs"] == 2
    for name in ("results.json", "table.md", "compare.html"):
        assert (tmp_path / "two" / name).exists()


class InterruptAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def test_rerun_resumes_an_interrupted_run(tmp_path, data, capsys):
    train_h5, test_h5 = data
    run_dir = tmp_path / "runs" / "improved-10s"
    with pytest.raises(KeyboardInterrupt):
        train(train_h5, 10, "improved", run_dir, verbose=0,
              callbacks=[InterruptAfterFirstEpoch()], **TINY)
    first_epoch = (run_dir / "history.jsonl").read_text().splitlines()[0]
    results = compare(train_h5, tmp_path, test_data=test_h5, workers=2, **STUDY, **TINY)
    out = capsys.readouterr().out
    assert "start   improved-10s: resuming after epoch 1" in out
    assert "resumed improved-10s: finished, 2 epochs" in out
    assert [r["status"] for r in results] == ["finished", "finished"]
    assert (run_dir / "history.jsonl").read_text().splitlines()[0] == first_epoch


def test_a_run_with_other_settings_fails_alone(tmp_path, data, capsys):
    train_h5, _ = data
    specs = [TrainingSpec(name, str(train_h5), 10, str(tmp_path / name), overrides=TINY)
             for name in ("a", "b")]
    os.makedirs(tmp_path / "a")
    (tmp_path / "a" / "config.json").write_text(json.dumps(
        {"train": {**TINY, "batch_size": 8}, "data": {}}))
    a, b = run_trainings(specs, workers=1)
    assert a.error.startswith(f"{tmp_path / 'a'} holds a run with other settings")
    assert a.result is None and b.action == "trained" and b.result.status == "finished"
    assert capsys.readouterr().out.splitlines()[0].startswith("failed  a: ")


def finish_or_die(job):
    if job == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    return job, os.environ["OMP_NUM_THREADS"]


def test_a_killed_process_fails_only_its_job():
    jobs = ["die", "live"]
    with process_results(finish_or_die, jobs, 2, environ={"OMP_NUM_THREADS": "1"},
                         on_error=lambda job, error: (job, str(error))) as finished:
        outcomes = dict(finished)
    assert outcomes == {"live": "1",
                        "die": "its process ended by signal SIGKILL before finishing"}


def test_dask_cluster_runs_two_trainings(tmp_path, data):
    distributed = pytest.importorskip("distributed")
    train_h5, _ = data
    specs = [TrainingSpec(name, str(train_h5), 10, str(tmp_path / name), preset,
                          overrides=TINY)
             for name, preset in (("baseline", "baseline"), ("improved", "improved"))]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        outcomes = run_trainings(specs, executor="dask", scheduler=cluster, progress=False)
    assert [(o.spec.name, o.action, o.result.status, len(o.result.history))
            for o in outcomes] == [("baseline", "trained", "finished", 2),
                                   ("improved", "trained", "finished", 2)]
    assert all((tmp_path / name / "final.keras").exists() for name in ("baseline", "improved"))
