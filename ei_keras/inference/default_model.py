"""The compact reference model shipped inside the package."""

from pathlib import Path

from ei_keras.errors import EiKerasError

_DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "default_model.keras"


def default_model_path() -> Path:
    """Path of the shipped model (30 s prefixes, improved recipe); raises if it is missing."""
    if not _DEFAULT_MODEL.is_file():
        raise EiKerasError(
            f"the shipped model is missing at {_DEFAULT_MODEL}; reinstall ei_keras or pass "
            f"--model with a .keras file from 'ei-keras train'")
    return _DEFAULT_MODEL
