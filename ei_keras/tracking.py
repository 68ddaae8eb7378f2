"""Optional MLflow tracking of a training run, as a Keras callback.

:class:`MlflowTracker` (``train(..., callbacks=[MlflowTracker(run_dir)])``, or
``ei-keras train/compare --track mlflow``) logs to an MLflow run: the run's settings as
params (the resolved TrainConfig, data path, prefix length, readings per trace, sample
counts, backend), ``loss``, ``val_loss`` and ``learning_rate`` once per epoch (step = the
epoch, from 1) and, at the end, ``best.keras`` and ``config.json`` as artifacts. The run
directory stays the record; MLflow is a copy to browse and compare.

A resumed run goes on logging into the same MLflow run: its id is kept in
``RUN_DIR/mlflow_run.json``. Needs ``pip install 'ei_keras[mlflow]'`` (mlflow-skinny);
nothing imports this module unless tracking is asked for.
"""

import math
import os
import time
from pathlib import Path

import keras

from ei_keras import run_directory as rundir
from ei_keras.errors import EiKerasError
from ei_keras.fileio import read_json, write_json

TRACKERS = ("mlflow",)
RUN_RECORD = "mlflow_run.json"
METRICS = ("loss", "val_loss", "learning_rate")


def import_mlflow():
    """The ``mlflow`` module; a one-line EiKerasError saying how to install it."""
    try:
        import mlflow
    except ImportError:
        raise EiKerasError("MLflow tracking needs MLflow: pip install 'ei_keras[mlflow]' "
                           "(or pip install mlflow-skinny)") from None
    return mlflow


def resolve_tracking_uri(tracking_uri, folder):
    """``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else ``folder/mlruns`` (a file URI).

    A local folder is MLflow's file store, which MLflow 3 runs only when
    ``MLFLOW_ALLOW_FILE_STORE`` is set (its sqlite default needs the full ``mlflow``
    package); it is set here, in this process, for such a URI.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri = (Path(folder) / "mlruns").resolve().as_uri()
    elif "://" not in uri and not uri.startswith("file:"):
        uri = Path(uri).resolve().as_uri()
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


class MlflowTracker(keras.callbacks.Callback):
    """Logs a training run to MLflow (see the module).

    Args:
        run_dir: the run directory that :func:`ei_keras.training.train` writes.
        tracking_uri: MLflow tracking URI (default: as :func:`resolve_tracking_uri`, an
            ``mlruns`` folder beside ``run_dir``).
        experiment: the MLflow experiment (created when missing).
        run_name: the MLflow run name (default: the run directory's name).

    Raises:
        EiKerasError: MLflow is not installed, or the tracking URI cannot be used.
    """

    def __init__(self, run_dir, tracking_uri=None, experiment="ei_keras", run_name=None):
        super().__init__()
        mlflow = import_mlflow()
        self.run_dir = Path(run_dir)
        self.tracking_uri = resolve_tracking_uri(tracking_uri, self.run_dir.parent)
        self.experiment = experiment
        self.run_name = run_name or self.run_dir.name
        self.run_id = None
        self._entities = mlflow.entities
        self._failed = False
        try:
            self.client = mlflow.MlflowClient(self.tracking_uri)
        except Exception as error:
            raise EiKerasError(f"MLflow tracking URI {self.tracking_uri}: "
                               f"{(str(error).splitlines() or [''])[0]}") from None

    def on_train_begin(self, logs=None):
        record_path = self.run_dir / RUN_RECORD
        if record_path.exists():
            record = read_json(record_path, "the run's MLflow record")
            if record.get("tracking_uri") == self.tracking_uri:
                self.run_id = record["run_id"]
                self.client.update_run(self.run_id, status="RUNNING")
                return
        experiment = self.client.get_experiment_by_name(self.experiment)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(self.experiment))
        run = self.client.create_run(experiment_id, run_name=self.run_name, tags={
            "ei_keras.run_dir": str(self.run_dir.resolve())})
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[
            self._entities.Param(key, str(value)) for key, value in self._params().items()])
        write_json(record_path, {"tracking_uri": self.tracking_uri, "run_id": self.run_id,
                                 "experiment": self.experiment})

    def _params(self):
        saved = rundir.read_config(self.run_dir)
        data = saved["data"]
        params = dict(saved["train"])
        params.update({f"data.{key}": data.get(key) for key in (
            "path", "prefix_length", "n_points", "n_train", "n_val")})
        params["backend"] = saved.get("environment", {}).get("backend")
        return params

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if "learning_rate" not in logs:
            logs["learning_rate"] = keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate)
        stamp = int(time.time() * 1000)
        metrics = []
        for key in METRICS:
            if logs.get(key) is None:
                continue
            value = float(logs[key])
            self._failed |= not math.isfinite(value)
            metrics.append(self._entities.Metric(key, value, stamp, epoch + 1))
        self.client.log_batch(self.run_id, metrics=metrics)

    def on_train_end(self, logs=None):
        for name in ("best.keras", rundir.CONFIG):
            if (self.run_dir / name).exists():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        self.client.set_terminated(self.run_id, "FAILED" if self._failed else "FINISHED")
