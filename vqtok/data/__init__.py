"""Data sets by name (``create_dataset("fashion_mnist", "train")``), your own data by path (``open_records``,
``ShardStream``; see docs/data.md) and the sampler the trainer uses."""

from ._registry import create_dataset as create_dataset
from ._registry import list_datasets as list_datasets
from ._registry import register_dataset as register_dataset
from .audio import AudioSegmentDataset as AudioSegmentDataset
from .images import ImageTensorDataset as ImageTensorDataset
from .images import read_idx as read_idx
from .moving_fmnist import MovingFashionMNIST as MovingFashionMNIST
from .own import OwnDataset as OwnDataset
from .own import open_records as open_records
from .sampler import StepBatchSampler as StepBatchSampler
from .shards import ShardStream as ShardStream
from .shards import expand_shards as expand_shards
from .timeseries import TimeSeriesDataset as TimeSeriesDataset
from .transforms import AudioTransform as AudioTransform
from .transforms import ImageTransform as ImageTransform

__all__ = [
    "AudioSegmentDataset",
    "AudioTransform",
    "ImageTensorDataset",
    "ImageTransform",
    "MovingFashionMNIST",
    "OwnDataset",
    "ShardStream",
    "StepBatchSampler",
    "TimeSeriesDataset",
    "create_dataset",
    "expand_shards",
    "list_datasets",
    "open_records",
    "read_idx",
    "register_dataset",
]
