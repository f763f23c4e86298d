"""The input rule of the image tokenizers: which dtypes they read, and what they refuse.

* ``uint8`` images are pixels in ``[0, 255]``: they are divided by 255, so they mean the same as float images in
  ``[0, 1]``; reconstructions of them come back as float32 in ``[0, 1]`` (unclamped).
* Floating images (``float16``, ``bfloat16``, ``float32``, ``float64``) are nominally in ``[0, 1]``; the network
  runs in its own parameter dtype (as the quantizers compute in fp32 whatever they are given) and the
  reconstruction comes back in the caller's dtype.
* Any other dtype (other integers, bool, complex) and any NaN/Inf value is refused with a ``ValueError``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["prepare_images"]


def prepare_images(signal: object, model_dtype: torch.dtype, owner: str) -> tuple[Tensor, torch.dtype]:
    """Applies the rule above.

    Args:
        signal: The caller's ``(B, C, H, W)`` batch.
        model_dtype: Dtype of the model's parameters, which the network runs in.
        owner: Class name used in error messages.

    Returns:
        ``(images in model_dtype, dtype to return reconstructions in)``.

    Raises:
        ValueError: On a non-tensor, an unsupported dtype or non-finite values.
    """
    if not isinstance(signal, Tensor):
        raise ValueError(f"{owner} expects a torch.Tensor of images, got {type(signal).__name__}")
    if signal.dtype == torch.uint8:
        return signal.to(model_dtype) / 255.0, torch.float32
    if not signal.is_floating_point():
        raise ValueError(
            f"{owner} reads uint8 pixels (0..255) or floating images (nominally in [0, 1]); got dtype {signal.dtype}"
        )
    if signal.numel() and not bool(torch.isfinite(signal).all()):
        bad = int((~torch.isfinite(signal)).sum())
        raise ValueError(f"{owner}: the images contain {bad} NaN/Inf value(s)")
    return signal.to(model_dtype), signal.dtype
