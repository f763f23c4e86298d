"""FAST-style training-free action tokenizer: per-chunk DCT, integer rounding, then byte-pair encoding.

After Pertsch et al., "FAST: Efficient Action Tokenization for Vision-Language-Action Models",
arXiv:2501.09747: each chunk ``(C, H)`` is transformed with an orthonormal DCT-II over time, per channel;
coefficients are multiplied by ``scale`` and rounded to integers (the only lossy step); the ``(H, C)``
coefficient matrix is flattened frequency-major (all channels' lowest frequency first), so the many zero
high-frequency coefficients form long runs that BPE (Hugging Face ``tokenizers``) merges into few tokens.
Written for vqtok; no code was copied.

Integers map to unicode characters by zig-zag order (``0, -1, 1, -2, ...`` -> ``U+4E00, U+4E01, ...``), a
block with no whitespace or surrogates; every value in ``[-clip, clip]`` is in the BPE alphabet, so any
in-range integer sequence encodes losslessly. Coefficients beyond ``clip`` (fixed at fit time) are clipped
with a warning.

This is not an ``nn.Module`` tokenizer: it has ``fit``/``encode``/``decode``/``save``/``load`` and
variable-length output (a list of token ids per chunk).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["FASTTokenizer", "dct_matrix"]

_BASE = 0x4E00
# Zig-zag values must stay below the UTF-16 surrogate block that starts at U+D800.
_MAX_ZIGZAG = 0xD800 - _BASE - 1
_CONFIG_NAME = "fast_config.json"
_BPE_NAME = "tokenizer.json"
_FORMAT_VERSION = 1


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``(n, n)``: ``coeffs = D @ x`` and ``x = D.T @ coeffs``."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    d = np.cos(np.pi * (t + 0.5) * k / n) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    return np.where(z % 2 == 0, z // 2, -(z + 1) // 2)


def _token_rows(tokens: Any) -> list[list[Any]]:
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


class FASTTokenizer:
    """DCT + rounding + BPE tokenizer for ``(B, C, H)`` action chunks.

    Args:
        channels: Channels C of a chunk.
        chunk_size: Steps H of a chunk.
        scale: Multiplier before rounding; larger keeps more precision and yields more tokens. The
            rounding error is uniform with step ``1 / scale`` per coefficient, i.e. an MSE of about
            ``1 / (12 scale^2)`` per value, as the DCT is orthonormal.
        vocab_size: BPE vocabulary size (alphabet + merges).
        min_frequency: Minimum count of a pair for BPE to merge it.

    Raises:
        ValueError: On non-positive sizes or scale.
    """

    def __init__(
        self,
        channels: int,
        chunk_size: int,
        scale: float = 10.0,
        vocab_size: int = 1024,
        min_frequency: int = 2,
    ) -> None:
        if channels < 1 or chunk_size < 1 or not scale > 0 or vocab_size < 2:
            raise ValueError(
                f"bad FAST settings: channels={channels}, chunk_size={chunk_size}, scale={scale}, vocab={vocab_size}"
            )
        self.channels = int(channels)
        self.chunk_size = int(chunk_size)
        self.scale = float(scale)
        self.vocab_size = int(vocab_size)
        self.min_frequency = int(min_frequency)
        self.clip: int | None = None
        self._bpe: Any = None
        self._dct = dct_matrix(self.chunk_size)

    # ------------------------------------------------------------------------------- integer codes
    @property
    def values_per_chunk(self) -> int:
        """``C * H``: integers (characters) per chunk before BPE."""
        return self.channels * self.chunk_size

    def _check_chunks(self, chunks: Tensor | np.ndarray) -> np.ndarray:
        x = chunks.detach().cpu().double().numpy() if isinstance(chunks, Tensor) else np.asarray(chunks, np.float64)
        if x.ndim != 3 or x.shape[1:] != (self.channels, self.chunk_size):
            raise ValueError(
                f"FASTTokenizer expects chunks (B, {self.channels}, {self.chunk_size}), got {tuple(x.shape)}"
            )
        if not np.isfinite(x).all():
            raise ValueError("chunks contain NaN/Inf")
        return x

    def to_integers(self, chunks: Tensor | np.ndarray) -> np.ndarray:
        """Chunks ``(B, C, H)`` -> rounded scaled DCT coefficients ``(B, H * C)`` int64, frequency-major."""
        x = self._check_chunks(chunks)
        coeffs = np.einsum("kt,bct->bkc", self._dct, x)  # (B, H, C)
        return np.rint(coeffs * self.scale).astype(np.int64).reshape(x.shape[0], -1)

    def from_integers(self, codes: np.ndarray | Tensor) -> Tensor:
        """Integers ``(B, H * C)`` -> chunks ``(B, C, H)`` float32 (inverse DCT of ``codes / scale``).

        Raises:
            ValueError: On a wrong shape.
        """
        codes = np.asarray(codes.cpu() if isinstance(codes, Tensor) else codes)
        if codes.ndim != 2 or codes.shape[1] != self.values_per_chunk:
            raise ValueError(f"expected integer codes (B, {self.values_per_chunk}), got {tuple(codes.shape)}")
        coeffs = codes.reshape(codes.shape[0], self.chunk_size, self.channels) / self.scale
        x = np.einsum("kt,bkc->bct", self._dct, coeffs)
        return torch.from_numpy(x).float()

    def _to_text(self, codes: np.ndarray) -> list[str]:
        assert self.clip is not None
        over = np.abs(codes) > self.clip
        if over.any():
            warnings.warn(
                f"{int(over.sum())} DCT coefficient(s) exceed the fitted range +-{self.clip}; clipping them "
                "(refit on wider data or lower the scale)",
                stacklevel=3,
            )
            codes = np.clip(codes, -self.clip, self.clip)
        z = _zigzag(codes) + _BASE
        return ["".join(map(chr, row)) for row in z.tolist()]

    # ------------------------------------------------------------------------------------------- BPE
    def fit(self, chunks: Tensor | np.ndarray | Iterable[Tensor | np.ndarray]) -> FASTTokenizer:
        """Fixes the coefficient range and trains the BPE merges on ``chunks`` ``(B, C, H)``.

        Returns:
            ``self``.

        Raises:
            ValueError: On malformed chunks, or when the fitted range does not fit the character block.
        """
        from tokenizers import Tokenizer, models, trainers

        parts = [chunks] if isinstance(chunks, (Tensor, np.ndarray)) else list(chunks)
        codes = np.concatenate([self.to_integers(c) for c in parts])
        if codes.size == 0:
            raise ValueError("cannot fit FASTTokenizer on zero chunks")
        clip = int(np.abs(codes).max())
        # Head-room for coefficients slightly beyond anything seen during fitting.
        clip = max(clip + clip // 4, 8)
        if 2 * clip + 1 > _MAX_ZIGZAG:
            raise ValueError(f"coefficients up to {clip} do not fit the character block; lower the scale")
        self.clip = clip
        alphabet = [chr(_BASE + z) for z in range(2 * clip + 1)]
        if self.vocab_size < len(alphabet):
            raise ValueError(
                f"vocab_size {self.vocab_size} is smaller than the {len(alphabet)} integer symbols in "
                f"[-{clip}, {clip}]; raise vocab_size or lower the scale"
            )
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=self.vocab_size,
            min_frequency=self.min_frequency,
            initial_alphabet=alphabet,
            show_progress=False,
            special_tokens=[],
        )
        bpe.train_from_iterator(self._to_text(codes), trainer=trainer)
        self._bpe = bpe
        return self

    def _require_fit(self) -> Any:
        if self._bpe is None or self.clip is None:
            raise RuntimeError("FASTTokenizer is not fitted; call fit() or load()")
        return self._bpe

    @property
    def vocab_len(self) -> int:
        """Actual vocabulary size after fitting (at most ``vocab_size``)."""
        return int(self._require_fit().get_vocab_size())

    def encode(self, chunks: Tensor | np.ndarray) -> list[list[int]]:
        """Chunks ``(B, C, H)`` -> one variable-length list of BPE token ids per chunk."""
        return self.encode_integers(self.to_integers(chunks))

    def encode_integers(self, codes: np.ndarray | Tensor) -> list[list[int]]:
        """Integer codes ``(B, H * C)`` (as from :meth:`to_integers`) -> BPE token id lists.

        Lossless for values within ``[-clip, clip]``; values beyond are clipped with a warning.

        Raises:
            ValueError: On a wrong shape or a non-integer dtype.
        """
        bpe = self._require_fit()
        codes = np.asarray(codes.cpu() if isinstance(codes, Tensor) else codes)
        if codes.ndim != 2 or codes.shape[1] != self.values_per_chunk or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"expected integer codes (B, {self.values_per_chunk}), got {codes.dtype} {codes.shape}")
        return [enc.ids for enc in bpe.encode_batch(self._to_text(codes.astype(np.int64)))]

    def decode_integers(self, tokens: Sequence[Sequence[int]]) -> np.ndarray:
        """Token id lists -> integer codes ``(B, H * C)``.

        Args:
            tokens: One sequence of ids per chunk: lists of ints, 1-D integer arrays or tensors, or a
                2-D integer array or tensor when all sequences have one length.

        Raises:
            ValueError: On an unknown id, a non-integer id, a sequence that does not expand to exactly
                ``C * H`` integers (an empty one included), or a ``tokens`` that is not a sequence of
                sequences.
        """
        bpe = self._require_fit()
        vocab = self.vocab_len
        rows = []
        for i, seq in enumerate(_token_rows(tokens)):
            pieces = []
            for t in seq:
                if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= int(t) < vocab:
                    raise ValueError(f"sequence {i}: token {t!r} is not an id in [0, {vocab})")
                piece = bpe.id_to_token(int(t))
                if piece is None:
                    raise ValueError(f"sequence {i}: token id {t} is unknown to the BPE model")
                pieces.append(piece)
            text = "".join(pieces)
            if len(text) != self.values_per_chunk:
                raise ValueError(
                    f"sequence {i} expands to {len(text)} coefficients, expected {self.values_per_chunk} (C * H)"
                )
            z = np.fromiter((ord(ch) - _BASE for ch in text), dtype=np.int64, count=len(text))
            if (z < 0).any() or (z > 2 * self.clip).any():  # type: ignore[operator]
                raise ValueError(f"sequence {i} holds a symbol outside the coefficient alphabet")
            rows.append(_unzigzag(z))
        if not rows:
            return np.zeros((0, self.values_per_chunk), dtype=np.int64)
        return np.stack(rows)

    def decode(self, tokens: Sequence[Sequence[int]]) -> Tensor:
        """Token id lists -> chunks ``(B, C, H)`` float32.

        Raises:
            ValueError: On malformed token sequences (see :meth:`decode_integers`); never returns zeros
                for them.
        """
        return self.from_integers(self.decode_integers(tokens))

    # ------------------------------------------------------------------------------------ save/load
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Writes ``fast_config.json`` and the BPE model ``tokenizer.json`` into ``directory``."""
        bpe = self._require_fit()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "format": "vqtok-fast",
            "format_version": _FORMAT_VERSION,
            "channels": self.channels,
            "chunk_size": self.chunk_size,
            "scale": self.scale,
            "vocab_size": self.vocab_size,
            "min_frequency": self.min_frequency,
            "clip": self.clip,
        }
        bpe.save(str(directory / _BPE_NAME))
        (directory / _CONFIG_NAME).write_text(json.dumps(config, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> FASTTokenizer:
        """Reads a directory written by :meth:`save`.

        Raises:
            FileNotFoundError: When a file is missing.
            ValueError: When the config is not a FAST config or of a newer format.
        """
        from tokenizers import Tokenizer

        directory = Path(directory)
        config = json.loads((directory / _CONFIG_NAME).read_text())
        if config.get("format") != "vqtok-fast" or int(config.get("format_version", 0)) > _FORMAT_VERSION:
            raise ValueError(f"{str(directory)!r} does not hold a FAST tokenizer this vqtok can read")
        tok = cls(
            config["channels"], config["chunk_size"], config["scale"], config["vocab_size"], config["min_frequency"]
        )
        tok.clip = int(config["clip"])
        tok._bpe = Tokenizer.from_file(str(directory / _BPE_NAME))
        return tok

    def __repr__(self) -> str:
        return (
            f"FASTTokenizer(channels={self.channels}, chunk_size={self.chunk_size}, scale={self.scale}, "
            f"vocab_size={self.vocab_size}, clip={self.clip})"
        )
