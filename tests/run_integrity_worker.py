"""A trainer run in its own process by tests/test_run_integrity.py.

``python run_integrity_worker.py RUN_DIR PLAN MARKER``: trains a tiny model on synthetic
data into RUN_DIR; PLAN picks where it stops so that the test can kill it there:

    hang               write MARKER, then sleep in the 3rd batch of epoch KILL_EPOCH
    hang_first         write MARKER, then sleep in the 1st batch of epoch 1
    die_before_commit  SIGKILL itself at epoch KILL_EPOCH's end, after the history line
                       and the models, just before checkpoint.json
    die_after_commit   SIGKILL itself just after epoch KILL_EPOCH's checkpoint.json,
                       before the models are renamed into place
    none               train to the end

An EiKerasError is printed as one ``error:`` line on stderr with exit status 2.
"""

import os
import signal
import sys
import time

import ei_keras  # noqa: F401  (backend and thread defaults)
from ei_keras import run_directory
from ei_keras.errors import EiKerasError
from ei_keras.training import train
from synthetic_prefixes import make_prefixes

TINY = {"filters": [4, 4], "dilations": [1, 2], "pool_sizes": [1, 2], "known_units": [4],
        "head_units": [8]}
# 96 samples: 86 for training in 6 batches of 16. The plateau needs an improvement of
# 1000 × |best|, which never comes, so the learning rate depends only on the counters:
# warmup epoch 1, first plateau epoch 2 sets the best, cuts after epochs 4 and 6.
SETTINGS = {"model": TINY, "batch_size": 16, "epochs": 6, "warmup_epochs": 1,
            "plateau_patience": 2, "plateau_factor": 0.5, "plateau_min_delta": 1000.0,
            "early_stopping_patience": 50}
N_SAMPLES = 96
STEPS_PER_EPOCH = 6
EXPECTED_LEARNING_RATES = [1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4]
KILL_EPOCH = 4


def data():
    return make_prefixes(n=N_SAMPLES)


def _hang_at(epoch_index, batch_index, marker):
    original = run_directory.RunRecorder.on_train_batch_end

    def hang(self, batch, logs=None):
        original(self, batch, logs)
        if self._epoch_index == epoch_index and batch == batch_index:
            with open(marker, "w") as stream:
                stream.write(str(os.getpid()))
            time.sleep(600)

    run_directory.RunRecorder.on_train_batch_end = hang


def _die_around_commit(after):
    original = run_directory.write_json

    def write_json(path, payload, **kwargs):
        committing = str(path).endswith("checkpoint.json") and payload["epoch"] == KILL_EPOCH
        if committing and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        original(path, payload, **kwargs)
        if committing and after:
            os.kill(os.getpid(), signal.SIGKILL)

    run_directory.write_json = write_json


def main(run_dir, plan, marker):
    if plan == "hang":
        _hang_at(KILL_EPOCH - 1, 2, marker)
    elif plan == "hang_first":
        _hang_at(0, 0, marker)
    elif plan in ("die_before_commit", "die_after_commit"):
        _die_around_commit(after=plan == "die_after_commit")
    try:
        train(data(), 30.0, "improved", run_dir, verbose=0, **SETTINGS)
    except EiKerasError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
