"""Training batches read from a dataset file as they are needed, so memory stays flat.

A dataset larger than memory (a single file, or the ``dataset.h5`` of a sharded one)
trains through :class:`StreamedBatches`, a ``keras.utils.PyDataset`` that holds one
*window* of rows at a time:

- The file is read in blocks of ``BLOCK_ROWS`` rows, the generation chunk: HDF5 chunks
  and shard files hold whole blocks, so every read is a run of whole chunks of one file.
- Training (``shuffle=True``): each epoch visits the blocks in a new random order; the
  rows of ``SHUFFLE_BUFFER_ROWS`` consecutive rows of that order (a window, a whole
  number of batches) are shuffled together. Validation keeps file order.
- Any-format traces (NaN-padded) are sorted by length within each window and every batch
  is trimmed to its longest trace, as :class:`ei_keras.data.batches.LengthBatches` does
  for in-memory data; validation windows are ``SORT_WINDOW_BATCHES`` batches, so its
  batches are exactly those of ``LengthBatches(shuffle=False)``.

What grows with the dataset is only an index: 8 bytes per row for the epoch's order (and
4 per row for the any-format lengths), against 0.8 kB (100 readings) to 9.6 kB (1201
readings) per row of traces.

The model's normalisation comes from :func:`normalization_sample`, at most
``NORMALIZATION_ROWS`` training rows in whole blocks; the any-format training domain from
:func:`scan_domain`, one pass over the rows.
"""

import json
import math
import types

import h5py
import keras
import numpy as np

from ei_keras.data.batches import (
    SORT_WINDOW_BATCHES,
    padded_width,
    second_of_another_width,
)
from ei_keras.data.generate import _CHUNK_SIZE
from ei_keras.data.load import _names, any_format_group, open_dataset, prefix_group
from ei_keras.inference.domain import training_domain

# Rows per read: the generation chunk, which HDF5 chunks and shard files divide.
BLOCK_ROWS = _CHUNK_SIZE
# Training rows shuffled together (rounded to whole batches): the rows of about 16
# blocks, 13 MB of 100-reading traces, 160 MB of 1201-reading ones.
SHUFFLE_BUFFER_ROWS = 16_384
# Training rows the normalisation statistics are fitted on (every row when fewer).
NORMALIZATION_ROWS = 20_000


