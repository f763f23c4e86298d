"""One file per index: safetensors layout, versioned and checksummed, codes memory-mapped on load.

The file holds every tensor of the index (rotation, coarse centroids, codec state, SQ8 ranges, list offsets and
the per-vector payloads) and, under the ``"vqtok"`` metadata key, ``format`` (``"vqtok.vectors.index"``),
``format_version``, the settings and a SHA-256 per tensor. :func:`load_index` parses the safetensors header itself
so that each per-vector payload is a copy-on-write ``numpy.memmap`` of the file (the OS pages codes in as searches
touch them; nothing is read up front except for the checksums, which stream through the mapping).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as save_bytes
from torch import Tensor

from ..._io import CheckpointError, atomic_write_bytes, sha256_bytes
from ...version import __version__
from ..io import build_codec, check_header, codec_meta, load_codec_tensors, tensor_sha256
from .base import Index
from .lists import InvertedLists
from .refine import SQ8

__all__ = ["load_index", "save_index"]

FORMAT = "vqtok.vectors.index"
FORMAT_VERSION = 1
_DTYPES = {"F32": (np.float32, torch.float32), "I64": (np.int64, torch.int64), "U8": (np.uint8, torch.uint8)}
_SETTINGS = ("dim", "nlist", "metric", "refine", "nprobe", "k_factor", "seed", "opq", "opq_iters")


def save_index(path: str | Path, index: Index) -> None:
    """Writes a trained index (and its vectors) to one file, atomically.

    Args:
        path: Destination (replaced in one step).
        index: A trained :class:`Index`.
    """
    if not index.is_trained:
        raise RuntimeError("only a trained index can be saved; call train() first")
    tensors: dict[str, Tensor] = {"lists.offsets": index.lists.offsets}
    tensors.update({f"lists.{k}": v for k, v in index.lists.payloads.items()})
    for name, t in (("rotation", index.rotation), ("coarse", index.coarse)):
        if t is not None:
            tensors[name] = t
    if index.sq8 is not None:
        tensors["sq8.vmin"], tensors["sq8.vdiff"] = index.sq8.vmin, index.sq8.vdiff
    if index.codec is not None:
        tensors.update({f"codec.{k}": v for k, v in index.codec.state_dict().items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vqtok_version": __version__,
        **{k: getattr(index, k) for k in _SETTINGS},
        "codec": None if index.codec is None else codec_meta(index.codec),
        "sha256": {k: tensor_sha256(v) for k, v in sorted(tensors.items())},
    }
    atomic_write_bytes(path, save_bytes(tensors, metadata={"vqtok": json.dumps(meta, sort_keys=True)}))


def _header(path: Path) -> tuple[dict[str, Any], int]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is not a vqtok index file (truncated or empty)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100 << 20:
            raise CheckpointError(f"{path} is not a vqtok index file (bad header length; truncated or foreign)")
        try:
            header = json.loads(f.read(n))
            meta = json.loads(header.get("__metadata__", {}).get("vqtok"))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError) as err:
            raise CheckpointError(f"{path} is not a vqtok index file (unreadable header: {err})") from err
    header.pop("__metadata__")
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if info.get("dtype") not in _DTYPES or 8 + n + end > size or begin > end:
            raise CheckpointError(f"{path}: tensor {name!r} is truncated or of an unsupported dtype")
    return {"meta": meta, "tensors": header}, 8 + n


def _tensor(path: Path, info: dict[str, Any], base: int, name: str, sums: dict[str, str] | None) -> Tensor:
    np_dtype, torch_dtype = _DTYPES[info["dtype"]]
    begin, end = info["data_offsets"]
    shape = tuple(info["shape"])
    if end == begin:
        arr = np.zeros(shape, dtype=np_dtype)
    else:
        arr = np.memmap(path, dtype=np_dtype, mode="c", offset=base + begin, shape=shape)
    if int(np.prod(shape)) * np.dtype(np_dtype).itemsize != end - begin:
        raise CheckpointError(f"{path}: tensor {name!r} has shape {shape} but {end - begin} bytes")
    if sums is not None and sums.get(name) != sha256_bytes(memoryview(arr).cast("B") if arr.size else b""):
        raise CheckpointError(f"{path}: checksum mismatch in tensor {name!r}: the file is corrupt")
    return torch.from_numpy(arr)


def load_index(path: str | Path, verify: bool = True) -> Index:
    """Reads a file written by :func:`save_index`; per-vector payloads are memory-mapped.

    Args:
        path: Source file.
        verify: Check every tensor's SHA-256 (default); ``False`` skips only that.

    Raises:
        FileNotFoundError: If there is no file at ``path``.
        CheckpointError: Naming the file, if it is truncated, corrupt, foreign, of a newer format, or its tensors
            disagree with its settings or checksums.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no index file at {str(path)!r}")
    parsed, base = _header(path)
    meta, infos = parsed["meta"], parsed["tensors"]
    check_header(meta, path, FORMAT, FORMAT_VERSION)
    sums = meta.get("sha256") if verify else None
    if verify and not isinstance(sums, dict):
        raise CheckpointError(f"{path}: metadata has no 'sha256' table of tensor checksums")
    tensors = {name: _tensor(path, info, base, name, sums) for name, info in infos.items()}
    try:
        settings = {k: meta[k] for k in _SETTINGS}
        codec = None if meta["codec"] is None else build_codec(meta["codec"], path, "cpu")
        if codec is not None:
            state = {k[len("codec.") :]: v for k, v in tensors.items() if k.startswith("codec.")}
            load_codec_tensors(codec, state, path, None)  # checksums already verified above
        index = Index(codec=codec, rotation=tensors.get("rotation"), **settings)
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path}: index settings are missing or invalid: {err!r}") from err
    index.coarse = tensors.get("coarse")
    if "sq8.vmin" in tensors:
        index.sq8 = SQ8(tensors["sq8.vmin"], tensors["sq8.vdiff"])
    payloads = {k[len("lists.") :]: v for k, v in tensors.items() if k.startswith("lists.") and k != "lists.offsets"}
    expected = index.lists.payloads
    offsets = tensors.get("lists.offsets")
    n = payloads.get("ids", torch.zeros(0)).shape[0]
    bad = set(payloads) != set(expected) or offsets is None or offsets.shape != (max(index.nlist, 1) + 1,)
    bad = bad or any(v.shape[0] != n or v.shape[1:] != expected[k].shape[1:] for k, v in payloads.items())
    if bad or (index.nlist and (index.coarse is None or tuple(index.coarse.shape) != (index.nlist, index.dim))):
        raise CheckpointError(f"{path}: the stored lists or centroids do not match the index settings")
    if int(offsets[-1]) != n or bool((offsets[1:] < offsets[:-1]).any()):
        raise CheckpointError(f"{path}: list offsets are inconsistent with the {n} stored vectors")
    index.lists = InvertedLists(max(index.nlist, 1), payloads, offsets.clone())
    index.is_trained = True
    return index
