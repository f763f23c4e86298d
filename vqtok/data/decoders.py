"""Decoding one record (a file's bytes or a raw array) into a float tensor, for training on your own data.

Images and raw arrays are read by the modality descriptors (:mod:`vqtok.modalities`), the one reader per format
that ``export`` and ``eval`` use too, with their value and channel rules (module docstrings of
:mod:`vqtok.modalities.image` and :mod:`vqtok.modalities.audio`): ``uint8`` / 255 and ``uint16`` / 65535 for
images, floats in ``[0, 1]`` (``[-1, 1]`` for audio), every other dtype (complex, object, wider integers) an error
naming the record. Audio files are decoded here, not by the descriptor, because training needs the file's rate
to resample it (the descriptor's readers refuse another rate): PCM ``.wav`` by the descriptor's
:func:`~vqtok.modalities.read_wav`, other formats by ``soundfile`` (FLAC, OGG, MP3) and, where libsndfile
cannot read them, by PyAV (AAC/M4A, Opus in other containers, ...). Video clips (and, for a video model, GIFs)
are read by the video descriptor's :func:`~vqtok.modalities.read_video` (PyAV).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..modalities import AUDIO, IMAGE, ReadOptions, get_modality, read_wav
from ..modalities.image import to_channels as image_to_channels
from ..modalities.video import CLIP_SUFFIXES, read_video

__all__ = [
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "array_values",
    "decode_audio",
    "decode_image",
    "decode_video",
    "image_channels",
    "kind_of_suffix",
    "suffixes_of",
]

IMAGE_SUFFIXES = IMAGE.suffixes
# The descriptor's audio formats plus those soundfile (MP3) and PyAV decode.
AUDIO_SUFFIXES = tuple(sorted({*AUDIO.suffixes, ".flac", ".ogg", ".mp3", ".m4a", ".opus"}))
# A video model's files: the video formats plus GIFs read as clips (the GIF rule of vqtok.modalities.video).
VIDEO_SUFFIXES = CLIP_SUFFIXES
_SUFFIXES = {"image": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES, "video": VIDEO_SUFFIXES}


def suffixes_of(kind: str) -> tuple[str, ...]:
    """The file suffixes a model of ``kind`` (``"image"``, ``"audio"`` or ``"video"``) trains on."""
    if kind not in _SUFFIXES:
        raise ValueError(f"no files are read for {kind!r} models; expected one of {', '.join(_SUFFIXES)}")
    return _SUFFIXES[kind]


def kind_of_suffix(suffix: str) -> str | None:
    """``"image"``, ``"audio"`` or ``None`` for a file suffix (any case, with the dot)."""
    suffix = suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "audio" if suffix in AUDIO_SUFFIXES else None


def array_values(arr: np.ndarray, source: str, kind: str = "image") -> Tensor:
    """The modality's value rule applied to a raw array; the layout is left as it is.

    Raises:
        TypeError: On a complex, object, string or otherwise unsupported dtype.
        ValueError: On NaN/Inf, or floats outside the modality's range.
    """
    return get_modality(kind).from_array(np.asarray(arr), source)


def image_channels(x: Tensor, channels: int | None, source: str) -> Tensor:
    """An array image ``(K, H, W)`` to ``channels`` by the image channel rule (K = 2 or 4: the last is alpha)."""
    return image_to_channels(x, x.shape[0] in (2, 4), channels, source)


def decode_image(data: bytes, source: str, channels: int | None, suffix: str = "") -> Tensor:
    """Decodes image file bytes to ``(C, H, W)`` float in ``[0, 1]`` with ``channels`` channels.

    Raises:
        ValueError: On an empty, corrupt or truncated file; the message names ``source``.
    """
    return IMAGE.read_bytes(data, source, ReadOptions(channels=channels), suffix)


def decode_video(
    data: bytes,
    source: str,
    channels: int | None,
    count: int | None = None,
    start_of: Callable[[int], int] | None = None,
) -> Tensor:
    """Decodes a video file's (or GIF's) bytes to a ``(C, T, H, W)`` clip in ``[0, 1]`` with ``channels`` channels;
    ``count`` and ``start_of`` read only a window of frames (see :func:`~vqtok.modalities.read_video`).

    Raises:
        ValueError: On an empty, corrupt or frame-less file; the message names ``source``.
    """
    if not data:
        raise ValueError(f"{source}: the file is empty (0 bytes)")
    return read_video(data, source, ReadOptions(channels=channels), count, start_of)


def decode_audio(data: bytes, source: str) -> tuple[Tensor, int]:
    """Decodes an audio file's bytes at its own rate.

    Returns:
        ``(waveform (C, T) float32 in [-1, 1], sample_rate)``.

    Raises:
        ValueError: On an empty or undecodable file (no decoder reads it); the message names ``source``.
    """
    if not data:
        raise ValueError(f"{source}: the file is empty (0 bytes)")
    errors = []
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            return read_wav(data, source)
        except ValueError as err:  # e.g. float or ADPCM WAV: soundfile may still read it
            errors.append(str(err))
    try:
        import soundfile

        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        if samples.shape[0] == 0:
            raise ValueError("no samples")
        return torch.from_numpy(np.ascontiguousarray(samples.T)), int(rate)
    except ImportError:
        errors.append("soundfile is not installed")
    except Exception as err:  # noqa: BLE001 - libsndfile raises several types on junk; PyAV gets a try next
        errors.append("soundfile: " + re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the file", str(err)))
    try:
        import av

        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            planar = []
            for frame in container.decode(stream):
                c = frame.to_ndarray()
                planar.append(c if frame.format.is_planar else c.reshape(-1, len(frame.layout.channels)).T)
            rate = stream.rate or stream.codec_context.sample_rate
        if not planar:
            raise ValueError("no samples")
        x = np.concatenate(planar, axis=1)
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(x)), int(rate)
    except ImportError:
        errors.append("PyAV is not installed")
    except Exception as err:  # noqa: BLE001 - as above
        errors.append(f"PyAV: {err}")
    raise ValueError(f"{source}: not a readable audio file ({'; '.join(errors)})")