class RowSource:
    """The rows of one prefix group, or of the any-format group, of a dataset file.

    The file (and, for a sharded dataset, its manifest and shards) is checked once here;
    every read opens it anew, so nothing stays open between windows.

    Args:
        path: a dataset file or a sharded dataset's ``dataset.h5``.
        prefix_length: seconds of a prefix group, or None for the any-format traces.

    Raises:
        EiKerasError: the file is missing, corrupt, or has no such group.
    """

    def __init__(self, path, prefix_length):
        self.path = path
        with open_dataset(path) as handle:
            if prefix_length is None:
                group = any_format_group(handle, path)
                self.lengths = group["length"][...]
                self.times = None
            else:
                group = prefix_group(handle, path, prefix_length)
                self.lengths = None
                self.times = group["t"][...].astype(np.float32)
            self.group = group.name
            self.n_samples, self.n_points = group["pH"].shape
            self.known_names = _names(handle["known"])
            self.target_names = _names(handle["targets"])
            self.config = json.loads(handle.attrs["config"])

    def read(self, start, stop):
        """Rows ``[start, stop)``: dict of ``t``, ``pH`` (float32), ``known``, ``targets``."""
        with h5py.File(self.path, "r") as handle:
            return self._read(handle, start, stop)

    def _read(self, handle, start, stop):
        group = handle[self.group]
        pH = group["pH"][start:stop].astype(np.float32, copy=False)
        if self.times is None:
            t = group["t"][start:stop]
        else:
            t = np.broadcast_to(self.times, pH.shape)
        return {"t": t, "pH": pH, "known": handle["known"][start:stop],
                "targets": handle["targets"][start:stop]}

    def rows(self, index):
        """The rows ``index`` (ascending), read block by block: a dict as :meth:`read`."""
        index = np.asarray(index, dtype=np.int64)
        parts = []
        with h5py.File(self.path, "r") as handle:
            for block, (low, high) in _block_spans(index):
                start = block * BLOCK_ROWS
                arrays = self._read(handle, start, min(start + BLOCK_ROWS, self.n_samples))
                keep = index[low:high] - start
                parts.append({name: values[keep] for name, values in arrays.items()})
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _block_spans(index):
    """``(block, (low, high))`` for every block holding rows of the ascending ``index``:
    ``index[low:high]`` are its rows."""
    blocks = np.unique(index // BLOCK_ROWS)
    bounds = np.searchsorted(index, np.append(blocks, blocks[-1] + 1) * BLOCK_ROWS)
    return [(int(block), (int(bounds[i]), int(bounds[i + 1])))
            for i, block in enumerate(blocks)]


def normalization_sample(source, train_index, seed, limit=NORMALIZATION_ROWS):
    """At most ``limit`` training rows for the normalisation statistics.

    All training rows when there are no more than ``limit`` (then the statistics equal
    those of in-memory training); otherwise whole blocks drawn at random (seeded by
    ``seed``) until ``limit`` rows: each block's rows are independent draws from the
    prior, so a block is as good a sample as scattered rows and costs one read.

    Returns:
        dict of ``t``, ``pH``, ``known``, ``targets`` (rows in file order).
    """
    train_index = np.sort(np.asarray(train_index, dtype=np.int64))
    if len(train_index) > limit:
        spans = dict(_block_spans(train_index))
        rows, count = [], 0
        for block in np.random.default_rng(seed).permutation(list(spans)):
            low, high = spans[int(block)]
            rows.append(train_index[low:high])
            count += high - low
            if count >= limit:
                break
        train_index = np.sort(np.concatenate(rows)[:limit])
    return source.rows(train_index)


def scan_domain(source, n_samples):
    """The training domain (:func:`ei_keras.inference.domain.training_domain`) of rows
    ``[0, n_samples)``: one block for a fixed prefix (every row has the same times),
    otherwise every block, their ranges merged."""
    stop = n_samples if source.lengths is not None else min(n_samples, BLOCK_ROWS)
    domain = None
    for start in range(0, stop, BLOCK_ROWS):
        arrays = source.read(start, min(start + BLOCK_ROWS, stop))
        part = training_domain(types.SimpleNamespace(config=source.config, t=arrays["t"],
                                                     pH=arrays["pH"]))
        if domain is None:
            domain = part
            continue
        for key in ("prefix_length_s", "reading_interval_s", "readings"):
            domain[key] = [min(domain[key][0], part[key][0]), max(domain[key][1], part[key][1])]
    return domain


class StreamedBatches(keras.utils.PyDataset):
    """Batches ``({"pH", "t", "known"}, {"posterior": y})`` of rows of a :class:`RowSource`.

    Train with ``model.fit(..., shuffle=False)``: the batches already come in their
    shuffled order, and one window at a time is held in memory.

    Args:
        source: the :class:`RowSource` to read.
        index: the rows to batch (e.g. the training split).
        encode: physical targets ``(n, p)`` → the model's encoded targets.
        batch_size: rows per batch.
        shuffle: a new block and row order each epoch (training); False keeps file order.
        seed: seed of the order; epoch ``e`` draws from ``(seed, e)``.
        epoch: the epoch the first order is for (a resumed run's next epoch).
        buffer_rows: rows shuffled together (rounded up to whole batches).
        **kwargs: ``PyDataset`` arguments.
    """

    def __init__(self, source, index, encode, batch_size, *, shuffle=True, seed=0, epoch=0,
                 buffer_rows=SHUFFLE_BUFFER_ROWS, **kwargs):
        super().__init__(**kwargs)
        self.source, self.encode = source, encode
        self.index = np.sort(np.asarray(index, dtype=np.int64))
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, seed
        self.epoch = epoch
        window_batches = (math.ceil(buffer_rows / self.batch_size) if shuffle
                          else SORT_WINDOW_BATCHES)
        self.window_rows = window_batches * self.batch_size
        self._window, self._window_arrays = None, None
        self._order = self._plan()

    def _plan(self):
        """Rows in batch order: batch ``i`` is ``order[i * batch_size:(i + 1) * batch_size]``."""
        if self.shuffle:
            rng = np.random.default_rng((self.seed, self.epoch))
            blocks = self.index // BLOCK_ROWS
            unique = np.unique(blocks)
            rank = np.empty(unique.max(initial=0) + 1, dtype=np.int64)
            rank[unique] = rng.permutation(len(unique))
            order = self.index[np.argsort(rank[blocks], kind="stable")]
        else:
            rng, order = None, self.index
        windows = []
        for start in range(0, len(order), self.window_rows):
            window = order[start:start + self.window_rows]
            if rng is not None:
                window = rng.permutation(window)
            if self.source.lengths is not None:
                window = window[np.argsort(self.source.lengths[window], kind="stable")]
                if rng is not None:
                    batches = [window[i:i + self.batch_size]
                               for i in range(0, len(window), self.batch_size)]
                    window = np.concatenate([batches[i] for i in rng.permutation(len(batches))])
            windows.append(window)
        order = np.concatenate(windows) if windows else order
        return self._second_of_another_width(order) if self.source.lengths is not None else order

    def _second_of_another_width(self, order):
        """``order`` with its whole batches reordered by :func:`second_of_another_width`."""
        full = len(order) // self.batch_size
        batches = np.reshape(order[:full * self.batch_size], (full, self.batch_size))
        widths = [padded_width(self.source.lengths[rows], self.source.n_points)
                  for rows in batches]
        return np.concatenate([batches[second_of_another_width(widths)].ravel(),
                               order[full * self.batch_size:]])

    def __len__(self):
        return math.ceil(len(self.index) / self.batch_size)

    def _load(self, window):
        """Hold the rows of ``window`` (in batch order), targets encoded."""
        rows = self._order[window * self.window_rows:(window + 1) * self.window_rows]
        ascending = np.sort(rows)
        arrays = self.source.rows(ascending)
        where = np.searchsorted(ascending, rows)
        self._window_arrays = {
            "t": np.asarray(arrays["t"][where], np.float32),
            "pH": arrays["pH"][where],
            "known": np.asarray(arrays["known"][where], np.float32),
            "y": self.encode(arrays["targets"][where]),
        }
        self._window = window

    def __getitem__(self, index):
        first = index * self.batch_size
        window = first // self.window_rows
        if window != self._window:
            self._load(window)
        offset = first - window * self.window_rows
        part = {name: values[offset:offset + self.batch_size]
                for name, values in self._window_arrays.items()}
        t, pH = part["t"], part["pH"]
        if self.source.lengths is not None:
            width = padded_width(np.sum(np.isfinite(pH) & np.isfinite(t), axis=1), pH.shape[1])
            t, pH = t[:, :width], pH[:, :width]
        return {"pH": pH, "t": t, "known": part["known"]}, {"posterior": part["y"]}

    def on_epoch_end(self):
        self._window, self._window_arrays = None, None
        if self.shuffle:
            self.epoch += 1
            self._order = self._plan()
