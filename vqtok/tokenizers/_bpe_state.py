"""A Hugging Face ``tokenizers`` BPE model over integer symbols, as two tensors that fit a checkpoint's state.

FAST (:mod:`vqtok.tokenizers.fast`) writes each integer symbol as one character ``chr(base + symbol)``. Its BPE
model is then fully described by

* ``vocab`` ``(V, L)`` int64: row ``i`` holds the symbols of token id ``i``, right-padded with ``-1``;
* ``merges`` ``(M, 2)`` int64: the merge rules as pairs of token ids, highest priority first;

so it is saved in ``model.safetensors`` with the rest of a tokenizer's state, and rebuilt exactly (same ids, same
merge order, no pre-tokenizer or normalizer, as trained by :mod:`vqtok.tokenizers.fast`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "bpe_from_tensors",
    "bpe_to_tensors",
    "read_legacy_fast",
    "token_rows",
    "train_bpe",
    "unzigzag",
    "zigzag",
]


def zigzag(v: np.ndarray) -> np.ndarray:
    """Integers to symbols ``0, -1, 1, -2, ... -> 0, 1, 2, 3, ...``."""
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def unzigzag(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zigzag`."""
    return np.where(z % 2 == 0, z // 2, -(z + 1) // 2)


def train_bpe(texts: list[str], alphabet: list[str], vocab_size: int, min_frequency: int) -> Any:
    """A BPE ``tokenizers.Tokenizer`` (no normalizer, no pre-tokenizer, no specials) trained on ``texts``."""
    from tokenizers import Tokenizer, models, trainers

    bpe = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=alphabet,
        show_progress=False,
        special_tokens=[],
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return bpe


def bpe_to_tensors(bpe: Any, base: int) -> tuple[Tensor, Tensor]:
    """``(vocab (V, L), merges (M, 2))`` of a trained ``tokenizers.Tokenizer`` with a BPE model.

    Raises:
        ValueError: When the ids are not ``0..V-1`` or a token holds a character below ``base``.
    """
    vocab = bpe.get_vocab()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ValueError("BPE token ids are not contiguous from 0")
    width = max((len(tok) for tok, _ in by_id), default=1)
    table = torch.full((len(by_id), width), -1, dtype=torch.long)
    for i, (tok, _) in enumerate(by_id):
        symbols = [ord(ch) - base for ch in tok]
        if min(symbols, default=0) < 0:
            raise ValueError(f"BPE token {i} holds a character outside the symbol block")
        table[i, : len(symbols)] = torch.tensor(symbols, dtype=torch.long)
    raw = json.loads(bpe.to_str())["model"]["merges"]
    # tokenizers < 0.20 writes merges as "left right" strings, later versions as [left, right] pairs.
    pairs = [m.split(" ") if isinstance(m, str) else m for m in raw]
    merges = torch.tensor([[vocab[a], vocab[b]] for a, b in pairs], dtype=torch.long).reshape(-1, 2)
    return table, merges


def bpe_from_tensors(vocab: Tensor, merges: Tensor, base: int, num_symbols: int) -> Any:
    """Rebuilds the ``tokenizers.Tokenizer`` that :func:`bpe_to_tensors` described.

    Args:
        vocab: ``(V, L)`` symbols per token id, ``-1`` padded.
        merges: ``(M, 2)`` token id pairs.
        base: Code point of symbol 0.
        num_symbols: Size of the symbol alphabet; every symbol must be a token of its own, so that any sequence
            of symbols in ``[0, num_symbols)`` encodes.

    Raises:
        ValueError: On malformed tables (wrong rank, padding inside a token, symbols out of range, duplicate
            tokens, a missing single-symbol token, a merge of unknown ids or one whose result is not a token).
    """
    from tokenizers import Tokenizer, models

    if vocab.ndim != 2 or merges.ndim != 2 or merges.shape[1] != 2 or vocab.is_floating_point():
        raise ValueError(
            f"BPE tables must be vocab (V, L) and merges (M, 2) integers, got {vocab.shape}, {merges.shape}"
        )
    real = vocab >= 0
    lengths = real.sum(1)
    if bool((lengths == 0).any()) or not bool((real == (torch.arange(vocab.shape[1]) < lengths[:, None])).all()):
        raise ValueError("every BPE token must be a non-empty run of symbols followed only by -1 padding")
    if bool((vocab >= num_symbols).any()):
        raise ValueError(f"BPE tokens hold symbols outside [0, {num_symbols})")
    names = [
        "".join(chr(base + int(v)) for v in row[:n]) for row, n in zip(vocab.tolist(), lengths.tolist(), strict=True)
    ]
    ids = {name: i for i, name in enumerate(names)}
    if len(ids) != len(names):
        raise ValueError("BPE vocabulary holds duplicate tokens")
    missing = [s for s in range(num_symbols) if chr(base + s) not in ids]
    if missing:
        raise ValueError(f"BPE vocabulary lacks the single-symbol tokens {missing[:8]}")
    if merges.numel() and (int(merges.min()) < 0 or int(merges.max()) >= len(names)):
        raise ValueError(f"BPE merges name ids outside [0, {len(names)})")
    rules = [(names[a], names[b]) for a, b in merges.tolist()]
    if any(a + b not in ids for a, b in rules):
        raise ValueError("a BPE merge produces a token that is not in the vocabulary")
    return Tokenizer(models.BPE(vocab=ids, merges=rules))


def token_rows(tokens: Any) -> list[list[Any]]:
    """Normalizes the accepted token containers to lists of per-chunk id lists, or raises ValueError."""
    if isinstance(tokens, (Tensor, np.ndarray)):
        arr = tokens.detach().cpu().numpy() if isinstance(tokens, Tensor) else tokens
        if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
            raise ValueError(f"token array must be 2-D (B, L) integer, got {arr.dtype} {arr.shape}")
        return arr.tolist()
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
        raise ValueError(f"tokens must be a sequence of token id sequences, got {type(tokens).__name__}")
    rows = []
    for i, seq in enumerate(tokens):
        if isinstance(seq, (Tensor, np.ndarray)):
            arr = seq.detach().cpu().numpy() if isinstance(seq, Tensor) else seq
            if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
                raise ValueError(f"sequence {i}: expected a 1-D integer array, got {arr.dtype} {arr.shape}")
            seq = arr.tolist()
        elif isinstance(seq, (str, bytes)) or not isinstance(seq, Iterable):
            raise ValueError(f"sequence {i}: expected a sequence of token ids, got {type(seq).__name__}")
        rows.append(list(seq))
    return rows


def read_legacy_fast(
    config_path: str | os.PathLike[str], bpe_path: str | os.PathLike[str], base: int
) -> tuple[tuple[Any, ...], Tensor, Tensor, Tensor]:
    """Reads the two-file FAST folder of vqtok <= 0.1 (``fast_config.json`` + ``tokenizer.json``).

    Returns:
        ``(constructor args, clip, vocab, merges)``.

    Raises:
        CheckpointError: When a file is missing, corrupt, of another format or newer than version 1.
    """
    from tokenizers import Tokenizer

    from .._io import read_versioned_json
    from ._pretrained import CheckpointError

    config = read_versioned_json(config_path, "vqtok-fast", 1, "FAST config")
    try:
        args = tuple(config[k] for k in ("channels", "chunk_size", "scale", "vocab_size", "min_frequency"))
        bpe = Tokenizer.from_file(str(bpe_path))
        return (args, torch.tensor(int(config["clip"])), *bpe_to_tensors(bpe, base))
    except Exception as err:  # noqa: BLE001 - tokenizers raises its own exception types for unreadable files
        raise CheckpointError(f"FAST tokenizer {str(bpe_path)!r} / {str(config_path)!r} is unreadable: {err}") from err
