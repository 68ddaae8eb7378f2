"""Several trainings at once: local processes or Dask workers, resumable, one line each.

``run_trainings(specs)`` trains every :class:`TrainingSpec` into its own run directory
(:mod:`ei_keras.training`), concurrently, and returns one :class:`RunOutcome` per spec.
Rerun with the same specs and it picks up where it stopped:

- a run directory whose run ended (finished, early-stopped, stopped) is kept as it is;
- one holding a started run (interrupted, killed, failed) is resumed after its last
  completed epoch;
- any other is trained from the start.

A run whose settings differ from its directory's, or that fails, is reported in one line
and the others go on. Every run gets its own process with one thread
(:data:`ei_keras.executors.ONE_THREAD`).
"""

import dataclasses
import json
import time
from pathlib import Path

from ei_keras import run_directory as rundir
from ei_keras.errors import EiKerasError
from ei_keras.executors import (
    ONE_THREAD,
    check_executor,
    dask_results,
    default_workers,
    process_results,
)
from ei_keras.fileio import read_json, interrupt_on_signals
from ei_keras.jobs import one_line

# status.json states of a run that has ended and is kept on a rerun.
ENDED_STATES = ("finished", "early_stopped", "stopped")


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
    """One training of :func:`run_trainings`.

    Attributes:
        name: a label, unique among the specs.
        data: dataset path (every worker must see it).
        prefix_length: seconds, or ``"any"``.
        out_dir: the run directory (every worker must see it).
        preset: the recipe.
        overrides: :class:`~ei_keras.config.TrainConfig` fields on top of the preset.
        tracking_uri: log the run to this MLflow tracking URI (:mod:`ei_keras.tracking`);
            None: the run directory only.
        experiment: the MLflow experiment.
    """

    name: str
    data: str
    prefix_length: float | str
    out_dir: str
    preset: str = "improved"
    overrides: dict = dataclasses.field(default_factory=dict)
    tracking_uri: str | None = None
    experiment: str = "ei_keras"


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """How one spec ended.

    Attributes:
        spec: the :class:`TrainingSpec`.
        action: ``"trained"``, ``"resumed"`` or ``"kept"`` (ended in an earlier call).
        result: the :class:`~ei_keras.training.TrainResult`; None when it failed.
        error: the failure in one line; None when it did not fail.
        seconds: wall time of this call's work on it.
    """

    spec: TrainingSpec
    action: str
    result: object = None
    error: str | None = None
    seconds: float = 0.0

    def line(self):
        """One line for a progress log."""
        name = self.spec.name
        if self.error is not None:
            return f"failed  {name}: {self.error}"
        history = self.result.history
        best = min((row["val_loss"] for row in history if row.get("val_loss") is not None),
                   default=float("nan"))
        took = "" if self.action == "kept" else f" in {self.seconds:.1f} s"
        return (f"{self.action:<7} {name}: {self.result.status}, {len(history)} epochs, "
                f"best val_loss {best:.4f}{took}")


def run_trainings(specs, *, executor="local", workers=None, scheduler=None, progress=True,
                  on_outcome=None):
    """Train every spec, ``workers`` at a time; kept and resumed as the module says.

    Args:
        specs: :class:`TrainingSpec` objects.
        executor: ``"local"`` (a fresh process per run on this machine) or ``"dask"``.
        workers: runs at once (default: the specs to run, at most the usable cores); with
            ``dask`` and no ``scheduler``, the worker processes of a LocalCluster.
        scheduler: with ``dask``: a scheduler address (``tcp://host:8786``) or a cluster
            object; its workers need ei_keras and the data and run directories.
        progress: print one line per run as it starts and as it ends.
        on_outcome: called with each :class:`RunOutcome` as it comes (in this process).

    Returns:
        list of :class:`RunOutcome`, in the order of ``specs``.

    Raises:
        EiKerasError: bad executor arguments, or two specs with one name or run directory.
    """
    specs = list(specs)
    for attribute in ("name", "out_dir"):
        values = [str(getattr(spec, attribute)) for spec in specs]
        if len(set(values)) < len(values):
            raise EiKerasError(f"two trainings share a {attribute}: every run needs its own")
    if workers is None:
        workers = max(1, min(len(specs), default_workers()))
    workers = check_executor(executor, scheduler, workers)
    outcomes, started = {}, {}

    def report(outcome):
        if outcome.spec.name in started and outcome.action != "kept":
            outcome = dataclasses.replace(
                outcome, seconds=time.perf_counter() - started[outcome.spec.name])
        outcomes[outcome.spec.name] = outcome
        if progress:
            print(outcome.line(), flush=True)
        if on_outcome is not None:
            on_outcome(outcome)

    def start(spec, verb="start"):
        started[spec.name] = time.perf_counter()
        if progress:
            print(f"{verb:<7} {spec.name}: {_plan(spec)}", flush=True)

    pending = []
    for spec in specs:
        try:
            kept = _ended_run(spec)
        except ValueError as error:  # other settings in its folder, or invalid ones
            report(RunOutcome(spec, "failed", error=one_line(error)))
            continue
        if kept is not None:
            report(RunOutcome(spec, "kept", kept))
        else:
            pending.append(spec)
    if pending:
        if executor == "dask":
            for spec in pending:
                start(spec, "queued")
            runs = dask_results(train_one, pending, workers, scheduler, name="ei-keras-train",
                                environ=ONE_THREAD, on_error=_lost_run)
        else:
            runs = process_results(train_one, pending, workers, environ=ONE_THREAD,
                                   on_start=start, on_error=_lost_run)
        # SIGTERM to this process stops the runs too (as Ctrl-C does), rather than
        # leaving them to train on unwatched.
        with interrupt_on_signals(), runs as finished:
            for outcome in finished:
                report(outcome)
    return [outcomes[spec.name] for spec in specs]


