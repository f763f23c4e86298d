"""Images: ``(C, H, W)`` float in ``[0, 1]``.

Files (one reader, Pillow): PNG, JPEG, WebP, BMP, TIFF, GIF (first frame: an animated GIF is an image of its
first frame here; a video model reads it as a clip, see the GIF rule in :mod:`vqtok.modalities.video`).

Value rule, for files and arrays alike:

* ``uint8`` is divided by 255, ``uint16`` (16-bit PNG/TIFF) by 65535: the dtype's full range, never clipped;
* floats (fp16/fp32/fp64, e.g. 32-bit float TIFF) are taken as they are and must lie in ``[0, 1]``;
* any other dtype (bool, signed or wider integers, complex, strings) and NaN/Inf are errors naming the file,
  because guessing their range silently gives garbage (an ``int64`` array of 0..255 is rejected, not read
  as near-black).

Channel rule, to the ``C`` the tokenizer takes: 1 -> grey, 2 -> grey + alpha, 3 -> RGB, 4 -> RGBA.
Colour becomes grey by ITU-R BT.601 luma (``0.299 R + 0.587 G + 0.114 B``, Pillow's own weights), grey
becomes colour by copying, a missing alpha is opaque (1) and an unwanted alpha is dropped (not composited).
Palette (``P``) images are expanded to RGB(A) first, ``1``/``CMYK``/``YCbCr``/``LAB``/``HSV`` to L or RGB.
Other channel counts are an error.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..metrics.image import image_metrics
from ..metrics.report import Panel
from ._arrays import scale_integers_and_check_floats
from ._registry import register_modality
from .base import ReadOptions, pixel_modality

__all__ = ["IMAGE", "image_from_array", "read_image", "to_channels"]

SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
_INTEGER_SCALES = {"uint8": (0.0, 255.0), "uint16": (0.0, 65535.0)}
# PNG, JPEG, GIF, BMP, WebP (RIFF....WEBP) and TIFF magic numbers.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF8", ".gif"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


def image_from_array(arr: np.ndarray, source: str) -> Tensor:
    """The image value rule (module docstring) applied to raw values; the layout is left as it is."""
    return scale_integers_and_check_floats(arr, source, _INTEGER_SCALES, (0.0, 1.0))


def to_channels(x: Tensor, alpha: bool, channels: int | None, source: str) -> Tensor:
    """Converts a ``(K, H, W)`` image (K = 1 or 3 colour planes, plus one alpha plane when ``alpha``) to ``channels``.

    Raises:
        ValueError: On a ``channels`` outside 1-4.
    """
    colour, a = (x[:-1], x[-1:]) if alpha else (x, None)
    if channels is None:
        return x
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"{source}: cannot make an image with {channels} channels (1, 2, 3 or 4 are defined)")
    if channels in (1, 2) and colour.shape[0] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=colour.dtype)
        colour = (colour * weights[:, None, None]).sum(0, keepdim=True)
    elif channels in (3, 4) and colour.shape[0] == 1:
        colour = colour.expand(3, -1, -1)
    if channels in (2, 4):
        return torch.cat([colour, a if a is not None else torch.ones_like(colour[:1])])
    return colour.contiguous()


def read_image(data: bytes, source: str, options: ReadOptions) -> Tensor:
    """Decodes image file bytes to ``(C, H, W)`` float in ``[0, 1]`` by the module's value and channel rules.

    Raises:
        ValueError: On an empty, corrupt, truncated or unsupported image; the message names ``source``.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError(f"{source}: the file is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        # Pillow names the BytesIO object, not the file; say which file it was.
        why = "unknown or corrupt image format" if isinstance(err, UnidentifiedImageError) else str(err)
        raise ValueError(f"{source}: not a readable image ({why})") from err
    mode = img.mode
    alpha = False
    if mode.startswith("I;16") or (mode == "I" and img.format == "PNG"):
        # 16-bit grey (Pillow opens 16-bit PNGs as I;16, older versions as I): scaled by 65535.
        arr = np.asarray(img).astype(np.uint16)
    elif mode == "F":
        arr = np.asarray(img)
    elif mode in ("I", "I;32"):
        raise ValueError(f"{source}: 32-bit integer images have no defined range; save as 8/16-bit or float")
    else:
        alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in img.info
        grey = Image.getmodebase(mode) == "L" if mode not in ("P", "PA") else False
        target = ("LA" if alpha else "L") if grey else ("RGBA" if alpha else "RGB")
        if mode != target:
            img = img.convert(target)
        arr = np.asarray(img)
    x = image_from_array(arr, source)
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    return to_channels(x, alpha, options.channels, source)


def _report(directory: Path, originals: Tensor, recons: Tensor, context: Mapping[str, Any]) -> list[Panel]:
    from ..metrics.image_grid import save_full_resolution_grid

    if originals.ndim != 4:
        return []
    # Pixel for pixel (no plot resampling), so the artefacts of 256x256 reconstructions show as they are.
    grid = save_full_resolution_grid(originals, recons, directory / "recon_grid.png").name
    return [Panel("Reconstructions (full resolution; originals above reconstructions)", images=(grid,))]


def _sniff(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for magic, suffix in _MAGIC if head.startswith(magic)), None)


IMAGE = register_modality(
    pixel_modality(
        name="image",
        example_ndim=3,
        readers=dict.fromkeys(SUFFIXES, read_image),
        from_array=image_from_array,
        metrics=image_metrics,
        report=_report,
        sniff=_sniff,
    )
)
