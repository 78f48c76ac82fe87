"""The on-disk dataset format (docs/data_format.md): every loader and the simulator write it, training
and evaluation read only it."""

from mmnar_core.dataset.manifest import (
    DatasetFormatError,
    Manifest,
    ReferenceScore,
    avail_column,
    label_column,
    reference_column,
    true_prob_column,
)
from mmnar_core.dataset.reader import Dataset, load_dataset
from mmnar_core.dataset.writer import DatasetExistsError, DatasetWriter

__all__ = [
    "Dataset",
    "DatasetExistsError",
    "DatasetFormatError",
    "DatasetWriter",
    "Manifest",
    "ReferenceScore",
    "avail_column",
    "label_column",
    "load_dataset",
    "reference_column",
    "true_prob_column",
]
