"""The reference model shipped inside the package: one model for every trace format."""

from pathlib import Path

from ei_keras.errors import EiKerasError

_DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "default_model.keras"


def default_model_path() -> Path:
    """Path of the shipped any-format model (binned architecture: any trace of 3 or more
    readings, 2–600 s, one reading every 0.1–10 s; all four latents); raises if missing."""
    if not _DEFAULT_MODEL.is_file():
        raise EiKerasError(
            f"the shipped model is missing at {_DEFAULT_MODEL}; reinstall ei_keras or pass "
            f"--model with a .keras file from 'ei-keras train'")
    return _DEFAULT_MODEL
