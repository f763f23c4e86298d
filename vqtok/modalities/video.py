"""Videos: ``(C, T, H, W)`` float in ``[0, 1]``.

Files (PyAV, ``pip install av``, in the ``data`` extra): MP4, WebM, MKV, MOV, AVI (the first video stream, every
frame decoded).

GIF rule: ``.gif`` is registered to the image modality (``export``/``eval`` of a ``.gif`` read its first frame,
and an image model trained on a folder takes each GIF's first frame). A *video* model reads GIFs as clips: the
data layer lists :data:`CLIP_SUFFIXES` (the video suffixes plus ``.gif``) for a video model and decodes every one
with :func:`read_video` (all frames; a single-frame GIF is a one-frame clip). Call :func:`read_video` directly
to read a GIF as a clip elsewhere; it accepts any container PyAV opens.

Value rule, for files and arrays alike (the image rule): ``uint8`` is divided by 255, ``uint16`` by 65535;
floats must lie in ``[0, 1]``; any other dtype and NaN/Inf are errors naming the file. A ``.npy`` array is
``(N, C, T, H, W)`` clips, one ``(C, T, H, W)`` clip, or ``(T, H, W)`` grey frames (one clip).

Channel rule: decoded frames are grey (``gray``) for 1-channel models and RGB (``rgb24``) otherwise; 2 and 4
channels add an opaque alpha plane. A stream whose frames change size is an error naming the first frame that
differs. Frame counts are the tokenizer's business (``1 + ft*k`` or its ``repeat_last`` padding rule, see
:mod:`vqtok.tokenizers.video`).

Metrics (:mod:`vqtok.metrics.video`): per-frame PSNR and SSIM, and the frame-difference (temporal consistency)
error. The report shows originals above reconstructions as an animated GIF.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._io import atomic_write_bytes
from ..metrics.report import Panel
from ..metrics.video import video_metrics
from ._arrays import scale_integers_and_check_floats
from ._registry import register_modality
from .base import ReadOptions, pixel_modality

__all__ = ["CLIP_SUFFIXES", "VIDEO", "read_video", "save_clip_gif", "video_from_array"]

SUFFIXES = (".avi", ".mkv", ".mov", ".mp4", ".webm")
#: Files a video model trains on: its own suffixes plus animated GIFs, which the image modality owns for
#: suffix dispatch (the GIF rule in the module docstring); all are decoded by :func:`read_video`.
CLIP_SUFFIXES = tuple(sorted((*SUFFIXES, ".gif")))
_INTEGER_SCALES = {"uint8": (0.0, 255.0), "uint16": (0.0, 65535.0)}


def video_from_array(arr: np.ndarray, source: str) -> Tensor:
    """The video value rule (module docstring) applied to raw values; the layout is left as it is."""
    return scale_integers_and_check_floats(arr, source, _INTEGER_SCALES, (0.0, 1.0))


def read_video(
    data: bytes,
    source: str,
    options: ReadOptions,
    count: int | None = None,
    start_of: Callable[[int], int] | None = None,
) -> Tensor:
    """Decodes a video file's bytes (any container PyAV opens, GIF included) to ``(C, T, H, W)`` in ``[0, 1]``.

    Args:
        data: The file's bytes.
        source: Names the file in errors.
        options: ``channels`` chooses grey or RGB (module docstring).
        count: Keep at most ``count`` frames (``None``: all), so a long video never sits in memory whole.
        start_of: ``total frames -> first frame kept`` (with ``count``; default 0). The total is the container's
            frame count, or counted by a first decoding pass when the container does not say.

    Raises:
        ValueError: On an empty, corrupt or frame-less file, no video stream, frames of changing size, or a channel
            count outside 1-4; the message names ``source``.
    """
    try:
        import av
    except ImportError as err:
        raise ValueError(f"{source}: reading video files needs PyAV: pip install 'vqtok[data]' (or av)") from err
    channels = options.channels or 3
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"{source}: cannot make a video with {channels} channels (1, 2, 3 or 4 are defined)")
    fmt = "gray" if channels in (1, 2) else "rgb24"
    try:
        start, stop = 0, None
        if count is not None:
            total = _frame_count(data, source) if start_of is not None else count
            start = max(0, min(int(start_of(total)), total - 1)) if start_of is not None else 0
            stop = start + count
        frames: list[np.ndarray] = []
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise ValueError(f"{source}: the file has no video stream")
            for i, frame in enumerate(container.decode(video=0)):
                if stop is not None and i >= stop:
                    break
                if i < start:
                    continue
                arr = frame.to_ndarray(format=fmt)
                if frames and arr.shape != frames[0].shape:
                    raise ValueError(
                        f"{source}: frame {i} is {arr.shape[1]}x{arr.shape[0]} but frame {start} is "
                        f"{frames[0].shape[1]}x{frames[0].shape[0]}; mixed frame sizes are not a clip"
                    )
                frames.append(arr)
    except av.FFmpegError as err:
        raise ValueError(f"{source}: not a readable video ({err})") from err
    if not frames and start > 0:  # fewer decodable frames than packets counted: take the clip's start
        return read_video(data, source, options, count)
    if not frames:
        raise ValueError(f"{source}: the video has no frames")
    x = video_from_array(np.stack(frames), source)  # (T, H, W) or (T, H, W, 3)
    x = x[None] if x.ndim == 3 else x.permute(3, 0, 1, 2)
    if channels in (2, 4):
        x = torch.cat([x, torch.ones_like(x[:1])])
    return x.contiguous()


def _frame_count(data: bytes, source: str) -> int:
    """Frames of the first video stream: counted by demuxing packets (no decoding), for windowed reads."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.video:
            raise ValueError(f"{source}: the file has no video stream")
        stream = container.streams.video[0]
        n = sum(1 for packet in container.demux(stream) if packet.size)
    if n == 0:
        raise ValueError(f"{source}: the video has no frames")
    return n


def save_clip_gif(originals: Tensor, recons: Tensor, path: str | Path, fps: int = 8, clips: int = 4) -> Path:
    """Writes an animated GIF: up to ``clips`` originals ``(N, C, T, H, W)`` in a row above their reconstructions."""
    from PIL import Image

    def row(x: Tensor) -> np.ndarray:  # (N, C, T, H, W) -> (T, H, N*W, C)
        x = x[:clips].float().clamp(0, 1)
        x = x[:, :3] if x.shape[1] >= 3 else x[:, :1]
        return torch.cat(list(x.permute(0, 2, 3, 4, 1)), dim=2).numpy()

    frames = (np.concatenate([row(originals), row(recons)], axis=1) * 255).round().astype(np.uint8)
    mode = "L" if frames.shape[-1] == 1 else "RGB"
    images = [Image.fromarray(f[..., 0] if mode == "L" else f, mode=mode) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _report(directory: Path, originals: Tensor, recons: Tensor, context: Mapping[str, Any]) -> list[Panel]:
    if originals.ndim != 5:
        return []
    n = min(originals.shape[2], recons.shape[2])
    gif = save_clip_gif(originals[:, :, :n], recons[:, :, :n], directory / "clips.gif")
    return [Panel("Clips: originals (top) and reconstructions (bottom)", images=(gif.name,))]


def _sniff(head: bytes) -> str | None:
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm"  # Matroska/WebM EBML header
    if head[4:8] == b"ftyp":
        return ".mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return ".avi"
    return None


VIDEO = register_modality(
    pixel_modality(
        name="video",
        example_ndim=4,
        readers=dict.fromkeys(SUFFIXES, read_video),
        from_array=video_from_array,
        metrics=video_metrics,
        report=_report,
        sniff=_sniff,
    )
)
