"""Train one tiny dataset on 1 and on 2 devices under jax; print the histories as JSON.

Run as ``KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 python
tests/device_runs.py DATA.h5 OUT_DIR [EPOCHS]``: jax reads both variables when it is first
imported, so the two host devices exist only in a fresh process.
"""

import json
import sys
from pathlib import Path

from ei_keras.devices import check_batch_size, data_parallel
from ei_keras.errors import EiKerasError
from ei_keras.training import train

RUN = {"batch_size": 16, "warmup_epochs": 0, "seed": 3, "val_fraction": 0.2,
       "model": {"filters": [8, 8, 8], "known_units": [8], "head_units": [16]}}


def error_of(call):
    try:
        call()
    except EiKerasError as error:
        return str(error)
    return None


def main(data, out, epochs):
    runs = {devices: train(data, 30, "improved", Path(out) / f"devices{devices}",
                           devices=devices, epochs=epochs, verbose=0, **RUN).history
            for devices in (1, 2)}
    print(json.dumps({
        "history": {str(devices): history for devices, history in runs.items()},
        "all_devices": data_parallel("all").num_model_replicas,
        "too_many": error_of(lambda: data_parallel(3)),
        "uneven_batch": error_of(lambda: check_batch_size(15, data_parallel(2))),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)
