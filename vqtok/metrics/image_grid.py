"""Originals above their reconstructions at full resolution: one PNG whose pixels are the images' pixels.

Unlike a plotted figure, nothing is resampled, so 256x256 reconstructions show their real artefacts.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from torch import Tensor

from .._io import atomic_write_bytes

__all__ = ["image_grid_array", "save_full_resolution_grid"]


def image_grid_array(originals: Tensor, recons: Tensor, columns: int = 8, gap: int = 2) -> np.ndarray:
    """``(rows, cols, 3)`` uint8 tiling: each row of originals is followed by the row of their reconstructions.

    Args:
        originals: ``(N, C, H, W)`` in ``[0, 1]``, C = 1 or 3.
        recons: Same shape; clamped to ``[0, 1]``.
        columns: Images per row.
        gap: White pixels between tiles.
    """
    if originals.ndim != 4 or originals.shape[1:] != recons.shape[1:] or originals.shape[1] not in (1, 3):
        raise ValueError(f"expected two (N, 1|3, H, W) batches, got {tuple(originals.shape)}, {tuple(recons.shape)}")
    n = min(originals.shape[0], recons.shape[0])
    _, c, h, w = originals.shape
    cols = max(1, min(columns, n))
    pairs = (n + cols - 1) // cols
    canvas = np.full((2 * pairs * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        for k, img in enumerate((originals[i], recons[i])):
            tile = (img.detach().float().clamp(0, 1).expand(3, -1, -1) * 255).round().byte().permute(1, 2, 0)
            y, x = gap + (2 * r + k) * (h + gap), gap + col * (w + gap)
            canvas[y : y + h, x : x + w] = tile.cpu().numpy()
    return canvas


def save_full_resolution_grid(
    originals: Tensor, recons: Tensor, path: str | os.PathLike[str], columns: int = 8
) -> Path:
    """Writes :func:`image_grid_array` as a PNG (atomically) and returns its path."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image_grid_array(originals, recons, columns)).save(buffer, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
