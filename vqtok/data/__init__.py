"""Data sets by name (``create_dataset("fashion_mnist", "train")``) and the sampler the trainer uses."""

from ._registry import create_dataset as create_dataset
from ._registry import list_datasets as list_datasets
from ._registry import register_dataset as register_dataset
from .audio import AudioSegmentDataset as AudioSegmentDataset
from .images import ImageTensorDataset as ImageTensorDataset
from .images import read_idx as read_idx
from .photos import ImageFolderDataset as ImageFolderDataset
from .sampler import StepBatchSampler as StepBatchSampler
from .timeseries import TimeSeriesDataset as TimeSeriesDataset

__all__ = [
    "AudioSegmentDataset",
    "ImageFolderDataset",
    "ImageTensorDataset",
    "StepBatchSampler",
    "TimeSeriesDataset",
    "create_dataset",
    "list_datasets",
    "read_idx",
    "register_dataset",
]
