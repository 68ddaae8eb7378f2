"""MLflow tracking: params, one metric value per epoch and the model, read back through
MLflow's client; a clear error without MLflow."""

import sys

import pytest

from ei_keras.cli import main
from ei_keras.errors import EiKerasError

mlflow = pytest.importorskip("mlflow")

TINY = '{"model": {"filters": [4, 4], "dilations": [1, 2], "pool_sizes": [1, 2], ' \
       '"known_units": [4], "head_units": [8]}, "batch_size": 16, "warmup_epochs": 1}'


@pytest.fixture(scope="module")
def tiny_h5(tmp_path_factory):
    from ei_keras.data import generate_dataset

    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    return generate_dataset({"n_samples": 64, "prefix_lengths": [10], "prefix_n_points": 20,
                             "n_times": 20, "seed": 3}, path, workers=1, progress=False)


def test_train_track_mlflow_logs_params_metrics_per_epoch_and_model(tmp_path, tiny_h5):
    settings = tmp_path / "settings.json"
    settings.write_text(TINY)
    uri = (tmp_path / "store").as_uri()
    code = main(["train", "--data", str(tiny_h5), "--prefix-length", "10", "--out",
                 str(tmp_path / "run"), "--config", str(settings), "--epochs", "3", "--quiet",
                 "--track", "mlflow", "--tracking-uri", uri])
    assert code == 0
    client = mlflow.MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("ei_keras").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    params = run.data.params
    assert params["epochs"] == "3" and params["batch_size"] == "16"
    assert params["data.prefix_length"] == "10.0" and params["data.path"] == str(tiny_h5)
    for metric in ("loss", "val_loss", "learning_rate"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert sorted(point.step for point in history) == [1, 2, 3]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"best.keras",
                                                                        "config.json"}


def test_compare_tracks_every_run_into_its_out_dir_by_default(tmp_path, tiny_h5):
    from ei_keras.data import generate_dataset

    test_h5 = generate_dataset({"n_samples": 16, "prefix_lengths": [10], "prefix_n_points": 20,
                                "n_times": 20, "seed": 4}, tmp_path / "test.h5", workers=1,
                               progress=False)
    out = tmp_path / "study"
    assert main(["compare", "--data", str(tiny_h5), "--test-data", str(test_h5),
                 "--prefix-lengths", "10", "--presets", "baseline", "--epochs", "2",
                 "--out", str(out), "--workers", "1", "--track", "mlflow", "--quiet"]) == 0
    client = mlflow.MlflowClient((out / "mlruns").as_uri())
    [run] = client.search_runs([client.get_experiment_by_name(
        "ei_keras compare study").experiment_id])
    assert run.info.run_name == "baseline-10s" and run.data.params["preset"] == "baseline"
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2


def test_tracking_uri_without_track_is_refused(tmp_path, tiny_h5, capsys):
    assert main(["train", "--data", str(tiny_h5), "--prefix-length", "10", "--out",
                 str(tmp_path / "run"), "--tracking-uri", "http://localhost:5000"]) == 2
    assert "--tracking-uri needs --track mlflow" in capsys.readouterr().err


def test_missing_mlflow_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    from ei_keras.tracking import MlflowTracker

    with pytest.raises(EiKerasError, match=r"pip install 'ei_keras\[mlflow\]'"):
        MlflowTracker(tmp_path / "run")
