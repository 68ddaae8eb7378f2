"""Training data: simulate prefixes and trajectories into HDF5, and load them back."""

from ei_keras.data.generate import FORMAT_VERSION, generate_dataset, prefix_group_name, preview
from ei_keras.data.load import (
    PrefixData,
    TrajectoryData,
    combine_datasets,
    describe_dataset,
    load_any_format,
    load_prefix,
    load_trajectories,
)

__all__ = [
    "FORMAT_VERSION",
    "PrefixData",
    "TrajectoryData",
    "combine_datasets",
    "describe_dataset",
    "generate_dataset",
    "load_any_format",
    "load_prefix",
    "load_trajectories",
    "prefix_group_name",
    "preview",
]
