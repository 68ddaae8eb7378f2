"""Imports on first use, so ``import ei_keras.simulation`` and ``ei-keras --help`` load
neither keras nor a backend.

``lazy_attributes`` gives a package PEP 562 ``__getattr__``/``__dir__`` that import each
public name when it is first read. ``register_after_keras`` keeps the promise that a
saved ``.keras`` file loads with ``keras.saving.load_model`` after a bare
``import ei_keras``: ei_keras's Keras classes are registered as soon as keras is imported.
"""

import importlib
import importlib.abc
import importlib.util
import sys

# The modules whose classes a saved model may name (layers, loss, optimizer).
KERAS_OBJECT_MODULES = ("ei_keras.layers", "ei_keras.losses", "ei_keras.optimizers")


def lazy_attributes(package, origins, modules=()):
    """``(__getattr__, __dir__)`` for ``package``.

    ``origins`` maps each public name to the module defining it; ``modules`` names
    submodules reachable as attributes. A value is imported on first access and cached
    on the package.
    """

    def __getattr__(name):
        if name in modules:
            value = importlib.import_module(f"{package}.{name}")
        elif name in origins:
            value = getattr(importlib.import_module(origins[name]), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(origins) | set(modules))

    return __getattr__, __dir__


def register_keras_objects():
    for name in KERAS_OBJECT_MODULES:
        importlib.import_module(name)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Finds keras once, through the other finders, and registers ei_keras's classes
    right after keras's own module has run."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is not None and spec.loader is not None:
            run_keras = spec.loader.exec_module

            def run_keras_then_register(module):
                run_keras(module)
                register_keras_objects()

            spec.loader.exec_module = run_keras_then_register
        return spec


def register_after_keras():
    """Register ei_keras's Keras classes now if keras is loaded, else once it is."""
    if "keras" in sys.modules:
        register_keras_objects()
    elif not any(isinstance(finder, _RegisterAfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterKeras())
