"""The on-disk folder of a :class:`~vqtok.vocab.MultimodalVocab`: writing it atomically, loading it verified.

Layout: ``text/tokenizer.json``, ``modalities/<name>/`` (each a tokenizer checkpoint) and ``vocab.json`` with
the id layout and the SHA-256 of every file. Written for vqtok.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from .._io import CheckpointError, atomic_directory, read_versioned_json, sha256_file
from ..tokenizers import BaseTokenizer
from .text import load_text_tokenizer

if TYPE_CHECKING:
    from tokenizers import Tokenizer as TextTokenizer

    from .multimodal import MultimodalVocab

__all__ = ["FORMAT", "FORMAT_VERSION", "TEXT_NAME", "VOCAB_NAME", "VocabParts", "read_vocab", "save_vocab"]

VOCAB_NAME = "vocab.json"
TEXT_NAME = "text/tokenizer.json"
FORMAT = "vqtok-multimodal-vocab"
FORMAT_VERSION = 1


def save_vocab(vocab: MultimodalVocab, directory: str | os.PathLike[str]) -> Path:
    """Writes ``vocab`` into ``directory`` (see :meth:`MultimodalVocab.save_pretrained`).

    Returns:
        The directory.
    """
    from ..version import __version__

    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        (tmp / TEXT_NAME).parent.mkdir(parents=True)
        (tmp / TEXT_NAME).write_text(vocab.text.to_str(), encoding="utf-8")
        files = [TEXT_NAME]
        for name, tok in vocab.tokenizers.items():
            sub = tmp / "modalities" / name
            tok.save_pretrained(sub)
            files += sorted(p.relative_to(tmp).as_posix() for p in sub.iterdir() if not p.name.startswith("."))
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "vqtok_version": __version__,
            "layout": vocab.config(),
            "files": {rel: sha256_file(tmp / rel) for rel in files},
        }
        (tmp / VOCAB_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return directory


class VocabParts(NamedTuple):
    """What :func:`read_vocab` loads: the constructor arguments of the vocabulary and the recorded layout."""

    text: TextTokenizer
    tokenizers: dict[str, BaseTokenizer]
    grid_shapes: dict[str, tuple[int, ...]]
    max_grid_size: int
    layout: dict[str, Any]


def read_vocab(directory: str | os.PathLike[str], map_location: str | torch.device, verify: bool) -> VocabParts:
    """Reads and verifies the parts of a folder written by :func:`save_vocab`.

    The caller builds the vocabulary from them and compares its layout with ``layout``
    (see :meth:`MultimodalVocab.from_pretrained`).

    Raises:
        CheckpointError: When ``vocab.json`` or a part is missing, corrupt, altered after saving or saved by a
            newer vqtok.
    """
    directory = Path(directory)
    path = directory / VOCAB_NAME
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} is missing: not a MultimodalVocab directory (see save_pretrained)")
    payload = read_versioned_json(path, FORMAT, FORMAT_VERSION, what="MultimodalVocab file")
    files = payload.get("files", {})
    if not isinstance(files, dict) or not isinstance(payload.get("layout"), dict):
        raise CheckpointError(f"{str(path)!r} is corrupt: 'files' and 'layout' must be mappings")
    for rel, digest in files.items():
        part = directory / rel
        if not part.is_file():
            raise CheckpointError(f"vocabulary part {str(part)!r} is missing")
        if verify and sha256_file(part) != digest:
            raise CheckpointError(
                f"vocabulary part {str(part)!r} is corrupt or was changed after saving (SHA-256 differs from "
                f"{VOCAB_NAME}; pass verify=False to load it anyway)"
            )
    layout = payload["layout"]
    try:
        text = load_text_tokenizer(directory / TEXT_NAME)
    except (FileNotFoundError, ValueError) as err:
        raise CheckpointError(f"text tokenizer of {str(directory)!r}: {err}") from err
    tokenizers = {
        m["name"]: BaseTokenizer.from_pretrained(
            directory / "modalities" / m["name"], map_location=map_location, verify=verify
        )
        for m in layout["modalities"]
    }
    grids = {m["name"]: tuple(m["grid_shape"]) for m in layout["modalities"] if m["grid_shape"] is not None}
    return VocabParts(text, tokenizers, grids, layout["max_grid_size"], layout)
