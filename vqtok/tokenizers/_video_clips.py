"""Clip helpers of the video tokenizer: the frame-count rule, its padding, and the documented input conversions.

Re-exported by :mod:`vqtok.tokenizers.video`, whose docstring states the rules.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["pad_frames", "stack_frames", "valid_frame_count", "video_to_float"]


def valid_frame_count(frames: int, temporal_downsample: int) -> bool:
    """Whether ``frames == 1 + temporal_downsample * k`` for some ``k >= 0``."""
    return frames >= 1 and (frames - 1) % temporal_downsample == 0


def pad_frames(video: Tensor, temporal_downsample: int) -> Tensor:
    """Pads ``(B, C, T, H, W)`` at the end, repeating the last frame, to the next ``1 + ft*k`` frames."""
    t = video.shape[2]
    extra = (-(t - 1)) % temporal_downsample
    if not extra:
        return video
    return torch.cat([video, video[:, :, -1:].expand(-1, -1, extra, -1, -1)], dim=2)


def video_to_float(video: Tensor | np.ndarray) -> Tensor:
    """The documented conversion: uint8 ``0..255`` -> float32 ``[0, 1]``; float input is returned as float32.

    Raises:
        TypeError: For other dtypes (integers other than uint8 have no agreed range; bool is a mask).
    """
    x = torch.as_tensor(video)
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if x.is_floating_point():
        return x.float()
    raise TypeError(f"video frames must be uint8 (0..255) or float ([0, 1]), got {x.dtype}")


def stack_frames(frames: Sequence[Tensor | np.ndarray], channels_last: bool = False) -> Tensor:
    """Stacks frames ``(C, H, W)`` (or ``(H, W, C)`` with ``channels_last``, or ``(H, W)``) into a ``(C, T, H, W)``
    float clip, converting uint8 with :func:`video_to_float`.

    Raises:
        ValueError: On no frames, a frame of another rank or size (the message names its index), or NaN/inf.
    """
    if len(frames) == 0:
        raise ValueError("a video needs at least one frame, got none")
    out = []
    for i, frame in enumerate(frames):
        f = video_to_float(frame)
        if f.ndim == 2:
            f = f[None]
        elif f.ndim == 3 and channels_last:
            f = f.permute(2, 0, 1)
        elif f.ndim != 3:
            raise ValueError(f"frame {i} has shape {tuple(f.shape)}; expected (C, H, W), (H, W, C) or (H, W)")
        if out and f.shape != out[0].shape:
            raise ValueError(f"frame {i} has size {tuple(f.shape)} but frame 0 has {tuple(out[0].shape)} (C, H, W)")
        if not torch.isfinite(f).all():
            raise ValueError(f"frame {i} contains NaN or inf values")
        out.append(f)
    return torch.stack(out, dim=1)
