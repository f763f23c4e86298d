"""One-file storage of a fitted codec and (optionally) its packed codes: safetensors, versioned, checksummed.

The safetensors metadata holds one JSON object under ``"vqtok"``: ``format`` (``"vqtok.vectors"``),
``format_version``, the codec's class and settings, and the SHA-256 of every tensor's bytes. :func:`load` checks,
in order and each with a :class:`vqtok._io.CheckpointError` naming the file: that it is a readable safetensors file
written by :func:`save`; its format version; its class and settings; that every tensor has the shape and dtype
the settings imply (so a file whose metadata was edited, e.g. ``PQ`` -> ``RQ`` or ``dim`` 16 -> 32, is caught
before any computation); and the checksums (a flipped bit in a codebook is caught, not decoded into garbage).
Files of format ``"vqtok.vectors/1"`` (no checksums) written before version 2 still load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import Tensor

from .._io import CheckpointError, atomic_write_bytes, sha256_bytes
from ..version import __version__
from .base import VectorCodec, codec_class

__all__ = ["FORMAT", "FORMAT_VERSION", "check_header", "load", "save", "tensor_sha256"]

FORMAT = "vqtok.vectors"
FORMAT_VERSION = 2
_LEGACY_FORMAT = "vqtok.vectors/1"


def tensor_sha256(t: Tensor) -> str:
    """Hex SHA-256 of a CPU tensor's raw bytes (row-major, native byte order)."""
    return sha256_bytes(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())


def check_header(meta: Any, path: str | Path, fmt: str = FORMAT, max_version: int = FORMAT_VERSION) -> int:
    """Checks ``format`` / ``format_version`` of a metadata object; returns the version (1 for legacy files).

    Raises:
        CheckpointError: Naming ``path`` on a non-object, a foreign format or an invalid or too new version.
    """
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: vqtok metadata is not a JSON object")
    if fmt == FORMAT and meta.get("format") == _LEGACY_FORMAT:
        return 1
    if meta.get("format") != fmt:
        raise CheckpointError(f"{path} is not a {fmt} file (its 'format' is {meta.get('format')!r})")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path} has an invalid format_version {version!r} (expected a positive integer)")
    if version > max_version:
        raise CheckpointError(
            f"{path} was saved by vqtok {meta.get('vqtok_version', '(newer)')} with format_version {version}; this "
            f"vqtok reads up to {max_version}: upgrade vqtok"
        )
    return version


def codec_meta(codec: VectorCodec) -> dict[str, Any]:
    """The JSON description of a codec (class and constructor settings) that :func:`build_codec` inverts."""
    return {
        "class": type(codec).__name__,
        "dim": codec.dim,
        "num_codebooks": codec.num_codebooks,
        "codebook_bits": codec.codebook_bits,
        "seed": codec.seed,
        "config": codec.config(),
    }


def build_codec(meta: dict[str, Any], path: str | Path, device: str | torch.device | None) -> VectorCodec:
    """An unfitted codec from :func:`codec_meta`'s description, with every field checked.

    Raises:
        CheckpointError: Naming ``path`` and the field on an unknown class, a missing or ill-typed field, or a
            setting this version does not know.
    """
    cls = codec_class(str(meta.get("class")))
    if cls is None:
        raise CheckpointError(f"{path}: unknown codec class {meta.get('class')!r} (expected PQ, OPQ, RQ or LSQ)")
    for key in ("dim", "num_codebooks", "codebook_bits", "seed"):
        if isinstance(meta.get(key), bool) or not isinstance(meta.get(key), int):
            raise CheckpointError(f"{path}: metadata field {key!r} must be an integer, got {meta.get(key)!r}")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: metadata field 'config' must be an object, got {config!r}")
    unknown = sorted(set(config) - cls.init_parameters())
    if unknown:
        raise CheckpointError(
            f"{path}: {meta['class']} settings {unknown} are not known to this vqtok version (the file was written "
            f"by a different one); refit the codec, or load it with the version that wrote it"
        )
    try:
        return cls(
            meta["dim"], meta["num_codebooks"], meta["codebook_bits"], seed=meta["seed"], device=device,
            progress=False, **config,
        )  # fmt: skip
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid {meta['class']} settings in metadata: {err}") from err


