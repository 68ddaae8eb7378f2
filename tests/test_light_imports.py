"""Light imports: the simulator, data generation and ``ei-keras --help`` load neither
keras nor a backend; the lazy names and the keras class registration still work."""

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("keras", "torch", "jax", "tensorflow")


def run_fresh(code):
    """Run ``code`` in a fresh interpreter; return the JSON it prints last."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def loaded_heavy_modules(code):
    return run_fresh(textwrap.dedent(code) + f"\nimport json, sys\nprint(json.dumps("
                     f"[m for m in {HEAVY!r} if m in sys.modules]))")


@pytest.mark.parametrize("module", ["ei_keras.simulation", "ei_keras.data", "ei_keras.config",
                                    "ei_keras.inference.least_squares"])
def test_numpy_modules_load_no_keras(module):
    assert loaded_heavy_modules(f"import {module}") == []


def test_generating_and_loading_a_dataset_loads_no_keras(tmp_path):
    assert loaded_heavy_modules(f"""
        import ei_keras
        path = ei_keras.generate_dataset({{"n_samples": 20, "prefix_lengths": [10], "seed": 1}},
                                         {str(tmp_path / "tiny.h5")!r}, workers=1, progress=False)
        assert ei_keras.load_prefix(path, 10).pH.shape == (20, 100)
    """) == []


def test_cli_help_loads_no_keras():
    assert loaded_heavy_modules("""
        import contextlib, io
        from ei_keras.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main(["--help"])
    """) == []


def test_lazy_names_resolve():
    import ei_keras
    from ei_keras import infer, train  # noqa: F401

    assert set(ei_keras.__all__) <= set(dir(ei_keras))
    for name in ei_keras.__all__:
        assert getattr(ei_keras, name) is not None
    assert ei_keras.models.build_model is ei_keras.build_model
    with pytest.raises(AttributeError, match="no_such_name"):
        ei_keras.no_such_name  # noqa: B018


@pytest.mark.parametrize("first_import", ["import ei_keras; import keras",
                                          "import keras; import ei_keras",
                                          "import ei_keras.losses; import keras"])
def test_saved_model_loads_after_bare_import(first_import):
    """keras's own loader finds ei_keras's classes whichever of the two came first."""
    modules = run_fresh(f"""
        {first_import}
        import json
        model = keras.saving.load_model(ei_keras.default_model_path(), compile=False)
        print(json.dumps(sorted(set(type(layer).__module__ for layer in model.layers))))
    """)
    assert "ei_keras.layers.trace_bins" in modules
