"""train(): run directory, presets, resume, NaN, stop file, and the ei-keras train CLI."""

import dataclasses
import hashlib
import inspect
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import ei_keras  # noqa: F401
import keras

from ei_keras.cli import build_parser, main
from ei_keras.errors import EiKerasError
from ei_keras.models import build_model, model_info
from ei_keras.cli.train import settings_given
from ei_keras.settings import ConfigError, flags_of
from ei_keras.config import PRESETS, TrainConfig, resolve_config
from ei_keras.training import read_history, train
from synthetic_prefixes import make_prefixes

TINY = {"filters": [4, 4], "dilations": [1, 2], "pool_sizes": [1, 2], "known_units": [4],
        "head_units": [8]}
FAST = {"model": TINY, "batch_size": 16, "warmup_epochs": 2}


@pytest.fixture(scope="module")
def tiny_h5(tmp_path_factory):
    from ei_keras.data import generate_dataset

    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    return generate_dataset({"n_samples": 96, "prefix_lengths": [10], "prefix_n_points": 20,
                             "n_times": 20, "seed": 3}, path, workers=1, progress=False)


@pytest.mark.backend
def test_train_writes_a_complete_run_directory(tmp_path):
    result = train(make_prefixes(), 30.0, "improved", tmp_path / "run", epochs=3, verbose=0,
                   **FAST)
    run = result.run_dir
    assert result.status == "finished"
    for name in ("config.json", "history.jsonl", "status.json", "best.keras", "final.keras"):
        assert (run / name).exists(), name
    history = read_history(run)
    assert [r["epoch"] for r in history] == [1, 2, 3] == [r["epoch"] for r in result.history]
    assert all({"loss", "val_loss", "learning_rate"} <= set(r) for r in history)
    # Per-batch warmup over 2 epochs of 4 steps: epoch ends at 4/8 and 8/8 of the peak.
    np.testing.assert_allclose([r["learning_rate"] for r in history], [5e-4, 1e-3, 1e-3],
                               rtol=1e-6)
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["preset"] == "improved" and config["train"]["batch_size"] == 16
    assert config["model"]["filters"] == [4, 4] and config["model"]["pooling"] == "weighted"
    assert config["data"]["n_train"] + config["data"]["n_val"] == 64
    assert config["normalization"]["transforms"] == ["log10", "logit"]
    assert config["environment"]["backend"] == keras.backend.backend()
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["epoch"] == 3
    assert status["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in history))
    best = keras.saving.load_model(run / "best.keras")
    assert model_info(best)["run_config"] == {"dataset": make_prefixes().config,
                                              "train": config["train"]}
    out = best.predict_on_batch({"pH": make_prefixes().pH[:2], "t": make_prefixes().t[:2],
                                 "known": make_prefixes().known[:2]})
    assert out["posterior"].shape == (2, 4)
    with pytest.raises(EiKerasError, match="already holds a training run"):
        train(make_prefixes(), 30.0, out_dir=run, epochs=1, verbose=0, **FAST)


def test_resume_continues_epochs_optimizer_and_history(tmp_path):
    data = make_prefixes()
    train(data, 30.0, "baseline", tmp_path, epochs=2, verbose=0, **FAST)
    result = train(data, 30.0, out_dir=tmp_path, resume=True, epochs=4, verbose=0)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    model = keras.saving.load_model(tmp_path / "final.keras")
    steps = 4  # 58 training samples in batches of 16
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4 * steps
    assert json.loads((tmp_path / "config.json").read_text())["train"]["preset"] == "baseline"
    with pytest.raises(ValueError, match="only epochs may change"):
        train(data, 30.0, out_dir=tmp_path, resume=True, batch_size=8, verbose=0)
    with pytest.raises(EiKerasError, match="nothing to resume"):
        train(data, 30.0, out_dir=tmp_path / "empty", resume=True, verbose=0)


@pytest.mark.backend
def test_init_from_starts_a_new_run_from_a_saved_models_weights(tmp_path, tiny_h5, capsys):
    data = make_prefixes()
    first = train(data, 30.0, "improved", tmp_path / "first", epochs=2, verbose=0, **FAST)
    source = first.final_path
    # A learning rate of ~0: the warm-started network answers as the one it started from.
    tuned = train(data, 30.0, "improved", tmp_path / "tuned", init_from=source, epochs=1,
                  verbose=0, **dict(FAST, warmup_epochs=0, learning_rate=1e-12))
    inputs = {"pH": data.pH[:8], "t": data.t[:8], "known": data.known[:8]}
    before = keras.saving.load_model(source).predict_on_batch(inputs)["posterior"]
    after = keras.saving.load_model(tuned.final_path).predict_on_batch(inputs)["posterior"]
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)
    record = {"path": str(source), "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    assert json.loads((tuned.run_dir / "config.json").read_text())["init_from"] == record
    assert model_info(keras.saving.load_model(tuned.best_path))["run_config"]["init_from"] == record

    with pytest.raises(EiKerasError, match=r"another network than this run .first difference: encoder/"):
        train(data, 30.0, "improved", tmp_path / "wider", init_from=source, epochs=1, verbose=0,
              **dict(FAST, model=dict(TINY, filters=[8, 4])))
    with pytest.raises(EiKerasError, match="for a new run"):
        train(data, 30.0, out_dir=tmp_path / "first", resume=True, init_from=source, verbose=0)
    # The CLI flag, and a model the data does not fit (other targets): one line, no run.
    assert main(["train", "--data", str(tiny_h5), "--prefix-length", "10", "--init-from",
                 str(source), "--out", str(tmp_path / "cli")]) == 2
    error = capsys.readouterr().err
    assert "has another network" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "cli" / "config.json").exists()


