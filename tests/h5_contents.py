"""Reading whole HDF5 files back in tests, to compare them array by array."""

import h5py


def all_arrays(path):
    """Every dataset of the file as a NumPy array, by HDF5 path."""
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[...])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays
