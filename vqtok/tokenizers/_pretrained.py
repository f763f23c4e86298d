"""Release checkpoints: ``config.json`` + ``model.safetensors`` in one directory, written atomically.

A checkpoint directory holds

* ``config.json``: ``{"format": "vqtok-tokenizer", "format_version": 1, "vqtok_version", "architecture",
  "config": {...}}``;
* ``model.safetensors``: weights only (no optimizer, no discriminator), with the SHA-256 of the config in
  its metadata, so that weights paired with another model's config are caught before loading.

Every file is written to a temporary name in the same directory and then renamed over the target, so a
crash never leaves a half-written file behind (rename is atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CheckpointError",
    "atomic_open",
    "atomic_save_torch",
    "read_checkpoint_config",
    "read_checkpoint_weights",
    "write_checkpoint",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "vqtok-tokenizer"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt or does not match the model it is loaded into."""


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Opens a temporary file next to ``path``; on success it is fsynced and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_save_torch(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through :func:`atomic_open`."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def _config_digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps({"architecture": payload["architecture"], "config": payload["config"]}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def write_checkpoint(
    directory: str | os.PathLike[str],
    architecture: str,
    config: dict[str, Any],
    state_dict: dict[str, Tensor],
    vqtok_version: str,
) -> Path:
    """Writes weights then config, each atomically. Returns the directory."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vqtok_version": vqtok_version,
        "architecture": architecture,
        "config": config,
    }
    # safetensors refuses shared or non-contiguous storage; a detached contiguous copy of each tensor avoids both.
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in state_dict.items()}
    blob = save(tensors, metadata={"config_sha256": _config_digest(payload), "architecture": architecture})
    with atomic_open(directory / WEIGHTS_NAME, "wb") as f:
        f.write(blob)
    with atomic_open(directory / CONFIG_NAME, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    return directory


def read_checkpoint_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads and validates ``config.json``.

    Raises:
        CheckpointError: When the directory or file is missing or the JSON is unreadable or not ours.
    """
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {str(directory)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} is missing: not a vqtok checkpoint directory (see save_pretrained)")
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{str(path)!r} is corrupt or truncated: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a vqtok tokenizer config (no 'format': {FORMAT!r})")
    if int(payload.get("format_version", -1)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has format_version {payload['format_version']}, newer than this vqtok "
            f"supports ({FORMAT_VERSION}); upgrade vqtok"
        )
    for key in ("architecture", "config"):
        if key not in payload:
            raise CheckpointError(f"{str(path)!r} lacks the {key!r} entry")
    return payload


def read_checkpoint_weights(directory: str | os.PathLike[str], payload: dict[str, Any]) -> dict[str, Tensor]:
    """Reads ``model.safetensors`` and checks that it belongs to ``payload`` (the parsed config).

    Raises:
        CheckpointError: When the file is missing, truncated, corrupt, or was saved with another config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} is missing")
    data = path.read_bytes()
    try:
        tensors = load(data)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"weights file {str(path)!r} is corrupt or truncated ({len(data)} bytes): {err}") from err
    digest = metadata.get("config_sha256")
    if digest is not None and digest != _config_digest(payload):
        raise CheckpointError(
            f"weights {str(path)!r} were saved with a different config than {CONFIG_NAME!r} "
            f"(architecture {metadata.get('architecture')!r}); the two files do not belong together"
        )
    return tensors
