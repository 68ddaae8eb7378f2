"""Backend-agnostic Keras 3 layers of the ei_keras network (``keras.ops`` only).

Every class is registered under the package name ``ei_keras`` when this module is
imported, so saved models load with ``keras.saving.load_model`` after ``import ei_keras``.
"""

from ei_keras.layers.average_temporal_pooling import AverageTemporalPooling
from ei_keras.layers.gaussian_posterior import GaussianPosterior
from ei_keras.layers.prefix_features import PrefixFeatures
from ei_keras.layers.reading_attention import ReadingAttention
from ei_keras.layers.standardize import Standardize
from ei_keras.layers.tcn import TCNBlock, TCNEncoder
from ei_keras.layers.trace_bins import BinnedReadingAttention, TraceBins, TraceFormat
from ei_keras.layers.weighted_temporal_pooling import WeightedTemporalPooling

__all__ = [
    "AverageTemporalPooling",
    "BinnedReadingAttention",
    "GaussianPosterior",
    "PrefixFeatures",
    "ReadingAttention",
    "Standardize",
    "TCNBlock",
    "TCNEncoder",
    "TraceBins",
    "TraceFormat",
    "WeightedTemporalPooling",
]
