"""Training checkpoints on disk: ``checkpoint.pt`` (a plain ``torch.save``) and its checksum file ``checkpoint.json``.

``checkpoint.json`` records the SHA-256 of ``checkpoint.pt``; ``--resume`` refuses a file whose bytes do not match,
so a flipped bit or a truncated file ends in a :class:`~vqtok._io.CheckpointError` naming it, never in a silently
different run. Both files are replaced atomically, but not together, so the checksum file is written *first* and
lists the digest of the new file and of the one still on disk: a kill between the two writes leaves the old
checkpoint, which still verifies. ``checkpoint.pt`` stays loadable by plain ``torch.load`` for inspection.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import torch

from .._io import CheckpointError, atomic_write_bytes, read_versioned_json, sha256_bytes, sha256_file, write_json

__all__ = ["load_training_checkpoint", "save_training_checkpoint", "checksum_path"]

logger = logging.getLogger(__name__)

FORMAT = "vqtok-train-checkpoint"
FORMAT_VERSION = 1


def checksum_path(path: str | os.PathLike[str]) -> Path:
    """The checksum file that belongs to checkpoint ``path`` (``checkpoint.pt`` -> ``checkpoint.json``)."""
    path = Path(path)
    return path.with_suffix(".json")


def _accepted_digests(path: Path) -> set[str]:
    meta = read_versioned_json(checksum_path(path), FORMAT, FORMAT_VERSION, what="checkpoint checksum file")
    return {d for d in (meta.get("sha256"), meta.get("previous_sha256")) if isinstance(d, str)}


def save_training_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> str:
    """Writes ``state`` to ``path`` with ``torch.save`` and records its SHA-256 beside it. Returns the digest."""
    from ..version import __version__

    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = sha256_bytes(data)
    previous = None
    if path.is_file():
        # Keep accepting the file now on disk until the new one has replaced it, but only if it verified itself:
        # a corrupt old file must not become acceptable through this entry.
        try:
            on_disk = sha256_file(path)
            if on_disk in _accepted_digests(path):
                previous = on_disk
        except CheckpointError:
            previous = None
    write_json(
        checksum_path(path),
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "vqtok_version": __version__,
            "file": path.name,
            "step": int(state.get("step", -1)),
            "sha256": digest,
            "previous_sha256": previous,
        },
    )
    atomic_write_bytes(path, data)
    return digest


def load_training_checkpoint(path: str | os.PathLike[str], verify: bool = True) -> dict[str, Any]:
    """Reads a checkpoint written by :func:`save_training_checkpoint`, checking its SHA-256 first.

    A checkpoint without a checksum file (written by vqtok before checksums) loads with a warning.

    Raises:
        CheckpointError: When the file is missing, its bytes do not match the recorded SHA-256, or it cannot be
            unpickled (corrupt or truncated); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training checkpoint {str(path)!r} is missing")
    data = path.read_bytes()
    if verify:
        if checksum_path(path).is_file():
            accepted = _accepted_digests(path)
            if sha256_bytes(data) not in accepted:
                raise CheckpointError(
                    f"training checkpoint {str(path)!r} is corrupt or truncated, or was changed after saving: its "
                    f"SHA-256 does not match {checksum_path(path).name!r}"
                )
        else:
            logger.warning("%s has no checksum file %s (older vqtok): not verified", path, checksum_path(path).name)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - torch.load raises many types for a damaged file
        raise CheckpointError(
            f"training checkpoint {str(path)!r} is corrupt or truncated ({len(data)} bytes): {err}"
        ) from err
    if not isinstance(state, dict) or not {"step", "model", "optimizer", "scheduler", "rng"} <= set(state):
        raise CheckpointError(f"{str(path)!r} is not a vqtok training checkpoint (no model/optimizer/step entries)")
    return state
