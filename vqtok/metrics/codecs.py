"""JPEG and WebP (through Pillow) at a given number of bits per image: the baselines a tokenizer must beat.

For each image the codec's quality is bisected to the highest setting whose size fits the budget, counted two ways:

* ``headers counted``: every byte of the file (what storing or sending the image costs);
* ``headers excluded``: only the entropy-coded payload. For JPEG, the bytes between the end of the last SOS
  segment header and the EOI marker (quantisation/Huffman tables, SOF, APP segments are header). For WebP (lossy,
  simple format), the ``VP8 `` chunk's data minus its 10-byte frame header (the 12-byte RIFF header, the 8-byte
  chunk header and the frame header are header; the first partition's probability tables stay payload).

A tokenizer's bits are its indices at a fixed-length code, with no header at all (the shape is known to both
sides), so headers-counted is the fair comparison for storing one small image and headers-excluded an upper
bound of what the codec's entropy coder alone achieves.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["CODECS", "CodedImage", "codec_rows", "encode_at_budget", "jpeg_payload_bytes", "webp_payload_bytes"]


@dataclass(frozen=True)
class CodedImage:
    """One image coded to fit a budget.

    Attributes:
        quality: The codec quality chosen.
        bits: Size in bits under the chosen counting (file or payload).
        file_bits: Whole-file size in bits.
        decoded: ``(H, W, 3)`` uint8 decoded image.
        fits: Whether ``bits`` is within the budget (``False``: even the lowest quality is larger).
    """

    quality: int
    bits: int
    file_bits: int
    decoded: np.ndarray
    fits: bool


def jpeg_payload_bytes(data: bytes) -> int:
    """Bytes of entropy-coded scan data in a JPEG file (see the module docstring)."""
    pos, payload = 2, 0
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file (no SOI marker)")
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"malformed JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker == 0xDA:  # SOS: scan data follows until the next non-RST marker
            start = pos + 2 + length
            end = start
            while end + 1 < len(data) and not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
            payload += end - start
            pos = end
            if data[pos + 1] == 0xD9:
                break
            continue
        pos += 2 + length
    return payload


def webp_payload_bytes(data: bytes) -> int:
    """Bytes of VP8 bitstream after the 10-byte frame header in a lossy WebP file."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file")
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if tag == b"VP8 ":
            return max(0, size - 10)
        pos += 8 + size + (size & 1)
    raise ValueError("WebP file without a lossy 'VP8 ' chunk")


def _pillow_codec(fmt: str, payload: Callable[[bytes], int], qualities: tuple[int, int], **options: object):
    def code(pixels: np.ndarray, quality: int) -> tuple[bytes, int]:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format=fmt, quality=quality, **options)
        data = buf.getvalue()
        return data, payload(data)

    return code, qualities


# name -> (code(pixels, quality) -> (file bytes, payload bytes), (lowest, highest) quality)
CODECS = {
    "jpeg": _pillow_codec("JPEG", jpeg_payload_bytes, (1, 95), optimize=True),
    "webp": _pillow_codec("WEBP", webp_payload_bytes, (0, 100), method=6),
}


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def encode_at_budget(pixels: np.ndarray, codec: str, budget_bits: float, headers: bool = True) -> CodedImage:
    """Codes ``(H, W, 3)`` uint8 ``pixels`` at the highest quality whose size is at most ``budget_bits``.

    Args:
        pixels: The image.
        codec: ``"jpeg"`` or ``"webp"``.
        budget_bits: Bits allowed for this image.
        headers: Count the whole file (``True``) or only the payload.

    Returns:
        A :class:`CodedImage`; when no quality fits, the lowest quality with ``fits=False``.
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {sorted(CODECS)}")
    code, (lo, hi) = CODECS[codec]

    def size(q: int) -> tuple[bytes, int]:
        data, payload = code(pixels, q)
        return data, 8 * (len(data) if headers else payload)

    best = None
    # Size grows with quality (near enough for bisection; the final check keeps the answer within budget).
    while lo <= hi:
        mid = (lo + hi) // 2
        data, bits = size(mid)
        if bits <= budget_bits:
            best, lo = (mid, data, bits), mid + 1
        else:
            hi = mid - 1
    if best is None:
        q = CODECS[codec][1][0]
        data, bits = size(q)
        return CodedImage(q, bits, 8 * len(data), _decode(data), False)
    q, data, bits = best
    return CodedImage(q, bits, 8 * len(data), _decode(data), True)


def codec_rows(
    images: np.ndarray,
    budget_bits: float,
    codecs: tuple[str, ...] = ("jpeg", "webp"),
    extra_metrics: Callable[[Tensor, Tensor], dict[str, Tensor]] | None = None,
) -> list[dict[str, float | str]]:
    """Mean fidelity of each codec on ``(N, H, W, 3)`` uint8 ``images`` at ``budget_bits`` per image, headers
    counted and excluded.

    Returns:
        One row per (codec, counting): ``codec``, ``headers``, ``bits`` (mean used), ``file_bits``, ``fits`` (share
        of images within budget), ``quality`` (mean), ``psnr``, ``ssim`` and whatever ``extra_metrics`` adds.
    """
    from .image import image_metrics

    target = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    rows: list[dict[str, float | str]] = []
    for codec in codecs:
        for headers in (True, False):
            coded = [encode_at_budget(im, codec, budget_bits, headers) for im in images]
            decoded = torch.from_numpy(np.stack([c.decoded for c in coded])).permute(0, 3, 1, 2).float() / 255
            scores = image_metrics(decoded, target)
            if extra_metrics is not None:
                scores.update(extra_metrics(decoded, target))
            row: dict[str, float | str] = {
                "codec": codec,
                "headers": "counted" if headers else "excluded",
                "bits": float(np.mean([c.bits for c in coded])),
                "file_bits": float(np.mean([c.file_bits for c in coded])),
                "fits": float(np.mean([c.fits for c in coded])),
                "quality": float(np.mean([c.quality for c in coded])),
            }
            row.update({k: float(v.double().mean()) for k, v in scores.items()})
            rows.append(row)
    return rows
