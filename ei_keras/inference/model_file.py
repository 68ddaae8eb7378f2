"""Check a ``.keras`` file before Keras reads any of it.

A ``.keras`` file is a zip archive: ``metadata.json``, ``config.json`` (the model's
architecture) and ``model.weights.h5``. Keras reads ``config.json`` whole into memory and
parses it, so a 2 MB file holding a 2 GB (highly compressible) ``config.json`` costs
gigabytes before safe mode gets to refuse anything. :func:`check_model_archive` reads
only the zip directory and refuses entries larger than any real model needs: the
shipped model has a 19 kB config and 0.8 MB of weights (saved without its optimizer); the
full-size architecture about 6 MB of weights and optimizer state.

Safe mode (``keras.saving.load_model(..., safe_mode=True)``) still guards what the
config may *do* (no Lambda layers, no pickled code); this guards how big it may be.
"""

import zipfile
from pathlib import Path

from ei_keras.errors import EiKerasError

MB = 1024 * 1024
# Upper bounds on the uncompressed entries of a model archive.
MAX_CONFIG_MB = 16       # config.json: the architecture (ours: ~13 kB)
MAX_METADATA_MB = 1      # metadata.json: Keras version and date (ours: 64 bytes)
MAX_ARCHIVE_MB = 256     # everything together; also the dashboard's upload limit
MAX_ENTRIES = 10_000
REQUIRED_ENTRIES = ("config.json",)


def check_model_archive(path):
    """Refuse a ``.keras`` file that is not a zip archive or whose entries are too large.

    Only the zip's central directory is read (a few kB), never the entries themselves.

    Args:
        path: the ``.keras`` file.

    Returns:
        dict of entry name → uncompressed size in bytes.

    Raises:
        EiKerasError: not a file, not a zip archive (truncated or corrupt), no
            ``config.json`` inside, or entries above ``MAX_CONFIG_MB``,
            ``MAX_METADATA_MB``, ``MAX_ARCHIVE_MB`` in total or ``MAX_ENTRIES`` in number.
    """
    path = Path(path)
    if not path.is_file():
        raise EiKerasError(f"no model file at {path}; give the path of a .keras file")
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {info.filename: info.file_size for info in archive.infolist()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError):
        raise EiKerasError(
            f"{path} is not a .keras archive (truncated or corrupt); give a file saved by "
            f"ei-keras train or keras.Model.save") from None
    except OSError as error:
        raise EiKerasError(f"cannot read {path} ({error.strerror or error})") from None
    missing = [name for name in REQUIRED_ENTRIES if name not in sizes]
    if missing:
        raise EiKerasError(f"{path} is not a .keras archive (no {missing[0]} inside)")
    limits = {"config.json": MAX_CONFIG_MB, "metadata.json": MAX_METADATA_MB}
    for name, limit in limits.items():
        if sizes.get(name, 0) > limit * MB:
            raise EiKerasError(
                f"{path}: its {name} is {sizes[name] / MB:,.0f} MB uncompressed, over the "
                f"{limit} MB a model needs; refusing to read it (corrupt or not a model)")
    total = sum(sizes.values())
    if total > MAX_ARCHIVE_MB * MB or len(sizes) > MAX_ENTRIES:
        raise EiKerasError(
            f"{path}: holds {len(sizes)} entries, {total / MB:,.0f} MB uncompressed, over "
            f"the {MAX_ARCHIVE_MB} MB / {MAX_ENTRIES} entries a model needs; refusing to "
            f"read it")
    return sizes
