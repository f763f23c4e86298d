"""Moving Fashion-MNIST: deterministic clips of garments bouncing around a black canvas.

The video analogue of Moving MNIST (Srivastava et al., "Unsupervised Learning of Video Representations using
LSTMs", ICML 2015, arXiv:1502.04681) built from Fashion-MNIST (Xiao et al., arXiv:1708.07747, MIT license; read
through :func:`vqtok.data.images.fashion_mnist`, Debian package ``dataset-fashion-mnist``). Written for vqtok.

Clip ``i`` of a split is a pure function of ``(split, i, seed)``: its garments (drawn from the same split of
Fashion-MNIST, so test clips never show training garments), start positions and velocities come from a generator
seeded with them, so every machine and every worker sees the same clips in any order. Garments move in straight
lines and bounce off the borders; overlapping garments combine by maximum. Items are float ``(1, T, S, S)`` in
``[0, 1]``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._registry import register_dataset
from .images import fashion_mnist

__all__ = ["MovingFashionMNIST", "moving_fashion_mnist"]

_SPLIT_SALT = {"train": 0, "test": 1_000_003}


class MovingFashionMNIST(Dataset):
    """Bouncing-garment clips generated on demand from a ``(N, 1, 28, 28)`` uint8 image bank.

    Args:
        garments: ``(N, 1, h, w)`` uint8 images.
        num_clips: Clips in the data set.
        frames: Frames per clip T.
        size: Canvas side S (must exceed the garment side).
        num_garments: Garments per clip.
        max_speed: Largest speed in pixels per frame along each axis (at least 1).
        seed: Base seed; with the split salt and the clip index it fixes every clip.
    """

    def __init__(
        self,
        garments: Tensor,
        num_clips: int,
        frames: int = 16,
        size: int = 64,
        num_garments: int = 2,
        max_speed: float = 3.0,
        seed: int = 0,
    ) -> None:
        if garments.ndim != 4 or garments.shape[1] != 1 or garments.dtype != torch.uint8:
            raise ValueError(f"garments must be uint8 (N, 1, h, w), got {garments.dtype} {tuple(garments.shape)}")
        side = max(garments.shape[-2:])
        if size <= side:
            raise ValueError(f"canvas size {size} must exceed the garment size {side}")
        if frames < 1 or num_clips < 1 or num_garments < 1 or max_speed < 1:
            raise ValueError(
                f"frames, num_clips, num_garments and max_speed must be >= 1, got {frames}, {num_clips}, "
                f"{num_garments}, {max_speed}"
            )
        self.garments = garments[:, 0].numpy()
        self.num_clips, self.frames, self.size = num_clips, frames, size
        self.num_garments, self.max_speed, self.seed = num_garments, max_speed, seed

    def __len__(self) -> int:
        return self.num_clips

    def clip(self, index: int) -> np.ndarray:
        """Clip ``index`` as uint8 ``(T, S, S)``."""
        if not 0 <= index < self.num_clips:
            raise IndexError(f"clip {index} out of range for {self.num_clips} clips")
        rng = np.random.default_rng([self.seed, index])
        gh, gw = self.garments.shape[1:]
        span = np.array([self.size - gh, self.size - gw], dtype=np.float64)
        out = np.zeros((self.frames, self.size, self.size), dtype=np.uint8)
        for _ in range(self.num_garments):
            garment = self.garments[rng.integers(len(self.garments))]
            pos = rng.uniform(0, 1, 2) * span
            angle = rng.uniform(0, 2 * np.pi)
            vel = rng.uniform(1.0, self.max_speed) * np.array([np.sin(angle), np.cos(angle)])
            for t in range(self.frames):
                y, x = np.rint(pos).astype(int)
                region = out[t, y : y + gh, x : x + gw]
                np.maximum(region, garment, out=region)
                pos = pos + vel
                # Bounce: reflect the position into [0, span] and flip the velocity of the axis that crossed.
                for axis in range(2):
                    if pos[axis] < 0 or pos[axis] > span[axis]:
                        vel[axis] = -vel[axis]
                        pos[axis] = np.clip(-pos[axis] if pos[axis] < 0 else 2 * span[axis] - pos[axis], 0, span[axis])
        return out

    def __getitem__(self, index: int) -> Tensor:
        """``(1, T, S, S)`` float in ``[0, 1]``."""
        return torch.from_numpy(self.clip(int(index)))[None].float() / 255.0

    def __getitems__(self, indices: list[int]) -> Tensor:
        """Batched fetch used by ``DataLoader``: ``(B, 1, T, S, S)``."""
        return torch.stack([self[i] for i in indices])


@register_dataset("moving_fashion_mnist")
def moving_fashion_mnist(
    split: str = "train",
    num_clips: int | None = None,
    frames: int = 16,
    size: int = 64,
    num_garments: int = 2,
    max_speed: float = 3.0,
    seed: int = 0,
    root: str | None = None,
) -> MovingFashionMNIST:
    """Moving Fashion-MNIST clips ``(1, T, S, S)``: 10,000 train / 1,000 test by default, 16 frames of 64x64.

    Raises:
        FileNotFoundError: When Fashion-MNIST is not installed (the message names the apt package).
    """
    images = fashion_mnist(split, root=root).images
    count = num_clips if num_clips is not None else (10_000 if split == "train" else 1_000)
    return MovingFashionMNIST(images, count, frames, size, num_garments, max_speed, seed + _SPLIT_SALT[split])
