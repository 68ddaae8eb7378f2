"""The devices training runs on: one (Keras's own placement) or data parallel over N.

``devices=1`` leaves placement to Keras: jax uses its default device, torch the first GPU
when there is one (``cuda:0``), else the CPU.

``devices=N`` or ``"all"`` needs the jax backend: Keras 3's distribution API
(``keras.distribution``: ``list_devices``, ``DeviceMesh``, ``DataParallel``) is implemented
for jax only (its tensorflow implementation is a prototype marked "do not use"; torch has
none). Each batch is split evenly over the devices, the weights are replicated, and the
gradients are those of the whole batch, so a run computes what a one-device run computes
up to the order of floating-point sums. The training and validation rows are each cut to
a multiple of the device count (at most count − 1 rows less), so that the last batch
splits evenly too.

With torch and several GPUs: run one training per GPU (``CUDA_VISIBLE_DEVICES=i ei-keras
train ...``, e.g. other seeds or presets), or train this model under
``KERAS_BACKEND=jax``.
"""

import keras

from ei_keras.errors import EiKerasError

ALL = "all"


def data_parallel(devices):
    """The ``keras.distribution.DataParallel`` for ``devices``, or None for one device.

    Args:
        devices: an int >= 1, or ``"all"`` (every device jax sees: its GPUs or TPUs if
            any, else its CPUs).

    Raises:
        EiKerasError: an invalid value, more devices than there are, or several devices
            on a backend Keras cannot distribute.
    """
    if devices != ALL and (isinstance(devices, bool) or not isinstance(devices, int)
                           or devices < 1):
        raise EiKerasError(f"devices: got {devices!r}; allowed: an integer >= 1 or 'all'")
    if devices == 1:
        return None
    backend = keras.backend.backend()
    if backend != "jax":
        raise EiKerasError(
            f"devices={devices!r} needs the jax backend: Keras 3 distributes training "
            f"(keras.distribution.DataParallel) only under jax, not {backend}. Run with "
            "KERAS_BACKEND=jax, or train on one device (--devices 1; torch picks a GPU by "
            "itself) and run one training per GPU")
    available = keras.distribution.list_devices()
    if devices == ALL:
        devices = len(available)
    if devices > len(available):
        raise EiKerasError(
            f"devices={devices}: jax sees {len(available)} device(s) "
            f"({', '.join(available)}); ask for at most {len(available)}")
    if devices == 1:
        return None
    return keras.distribution.DataParallel(devices=available[:devices])


def shareable_rows(index, distribution):
    """``index`` less its last rows beyond a multiple of the device count (at most
    count − 1), so that the last, partial batch splits evenly too."""
    if distribution is None:
        return index
    return index[:len(index) - len(index) % distribution.num_model_replicas]


def check_batch_size(batch_size, distribution):
    """Refuse a batch size that the devices of ``distribution`` cannot share evenly."""
    if distribution is None:
        return
    count = distribution.num_model_replicas
    if batch_size % count:
        raise EiKerasError(
            f"batch_size {batch_size} cannot be split over {count} devices; use a multiple "
            f"of {count} (e.g. --batch-size {batch_size - batch_size % count or count})")