def load_codec_tensors(
    codec: VectorCodec, tensors: dict[str, Tensor], path: str | Path, checksums: dict[str, str] | None
) -> None:
    """Checks names, shapes, dtypes, finiteness and (if given) checksums, then installs the tensors.

    Raises:
        CheckpointError: Naming ``path`` and the tensor.
    """
    expected = codec.state_dict()
    if set(tensors) != set(expected):
        raise CheckpointError(
            f"{path}: {type(codec).__name__} needs tensors {sorted(expected)}, the file holds {sorted(tensors)}"
        )
    for name, t in tensors.items():
        if tuple(t.shape) != tuple(expected[name].shape) or not t.is_floating_point():
            raise CheckpointError(
                f"{path}: tensor {name!r} is {tuple(t.shape)} {t.dtype}, but {type(codec).__name__}(dim={codec.dim}, "
                f"num_codebooks={codec.num_codebooks}, codebook_bits={codec.codebook_bits}) needs "
                f"{tuple(expected[name].shape)} float (metadata and tensors disagree)"
            )
        if checksums is not None and checksums.get(name) != tensor_sha256(t):
            raise CheckpointError(f"{path}: checksum mismatch in tensor {name!r}: the file is corrupt")
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or Inf")
    codec.load_state_dict(tensors)


def save(path: str | Path, codec: VectorCodec, indices: Tensor | None = None) -> None:
    """Writes a fitted codec, and optionally bit-packed indices, to one safetensors file, atomically.

    Args:
        path: Destination file (replaced in one step: a reader sees the old or the new file).
        codec: A fitted codec.
        indices: Optional ``(N, M)`` indices, stored packed as ``(N, code_size)`` uint8.
    """
    codec.require_fitted()
    tensors = {k: v.detach().cpu().contiguous() for k, v in codec.state_dict().items()}
    if indices is not None:
        tensors["packed_indices"] = codec.pack(indices).contiguous()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vqtok_version": __version__,
        **codec_meta(codec),
        "sha256": {k: tensor_sha256(v) for k, v in sorted(tensors.items())},
    }
    atomic_write_bytes(path, save_bytes(tensors, metadata={"vqtok": json.dumps(meta, sort_keys=True)}))


def load(
    path: str | Path, device: str | torch.device | None = None, verify: bool = True
) -> tuple[VectorCodec, Tensor | None]:
    """Reads a file written by :func:`save`.

    Args:
        path: Source file.
        device: Device of the returned codec (CUDA when available if ``None``).
        verify: Check the SHA-256 of every tensor (default); ``False`` skips only that check.

    Returns:
        ``(codec, indices)`` where ``indices`` is ``(N, M)`` int64 or ``None`` if none were saved.

    Raises:
        CheckpointError: (a ``ValueError``) naming the file, if it is corrupt or truncated, was not written by
            :func:`save`, is of a newer format, holds settings this version does not know, or its tensors do not
            match its metadata or their checksums.
        FileNotFoundError: If there is no file at ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no vector codec file at {str(path)!r}")
    data = path.read_bytes()
    try:
        tensors = load_bytes(data)
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("vqtok")
    except Exception as e:  # safetensors raises its own error types for truncated or corrupt files
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from e
    if raw is None:
        raise CheckpointError(f"{path} has no vqtok metadata (not written by vqtok.vectors.save)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: vqtok metadata is not valid JSON: {e}") from e
    version = check_header(meta, path)
    codec = build_codec(meta, path, device)
    packed = tensors.pop("packed_indices", None)
    sums = meta.get("sha256") if version >= 2 and verify else None
    if version >= 2 and verify and not isinstance(sums, dict):
        raise CheckpointError(f"{path}: metadata has no 'sha256' table of tensor checksums")
    load_codec_tensors(codec, tensors, path, sums)
    if packed is None:
        return codec, None
    if sums is not None and sums.get("packed_indices") != tensor_sha256(packed):
        raise CheckpointError(f"{path}: checksum mismatch in tensor 'packed_indices': the file is corrupt")
    try:
        indices = codec.unpack(packed)
        codec.check_indices(indices)
    except ValueError as e:
        raise CheckpointError(f"{path}: packed indices do not fit the codec: {e}") from e
    return codec, indices