def train_one(spec):
    """Train, resume or keep one spec's run in this process; its :class:`RunOutcome`."""
    from ei_keras.training import train

    begin = time.perf_counter()
    run_dir = Path(spec.out_dir)
    try:
        kept = _ended_run(spec)
        if kept is not None:
            return RunOutcome(spec, "kept", kept)
        resume = (run_dir / rundir.CONFIG).exists()
        if not resume:
            _forget_failed_start(run_dir)
        callbacks = []
        if spec.tracking_uri is not None:
            from ei_keras.tracking import MlflowTracker

            callbacks.append(MlflowTracker(run_dir, spec.tracking_uri, spec.experiment,
                                           run_name=spec.name))
        settings = {"epochs": _settings(spec)["epochs"]} if resume else spec.overrides
        result = train(spec.data, spec.prefix_length, None if resume else spec.preset,
                       run_dir, resume=resume, verbose=0, callbacks=callbacks, **settings)
        return RunOutcome(spec, "resumed" if resume else "trained", result,
                          seconds=time.perf_counter() - begin)
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C to this run: the others go on
        return RunOutcome(spec, "failed", error="interrupted; run again to resume it",
                          seconds=time.perf_counter() - begin)
    except Exception as error:
        return RunOutcome(spec, "failed", error=one_line(error),
                          seconds=time.perf_counter() - begin)


def _lost_run(spec, error):
    return RunOutcome(spec, "failed", error=one_line(error))


def _settings(spec):
    """The spec's resolved TrainConfig, as JSON values."""
    from ei_keras.config import resolve_config

    return json.loads(json.dumps(resolve_config(spec.preset, **spec.overrides).to_dict()))


def _ended_run(spec):
    """The TrainResult of the spec's run if it has ended with these settings, else None.

    Raises:
        EiKerasError: the directory holds a run with other settings (epochs aside).
    """
    from ei_keras.training import TrainResult

    run_dir = Path(spec.out_dir)
    if not (run_dir / rundir.CONFIG).exists():
        return None
    saved = rundir.read_config(run_dir)["train"]
    wanted = _settings(spec)
    differ = sorted(key for key in set(saved) | set(wanted)
                    if key != "epochs" and saved.get(key) != wanted.get(key))
    if differ:
        raise EiKerasError(f"{run_dir} holds a run with other settings ({', '.join(differ)}); "
                           f"remove it to train it anew, or give its settings")
    status = _read_status(run_dir)
    state = status.get("state")
    more_epochs = state == "finished" and wanted["epochs"] > saved["epochs"]
    if state not in ENDED_STATES or more_epochs:
        return None
    final = run_dir / "final.keras"
    return TrainResult(run_dir, state, run_dir / "best.keras",
                       final if final.exists() else None, rundir.read_history(run_dir))


def _read_status(run_dir):
    try:
        status = read_json(run_dir / rundir.STATUS, "the run's status")
    except EiKerasError:
        return {}
    return status if isinstance(status, dict) else {}


def _forget_failed_start(run_dir):
    """A run that failed before training left only status.json: train it anew."""
    if _read_status(run_dir).get("state") == "failed":
        (run_dir / rundir.STATUS).unlink(missing_ok=True)


def _plan(spec):
    run_dir = Path(spec.out_dir)
    if not (run_dir / rundir.CONFIG).exists():
        return "new run"
    try:
        epoch = read_json(run_dir / rundir.CHECKPOINT, "the run's checkpoint").get("epoch")
    except (EiKerasError, AttributeError):
        epoch = None
    return f"resuming after epoch {epoch}" if epoch else "resuming from the start"
