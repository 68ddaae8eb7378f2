"""The dashboard's workspace folder (``$EI_KERAS_WORKSPACE``, default ``./workspace``)::

    datasets/<name>.h5          datasets (``ei-keras generate``)
    jobs/<id>/                  one generation job: config.json, launch.json, log.txt,
                                status.json (``ei_keras.jobs``)
    runs/<id>/                  one training run (``ei_keras.training``) plus launch.json
                                and train.log
    comparisons/<id>/           one ``ei-keras compare`` output plus launch.json, compare.log
    uploads/<sha>.keras|.csv    uploaded models and traces, by content hash
"""

import hashlib
import os
import re
import secrets
import time
from pathlib import Path

from ei_keras.errors import EiKerasError
from ei_keras.inference.default_model import default_model_path
from ei_keras.inference.model_file import MAX_ARCHIVE_MB, check_model_archive

WORKSPACE_ENV = "EI_KERAS_WORKSPACE"
# Uploads (models and CSV traces): the bound check_model_archive puts on a model's
# entries, so no upload the loader would refuse for its size is accepted.
MAX_UPLOAD_MB = MAX_ARCHIVE_MB


def workspace() -> Path:
    """The workspace folder, created."""
    root = Path(os.environ.get(WORKSPACE_ENV) or "workspace").expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def folder(name) -> Path:
    """A workspace subfolder (``datasets``, ``jobs``, ``runs``, ``comparisons``,
    ``uploads``), created."""
    path = workspace() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def unique_dir(parent: Path, stem: str) -> Path:
    """A new directory ``parent/<time>-<stem>-<random>``; never one that existed."""
    while True:
        path = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}-{secrets.token_hex(3)}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue


def mtime(path) -> float:
    """A file's modification time (0 if it is missing): the version key of caches."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def clean_name(name) -> tuple[str | None, str | None]:
    """A safe file stem from a user's dataset name, or ``(None, message)``."""
    stem = str(name).strip()
    stem = stem[:-3] if stem.lower().endswith(".h5") else stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", stem or ""):
        return None, ("dataset name: use 1–64 letters, digits, '_', '-' or '.', starting with "
                      f"a letter or digit; got {name!r}")
    return stem, None


def _store_upload(data: bytes, filename: str, suffix: str) -> Path:
    if len(data) > MAX_UPLOAD_MB * 1024 * 1024:
        raise EiKerasError(f"{filename} is {len(data) / 1e6:.0f} MB; the limit is "
                           f"{MAX_UPLOAD_MB} MB")
    return folder("uploads") / f"{hashlib.sha256(data).hexdigest()[:20]}{suffix}"


def save_model_upload(data: bytes, filename: str) -> Path:
    """Store an uploaded ``.keras`` file under its content hash; check size and type."""
    if not str(filename).lower().endswith(".keras"):
        raise EiKerasError(f"{filename}: upload a Keras model file ending in .keras")
    path = _store_upload(data, filename, ".keras")
    if not data.startswith(b"PK"):
        raise EiKerasError(f"{filename} is not a .keras file (a .keras file is a zip archive)")
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}.tmp")
        tmp.write_bytes(data)
        try:  # the zip directory only: entry sizes and structure, nothing decompressed
            check_model_archive(tmp)
        except EiKerasError as error:
            tmp.unlink(missing_ok=True)
            raise EiKerasError(str(error).replace(str(tmp), str(filename))) from None
        os.replace(tmp, path)
    return path


def save_csv_upload(data: bytes, filename: str) -> Path:
    """Store an uploaded CSV trace under its content hash (size checked)."""
    path = _store_upload(data, filename, ".csv")
    path.write_bytes(data)
    return path


def default_model() -> Path | None:
    """The shipped model's path, or None when this installation has none."""
    try:
        path = Path(default_model_path())
    except (EiKerasError, OSError):
        return None
    return path if path.is_file() else None
