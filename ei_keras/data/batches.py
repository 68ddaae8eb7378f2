"""Mini-batches of NaN-padded traces that group similar lengths (``keras.utils.PyDataset``).

Traces of 3 and 1200 readings in one batch would pad the short ones to 1200; sorting
each shuffled window of batches by length and trimming every batch to its longest trace
keeps padding small while the order still changes every epoch.
"""

import math

import keras
import numpy as np

# Batches sorted together; larger windows pad less but shuffle less.
SORT_WINDOW_BATCHES = 32
# Batch widths are rounded up to a multiple of this, so a compiling backend (jax) sees
# few distinct shapes.
WIDTH_QUANTUM = 32


def padded_width(lengths, max_width):
    """Columns a batch of traces of these ``lengths`` is trimmed to: the longest, rounded
    up to a multiple of ``WIDTH_QUANTUM``, at most ``max_width``."""
    width = max(int(np.max(lengths)), 1)
    return min(max_width, math.ceil(width / WIDTH_QUANTUM) * WIDTH_QUANTUM)


def second_of_another_width(widths):
    """Batch indices reordered so that the second batch differs in width from the first
    (when any batch does).

    Keras's tensorflow adapter fixes every dimension its first two batches share, so two
    batches of one width first would make a later, narrower batch fail.
    """
    order = list(range(len(widths)))
    other = next((i for i in order[1:] if widths[i] != widths[0]), None)
    if other is not None:
        order[1], order[other] = order[other], order[1]
    return order


class LengthBatches(keras.utils.PyDataset):
    """Batches ``({"pH", "t", "known"}, {"posterior": y})`` of similar-length traces.

    Args:
        t: reading times ``(n, W)``, NaN after each trace's last reading.
        pH: readings ``(n, W)``, NaN-padded alike.
        known: known inputs ``(n, k)``.
        y: encoded targets ``(n, p)``.
        batch_size: traces per batch.
        shuffle: draw a new order each epoch (training); False keeps a fixed order.
        seed: seed of the shuffling.
        **kwargs: ``PyDataset`` arguments (workers, ...).
    """

    def __init__(self, t, pH, known, y, batch_size, *, shuffle=True, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.t, self.pH = np.asarray(t, np.float32), np.asarray(pH, np.float32)
        self.known, self.y = np.asarray(known, np.float32), np.asarray(y, np.float32)
        self.lengths = np.sum(np.isfinite(self.pH) & np.isfinite(self.t), axis=1)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._batches = self._plan()

    def _plan(self):
        n = len(self.lengths)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        window = self.batch_size * SORT_WINDOW_BATCHES
        chunks = []
        for start in range(0, n, window):
            part = order[start:start + window]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            chunks += [part[i:i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        if self.shuffle:
            chunks = [chunks[i] for i in self._rng.permutation(len(chunks))]
        return [chunks[i] for i in second_of_another_width([self._width(c) for c in chunks])]

    def __len__(self):
        return len(self._batches)

    def _width(self, rows):
        return padded_width(self.lengths[rows], self.pH.shape[1])

    def __getitem__(self, index):
        rows = self._batches[index]
        width = self._width(rows)
        x = {"pH": self.pH[rows, :width], "t": self.t[rows, :width], "known": self.known[rows]}
        return x, {"posterior": self.y[rows]}

    def on_epoch_end(self):
        if self.shuffle:
            self._batches = self._plan()

    def padding_fraction(self):
        """Share of the batches' cells that are padding (for reports and tests)."""
        cells = sum(self._width(rows) * len(rows) for rows in self._batches)
        return 1.0 - float(self.lengths.sum()) / max(cells, 1)
