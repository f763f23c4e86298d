"""Multichannel time series served as standardized ``(C, T)`` float windows, for the action tokenizers.

* ``basic_motions``: UEA BasicMotions (Clements et al.; 6 channels = 3-axis accelerometer + gyroscope of a
  smart watch during walking, resting, running and badminton; 40 train / 40 test series of 100 steps).
* ``gunpoint``: UCR GunPoint (Ratanamahatana & Keogh; 1 channel = hand x-coordinate; 50 train / 150 test
  series of 150 steps).

Both ship inside the ``sktime`` package (``pip install 'vqtok[data]'``), so no download is needed. Each
channel is standardized with the mean and standard deviation of the *training* split, so every metric on
these sets is in units of training standard deviations. Items are windows of ``window`` steps taken every
``stride`` steps (``window=None``: the whole series).

``synthetic_motions`` (smooth random multichannel curves) exists for unit tests only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._registry import check_split, register_dataset

__all__ = ["TimeSeriesDataset", "basic_motions", "gunpoint", "load_sktime", "synthetic_motions"]


class TimeSeriesDataset(Dataset):
    """Standardized series cut into windows; items are ``(C, window)`` float32.

    Args:
        series: ``(N, C, T)`` raw values.
        mean: ``(C,)`` per-channel mean used for standardization.
        std: ``(C,)`` per-channel standard deviation.
        window: Steps per item (``None``: ``T``).
        stride: Steps between window starts (``None``: ``window``).
        labels: Optional ``(N,)`` class labels (kept for reference).
    """

    def __init__(
        self,
        series: Tensor,
        mean: Tensor,
        std: Tensor,
        window: int | None = None,
        stride: int | None = None,
        labels: list[str] | None = None,
    ) -> None:
        if series.ndim != 3:
            raise ValueError(f"series must be (N, C, T), got {tuple(series.shape)}")
        t = series.shape[-1]
        window = t if window is None else int(window)
        stride = window if stride is None else int(stride)
        if not 1 <= window <= t or stride < 1:
            raise ValueError(f"window must be in [1, {t}] and stride >= 1, got {window} and {stride}")
        self.series = ((series - mean[:, None]) / std[:, None]).float()
        self.mean, self.std = mean.float(), std.float()
        self.window = window
        self.labels = labels
        self.starts = list(range(0, t - window + 1, stride))

    def __len__(self) -> int:
        return self.series.shape[0] * len(self.starts)

    def __getitem__(self, index: int) -> Tensor:
        n, k = divmod(index, len(self.starts))
        s = self.starts[k]
        return self.series[n, :, s : s + self.window]

    @property
    def num_channels(self) -> int:
        return self.series.shape[1]

    def denormalize(self, x: Tensor) -> Tensor:
        """Standardized ``(..., C, T)`` back to raw units."""
        return x * self.std[:, None].to(x) + self.mean[:, None].to(x)


def load_sktime(name: str, split: str) -> tuple[np.ndarray, list[str]]:
    """Loads ``"basic_motions"`` or ``"gunpoint"`` from sktime as ``((N, C, T) float64, labels)``.

    Raises:
        FileNotFoundError: When sktime is not installed (it holds the data files).
    """
    try:
        from sktime import datasets
    except ImportError as err:
        raise FileNotFoundError(
            f"the {name!r} data set ships with sktime: pip install 'vqtok[data]' (or pip install sktime)"
        ) from err
    loader = {"basic_motions": datasets.load_basic_motions, "gunpoint": datasets.load_gunpoint}[name]
    x, y = loader(split=split, return_type="numpy3D")
    return np.asarray(x, dtype=np.float64), [str(v) for v in y]


def _standardized(name: str, split: str, window: int | None, stride: int | None) -> TimeSeriesDataset:
    check_split(split)
    train, _ = load_sktime(name, "train")
    mean = torch.from_numpy(train.mean(axis=(0, 2)))
    std = torch.from_numpy(train.std(axis=(0, 2))).clamp_min(1e-8)
    x, labels = (train, _) if split == "train" else load_sktime(name, "test")
    return TimeSeriesDataset(torch.from_numpy(x), mean, std, window, stride, labels)


@register_dataset("basic_motions")
def basic_motions(split: str = "train", window: int | None = 20, stride: int | None = 5) -> TimeSeriesDataset:
    """BasicMotions, 6 channels, standardized; ``(6, window)`` items (default 20 steps every 5)."""
    return _standardized("basic_motions", split, window, stride)


@register_dataset("gunpoint")
def gunpoint(split: str = "train", window: int | None = 30, stride: int | None = 10) -> TimeSeriesDataset:
    """GunPoint, 1 channel, standardized; ``(1, window)`` items (default 30 steps every 10)."""
    return _standardized("gunpoint", split, window, stride)


@register_dataset("synthetic_motions")
def synthetic_motions(
    split: str = "train",
    num_series: int = 64,
    channels: int = 3,
    length: int = 32,
    window: int | None = None,
    stride: int | None = None,
    seed: int = 0,
) -> TimeSeriesDataset:
    """Sums of a few random low-frequency sinusoids per channel; for unit tests, not for benchmarks."""
    g = torch.Generator().manual_seed(seed + (0 if split == "train" else 7919))
    t = torch.linspace(0, 1, length, dtype=torch.float64)
    freq = 0.5 + 3 * torch.rand(num_series, channels, 3, 1, generator=g, dtype=torch.float64)
    phase = 2 * torch.pi * torch.rand(num_series, channels, 3, 1, generator=g, dtype=torch.float64)
    amp = torch.rand(num_series, channels, 3, 1, generator=g, dtype=torch.float64)
    x = (amp * torch.sin(2 * torch.pi * freq * t + phase)).sum(2)
    return TimeSeriesDataset(
        x, torch.zeros(channels, dtype=torch.float64), torch.ones(channels, dtype=torch.float64), window, stride
    )
