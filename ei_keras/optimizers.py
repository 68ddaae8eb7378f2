"""An AdamW that saves and loads under every Keras backend, fused where Keras offers it.

On the torch backend ``keras.optimizers.AdamW(...)`` silently becomes Keras's torch-only
class, whose module path is written into the ``.keras`` file; such a file then fails under
jax at the first ``fit``. :class:`AdamW` is registered under ``ei_keras>AdamW`` and never
swapped, so its files load everywhere. On torch it still inherits Keras's own fused update
(``torch._foreach`` over all variables at once, 1.3–1.5× faster training of the compact
model on CPU than the per-variable update); on other backends it is
``keras.optimizers.AdamW``. The update rule is the same either way.
"""

import keras


def _adamw_base():
    """Keras's fused torch AdamW on the torch backend, else the generic one."""
    if keras.backend.backend() == "torch":
        try:  # Keras's own backend implementation; no torch code lives in ei_keras.
            from keras.src.backend.torch.optimizers.torch_adamw import AdamW as fused
        except ImportError:  # a Keras without it: the generic update is correct too
            return keras.optimizers.AdamW
        return fused
    return keras.optimizers.AdamW


@keras.saving.register_keras_serializable(package="ei_keras")
class AdamW(_adamw_base()):
    """``keras.optimizers.AdamW`` under a backend-independent registered name.

    Takes exactly the arguments of ``keras.optimizers.AdamW`` (``learning_rate``,
    ``weight_decay``, ``epsilon``, ``global_clipnorm``, ...). Keep ``learning_rate`` a
    float: the ei_keras learning-rate callbacks write it, and a schedule cannot be written.

    Example:
        >>> model.compile(optimizer=AdamW(1e-3, weight_decay=1e-5, global_clipnorm=5.0),
        ...               loss=RegularizedGaussianNLL())
    """
