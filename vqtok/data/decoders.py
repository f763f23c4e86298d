"""Decoding one record (a file's bytes or a raw array) into a float tensor, for training on your own data.

Images and raw arrays go through the modality descriptors (:mod:`vqtok.modalities`), the one reader per format
that ``export`` and ``eval`` use too; until that package is present a minimal Pillow reader with the same
rules stands in. Audio is decoded here because training also needs the file's sample rate, to resample it.

Value rule (images and arrays alike): ``uint8`` / 255, ``uint16`` (16-bit PNG/TIFF) / 65535, the dtype's full
range, never clipped; floats are taken as they are and must lie in ``[0, 1]``; other dtypes (bool, signed or
wider integers, complex, object, strings) and NaN/Inf are errors naming the record. Audio arrays: floats in
``[-1, 1]`` as they are, ``int16`` / 32768, ``int32`` / 2**31.

Channel rule for images: 1 -> grey (BT.601 luma), 2 -> grey + alpha, 3 -> RGB (grey copied), 4 -> RGBA
(missing alpha opaque); palette images are expanded first.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "array_values",
    "decode_audio",
    "decode_image",
    "kind_of_suffix",
    "to_channels",
]

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
AUDIO_SUFFIXES = (".flac", ".m4a", ".mp3", ".ogg", ".opus", ".wav")
_AUDIO_INT_SCALES = {"int16": 32768.0, "int32": 2147483648.0}


def kind_of_suffix(suffix: str) -> str | None:
    """``"image"``, ``"audio"`` or ``None`` for a file suffix (any case, with the dot)."""
    suffix = suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "audio" if suffix in AUDIO_SUFFIXES else None


def _modalities():
    try:
        from .. import modalities
    except ImportError:  # the descriptor package is not part of this installation yet
        return None
    return modalities


def array_values(arr: np.ndarray, source: str, kind: str = "image") -> Tensor:
    """Applies the value rule (module docstring) to a raw array; the layout is left as it is.

    Raises:
        TypeError: On a complex, object, string or otherwise unsupported dtype.
        ValueError: On NaN/Inf, or floats outside the kind's range.
    """
    arr = np.asarray(arr)
    mods = _modalities()
    if kind == "image" and mods is not None:
        return mods.IMAGE.from_array(arr, source)
    if arr.dtype.kind in "cOSUV" or arr.dtype == np.bool_:
        raise TypeError(
            f"{source}: arrays of dtype {arr.dtype} cannot be read as {kind} values; save uint8, uint16 or floats"
        )
    if kind == "audio":
        if arr.dtype.kind == "f":
            x, lo = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), -1.0
        elif arr.dtype.name in _AUDIO_INT_SCALES:
            return torch.from_numpy(arr.astype(np.float32) / _AUDIO_INT_SCALES[arr.dtype.name])
        else:
            raise TypeError(f"{source}: audio arrays must be float in [-1, 1], int16 or int32, got {arr.dtype}")
    elif arr.dtype == np.uint8 or arr.dtype == np.uint16:
        return torch.from_numpy(arr.astype(np.float32) / float(np.iinfo(arr.dtype).max))
    elif arr.dtype.kind == "f":
        x, lo = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), 0.0
    else:
        raise TypeError(
            f"{source}: image arrays must be uint8 (/255), uint16 (/65535) or floats in [0, 1], got {arr.dtype} "
            "(an integer array of another dtype has no stated range)"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{source}: the array holds NaN or Inf")
    if x.numel() and (float(x.min()) < lo or float(x.max()) > 1.0):
        got = f"[{float(x.min()):g}, {float(x.max()):g}]"
        raise ValueError(f"{source}: float values must lie in [{lo:g}, 1], got {got}")
    return x


def decode_image(data: bytes, source: str, channels: int | None) -> Tensor:
    """Decodes image file bytes to ``(C, H, W)`` float in ``[0, 1]`` with ``channels`` channels.

    Raises:
        ValueError: On an empty, corrupt or truncated file; the message names ``source``.
    """
    if not data:
        raise ValueError(f"{source}: the file is empty (0 bytes)")
    mods = _modalities()
    if mods is not None:
        return mods.IMAGE.read_bytes(data, source, mods.ReadOptions(channels=channels))
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        # Pillow names the BytesIO object, not the file.
        why = "unknown or corrupt image format" if isinstance(err, UnidentifiedImageError) else str(err)
        raise ValueError(f"{source}: not a readable image ({why})") from err
    if img.mode.startswith("I;16") or (img.mode == "I" and img.format == "PNG"):
        x = array_values(np.asarray(img).astype(np.uint16), source)[None]
        alpha = False
    else:
        alpha = img.mode in ("LA", "PA", "RGBA") or "transparency" in img.info
        grey = img.mode in ("1", "L", "LA", "I", "F")
        img = img.convert(("LA" if alpha else "L") if grey else ("RGBA" if alpha else "RGB"))
        x = array_values(np.asarray(img), source)
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    return to_channels(x, alpha, channels, source)


def to_channels(x: Tensor, alpha: bool, channels: int | None, source: str) -> Tensor:
    colour, a = (x[:-1], x[-1:]) if alpha else (x, None)
    if channels is None:
        return x
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"{source}: cannot make an image with {channels} channels (1, 2, 3 or 4 are defined)")
    if channels in (1, 2) and colour.shape[0] == 3:
        colour = (colour * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True)
    elif channels in (3, 4) and colour.shape[0] == 1:
        colour = colour.expand(3, -1, -1)
    if channels in (2, 4):
        return torch.cat([colour, a if a is not None else torch.ones_like(colour[:1])])
    return colour.contiguous()


def decode_audio(data: bytes, source: str) -> tuple[Tensor, int]:
    """Decodes an audio file's bytes (WAV, FLAC, OGG, MP3 by ``soundfile``; other formats by PyAV).

    Returns:
        ``(waveform (C, T) float32 in [-1, 1], sample_rate)``.

    Raises:
        ValueError: On an empty or undecodable file (neither library reads it); the message names ``source``.
    """
    if not data:
        raise ValueError(f"{source}: the file is empty (0 bytes)")
    errors = []
    try:
        import soundfile

        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        if samples.shape[0] == 0:
            raise ValueError("no samples")
        return torch.from_numpy(np.ascontiguousarray(samples.T)), int(rate)
    except ImportError:
        errors.append("soundfile is not installed")
    except Exception as err:  # noqa: BLE001 - libsndfile raises several types on junk; PyAV gets a try next
        errors.append(f"soundfile: {err}")
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