def test_presets_are_the_issues_recipes():
    improved, baseline = resolve_config("improved"), resolve_config("baseline")
    assert (improved.batch_size, improved.learning_rate, improved.weight_decay,
            improved.global_clipnorm, improved.warmup_epochs, improved.plateau_factor,
            improved.plateau_patience, improved.min_lr, improved.pooling) == \
        (256, 1e-3, 1e-5, 5.0, 5, 0.7, 10, 1e-6, "weighted")
    assert (baseline.batch_size, baseline.learning_rate, baseline.weight_decay,
            baseline.global_clipnorm, baseline.warmup_epochs, baseline.plateau_factor,
            baseline.plateau_patience, baseline.pooling) == \
        (128, 5e-4, 0.0, 1.0, 0, 0.5, 5, "average")
    assert improved.architecture == "compact" and baseline.architecture == "recipe"
    assert set(PRESETS) == {"improved", "anyformat", "baseline"}
    assert resolve_config("baseline", architecture="compact").architecture == "compact"


@pytest.mark.parametrize("overrides, text", [
    ({"learnin_rate": 1.0}, "unknown training setting(s) learnin_rate; known: preset, "),
    ({"batch_size": 0}, "Batch size: got 0; allowed: an integer >= 1"),
    ({"batch_size": np.int64(0)}, "Batch size: got 0; allowed"),
    ({"learning_rate": np.float64(-1)}, "Learning rate: got -1.0; allowed: a finite number > 0"),
    ({"plateau_factor": 1.5}, "Plateau factor: got 1.5; allowed: a finite number > 0 and < 1"),
    ({"pooling": "max"}, "Pooling: got 'max'; allowed: 'weighted' or 'average'"),
    ({"global_clipnorm": 0}, "Gradient clip (global norm): got 0; allowed: a finite number > 0 "
                             "or none"),
    ({"model": {"filter": [4]}}, "config key 'model.filter': unknown key; allowed keys: "
                                 "filters, "),
    ({"model": {"dropout": 1.5}}, "Dropout: got 1.5; allowed: a finite number >= 0 and < 1"),
    ({"model": {"filters": [4, 0]}}, "Channels per TCN block: got [4, 0]; allowed: a "
                                     "non-empty list of integers >= 1")])
