"""The image report: reconstructions at full resolution, pixel for pixel, and counts printed as integers."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vqtok.metrics.image_grid import image_grid_array
from vqtok.modalities import find_modality


def write_report(directory, metrics, originals, recons, modality="image"):  # type: ignore[no-untyped-def]
    return find_modality(modality).write_report(directory, metrics, originals, recons)


def test_grid_keeps_every_pixel(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    originals = torch.randint(0, 256, (5, 3, 40, 24), generator=g).float() / 255
    recons = (originals + 0.5).clamp(0, 1)
    page = write_report(tmp_path, {"psnr": 30.5}, originals, recons, modality="image")
    grid = np.asarray(Image.open(tmp_path / "recon_grid.png").convert("RGB"))
    np.testing.assert_array_equal(grid, image_grid_array(originals, recons))
    gap = 2
    # Row 0 holds the originals, row 1 their reconstructions, each tile at its native 40x24.
    for i in range(5):
        x = gap + i * (24 + gap)
        tile = grid[gap : gap + 40, x : x + 24]
        np.testing.assert_array_equal(tile, (originals[i] * 255).round().byte().permute(1, 2, 0).numpy())
        rec = grid[2 * gap + 40 : 2 * gap + 80, x : x + 24]
        np.testing.assert_array_equal(rec, (recons[i] * 255).round().byte().permute(1, 2, 0).numpy())
    assert "recon_grid.png" in page.read_text()


def test_grey_images_and_integer_counts(tmp_path) -> None:
    originals = torch.rand(3, 1, 8, 8)
    grid = image_grid_array(originals, originals, columns=2)
    assert grid.shape == (2 * 2 * (8 + 2) + 2, 2 * (8 + 2) + 2, 3)
    page = write_report(tmp_path, {"examples": 10000.0, "psnr": 31.25}, originals, originals, modality="image")
    text = page.read_text()
    assert "<td>examples</td><td>10000</td>" in text and "10000.0" not in text
    assert "<td>31.2500</td>" in text
