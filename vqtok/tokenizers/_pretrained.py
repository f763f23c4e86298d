"""Release checkpoints: ``config.json`` + ``model.safetensors`` in one directory, swapped in atomically.

A checkpoint directory holds

* ``config.json``: ``{"format": "vqtok-tokenizer", "format_version": 2, "vqtok_version", "architecture",
  "config": {...}, "files": {"model.safetensors": "<sha256>"}}``;
* ``model.safetensors``: weights only (no optimizer, no discriminator), with the SHA-256 of the config in
  its metadata, so that weights paired with another model's config are caught before loading. Its header is
  written with sorted keys, so equal weights give byte-identical files.

The folder is built as a temporary sibling and exchanged with the old one in one step
(:func:`vqtok._io.atomic_directory`), so a kill at any instant leaves the old or the new checkpoint, never a mix.
On load, the SHA-256 of every file listed under ``files`` is checked and non-finite weights are refused (both
skipped with ``verify=False``). Format version 1 (no ``files``, written by vqtok before checksums) still loads.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# Re-exported for code written against the old location; new code imports them from vqtok._io.
from .._io import CheckpointError, atomic_directory, atomic_open, atomic_save_torch, read_versioned_json, sha256_bytes

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CheckpointError",
    "atomic_open",
    "atomic_save_torch",
    "canonical_safetensors",
    "read_checkpoint_config",
    "read_checkpoint_weights",
    "write_checkpoint",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "vqtok-tokenizer"
# 1: config + weights; 2: adds the per-file SHA-256 under "files".
FORMAT_VERSION = 2


def _config_digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps({"architecture": payload["architecture"], "config": payload["config"]}, sort_keys=True)
    return sha256_bytes(canonical.encode())


def _split_safetensors(data: bytes, source: str) -> tuple[dict[str, Any], int]:
    """The parsed JSON header of a safetensors blob and the offset where tensor data starts."""
    if len(data) < 8:
        raise CheckpointError(f"weights file {source!r} is truncated ({len(data)} bytes)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise CheckpointError(f"weights file {source!r} is truncated: header of {size} bytes, file of {len(data)}")
    try:
        header = json.loads(data[8 : 8 + size])
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"weights file {source!r} has a corrupt header: {err}") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"weights file {source!r} has a corrupt header (not a JSON object)")
    return header, 8 + size


def canonical_safetensors(data: bytes) -> bytes:
    """Rewrites a safetensors blob's header with sorted keys, so equal tensors and metadata give equal bytes.

    ``safetensors`` serialises the metadata map in hash order, which changes from one process to the next. Tensor
    data and offsets are left as they are (their order is already deterministic: by dtype alignment, then name).
    """
    header, start = _split_safetensors(data, "<in memory>")
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8-byte alignment with spaces
    return struct.pack("<Q", len(text)) + text + data[start:]


def write_checkpoint(
    directory: str | os.PathLike[str],
    architecture: str,
    config: dict[str, Any],
    state_dict: dict[str, Tensor],
    vqtok_version: str,
) -> Path:
    """Builds the checkpoint folder beside ``directory`` and swaps it in atomically. Returns the directory."""
    from safetensors.torch import save

    directory = Path(directory)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vqtok_version": vqtok_version,
        "architecture": architecture,
        "config": config,
    }
    # safetensors refuses shared or non-contiguous storage; a detached contiguous copy of each tensor avoids both.
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in sorted(state_dict.items())}
    blob = canonical_safetensors(
        save(tensors, metadata={"config_sha256": _config_digest(payload), "architecture": architecture})
    )
    payload["files"] = {WEIGHTS_NAME: sha256_bytes(blob)}
    with atomic_directory(directory) as tmp:
        (tmp / WEIGHTS_NAME).write_bytes(blob)
        (tmp / CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return directory


def read_checkpoint_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads and validates ``config.json``.

    Raises:
        CheckpointError: When the directory or file is missing, the JSON is unreadable or not ours, or it was
            saved by a newer vqtok (the message names that version).
    """
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {str(directory)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} is missing: not a vqtok checkpoint directory (see save_pretrained)")
    payload = read_versioned_json(path, FORMAT, FORMAT_VERSION, what="tokenizer config")
    for key in ("architecture", "config"):
        if key not in payload:
            raise CheckpointError(f"{str(path)!r} lacks the {key!r} entry")
    files = payload.get("files")
    if payload["format_version"] >= 2:
        if not isinstance(files, dict) or not isinstance(files.get(WEIGHTS_NAME), str):
            raise CheckpointError(f"{str(path)!r} lacks the SHA-256 of {WEIGHTS_NAME!r} under 'files'")
    return payload


def read_checkpoint_weights(
    directory: str | os.PathLike[str], payload: dict[str, Any], verify: bool = True
) -> dict[str, Tensor]:
    """Reads ``model.safetensors`` and checks that it belongs to ``payload`` (the parsed config).

    Args:
        directory: The checkpoint directory.
        payload: Its parsed ``config.json`` (see :func:`read_checkpoint_config`).
        verify: Check the recorded SHA-256 of the file and refuse non-finite weights.

    Raises:
        CheckpointError: When the file is missing, truncated, corrupt (checksum mismatch), was saved with another
            config, or (with ``verify``) holds a NaN or infinite weight; the message names the file or tensor.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} is missing")
    data = path.read_bytes()
    expected = (payload.get("files") or {}).get(WEIGHTS_NAME)
    if verify and expected is not None:
        actual = sha256_bytes(data)
        if actual != expected:
            raise CheckpointError(
                f"weights file {str(path)!r} is corrupt or truncated, or was changed after saving: its SHA-256 is "
                f"{actual[:16]}..., {CONFIG_NAME} records {str(expected)[:16]}... (pass verify=False to load it anyway)"
            )
    header, _ = _split_safetensors(data, str(path))
    try:
        tensors = load(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"weights file {str(path)!r} is corrupt or truncated ({len(data)} bytes): {err}") from err
    metadata = header.get("__metadata__") or {}
    digest = metadata.get("config_sha256")
    if digest is not None and digest != _config_digest(payload):
        raise CheckpointError(
            f"weights {str(path)!r} were saved with a different config than {CONFIG_NAME!r} "
            f"(architecture {metadata.get('architecture')!r}); the two files do not belong together"
        )
    if verify:
        for name, tensor in tensors.items():
            if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise CheckpointError(
                    f"weights file {str(path)!r}: tensor {name!r} holds {bad} non-finite (NaN or inf) value(s); "
                    "the model was saved after training diverged (pass verify=False to load it anyway)"
                )
    return tensors
