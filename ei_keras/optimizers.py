"""An AdamW that saves and loads under every Keras backend.

On the torch backend ``keras.optimizers.AdamW(...)`` silently becomes a torch-only class
whose module path is written into the ``.keras`` file, and such a file then fails under
jax at the first ``fit``. A registered subclass is never swapped, so its files load
everywhere; the update rule is Keras's own.
"""

import keras


@keras.saving.register_keras_serializable(package="ei_keras")
class AdamW(keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` under a backend-independent registered name.

    Takes exactly the arguments of ``keras.optimizers.AdamW`` (``learning_rate``,
    ``weight_decay``, ``epsilon``, ``global_clipnorm``, ...). Keep ``learning_rate`` a
    float: the ei_keras learning-rate callbacks write it, and a schedule cannot be written.
    """