def test_bad_settings_are_rejected_naming_their_label_and_value(overrides, text):
    with pytest.raises(ConfigError) as error:
        resolve_config("improved", **overrides)
    assert str(error.value).startswith(text) and isinstance(error.value, ValueError)


def test_network_settings_are_build_model_arguments():
    from ei_keras.config import ModelConfig
    from ei_keras.settings import settings_of

    assert {f.name for f in settings_of(ModelConfig)} <= set(
        inspect.signature(build_model).parameters)


def test_every_training_setting_has_a_train_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    existing = ("--epochs", "--batch-size", "--lr", "--weight-decay", "--clipnorm",
                "--warmup-epochs", "--plateau-factor", "--plateau-patience",
                "--early-stopping-patience", "--architecture", "--pooling", "--variance-weight",
                "--val-fraction", "--max-samples", "--seed", "--preset")
    assert not [flag for flag in (*flags_of(TrainConfig), *existing) if flag not in shown]


def test_train_flags_and_config_file_give_the_settings(tmp_path):
    saved = resolve_config("baseline", epochs=7, model=TINY).to_dict()
    path = tmp_path / "train.json"
    path.write_text(json.dumps(saved))  # e.g. the "train" section of a run's config.json
    args = build_parser().parse_args([
        "train", "--data", "x.h5", "--prefix-length", "30", "--config", str(path),
        "--lr", "0.01", "--clipnorm", "none", "--jit-compile", "false",
        "--model", '{"filters": [8, 8], "dropout": 0.2}', "--dropout", "0.1",
        "--max-samples", "50"])
    settings = settings_given(args)
    config = resolve_config(settings.pop("preset"), **settings)
    assert config == dataclasses.replace(
        resolve_config("baseline", epochs=7), learning_rate=0.01, global_clipnorm=None,
        jit_compile=False, model={**TINY, "filters": [8, 8], "dropout": 0.1}, max_samples=50)
    assert resolve_config(**config.to_dict()) == config


def test_nan_loss_ends_the_run_as_failed(tmp_path):
    data = make_prefixes()
    targets = data.targets.copy()
    targets[:, 1] = np.nan
    result = train(dataclasses.replace(data, targets=targets), 30.0, out_dir=tmp_path,
                   epochs=3, verbose=0, **FAST)
    assert result.status == "failed" and result.final_path is None
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "failed"


def test_cli_errors_are_one_line(tmp_path, tiny_h5, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["train", "--data", str(tiny_h5), "--prefix-length", "10", "--config",
                 str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["train", "--data", str(tiny_h5), "--prefix-length", "30",
                 "--out", str(tmp_path / "r")]) == 2
    assert "no prefix of length" in capsys.readouterr().err


@pytest.mark.backend
def test_cli_training_stops_cleanly_on_the_stop_file(tmp_path, tiny_h5):
    """The dashboard's path: a separate process, polled files, a stop request."""
    run = tmp_path / "run"
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"model": TINY, "batch_size": 16, "warmup_epochs": 1}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ei_keras.cli import main; sys.exit(main())",
         "train", "--data", str(tiny_h5),
         "--prefix-length", "10", "--out", str(run), "--config", str(settings),
         "--epochs", "500", "--quiet"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(read_history(run)) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    (run / "stop").touch()
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    assert stdout.splitlines()[-2].startswith("stopped:")
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped" and 2 <= status["epoch"] < 500
    assert (run / "best.keras").exists() and (run / "final.keras").exists()
    assert len(read_history(run)) == status["epoch"]


def test_custom_fit_example_runs():
    """examples/custom_fit.py: our layer, loss and callbacks in a user's own model.fit."""
    example = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "custom_fit.py")
    done = subprocess.run(
        [sys.executable, example, "--samples", "120", "--steps", "20", "--epochs", "3",
         "--warmup-epochs", "2"], env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "learning rate per epoch: 5.00e-04, 1.00e-03, 1.00e-03" in done.stdout
    assert "sum to [1.0, 1.0, 1.0]" in done.stdout
