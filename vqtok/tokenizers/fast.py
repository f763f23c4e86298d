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

It follows the tokenizer contract (:class:`~vqtok.tokenizers.BaseTokenizer`, registered as ``"fast"``): after
:meth:`FASTTokenizer.fit`, :meth:`~FASTTokenizer.encode` gives int64 ids ``(B, L)`` right-padded with
``pad_index = -1`` to the longest chunk of the batch (:meth:`~FASTTokenizer.encode_lists` gives the unpadded
lists), and ``save_pretrained`` writes the fitted BPE as tensors (``bpe_vocab``: each token's zig-zag integers,
``bpe_merges``: the merge list as id pairs in priority order, ``bpe_clip``) into the usual checkpoint folder.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._bpe_state import bpe_from_tensors, bpe_to_tensors, read_legacy_fast, token_rows, train_bpe, unzigzag, zigzag
from ._config import config_to_dict
from ._pretrained import CONFIG_NAME, CheckpointError
from ._registry import register_tokenizer
from .contract import BaseTokenizer

__all__ = ["FASTConfig", "FASTTokenizer", "dct_matrix"]

_BASE = 0x4E00
# Zig-zag values must stay below the UTF-16 surrogate block that starts at U+D800.
_MAX_ZIGZAG = 0xD800 - _BASE - 1
# The folder layout of vqtok <= 0.1 (FASTTokenizer.save), still read by FASTTokenizer.load.
_LEGACY_CONFIG_NAME = "fast_config.json"
_LEGACY_BPE_NAME = "tokenizer.json"
_STATE = ("bpe_clip", "bpe_vocab", "bpe_merges")


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``(n, n)``: ``coeffs = D @ x`` and ``x = D.T @ coeffs``."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    d = np.cos(np.pi * (t + 0.5) * k / n) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


@dataclass
class FASTConfig:
    """Config of :class:`FASTTokenizer`: its arguments (the fitted BPE lives in its state); ``ValueError`` if bad."""

    version: int = 1
    channels: int = 1
    chunk_size: int = 16
    scale: float = 10.0
    vocab_size: int = 1024
    min_frequency: int = 2

    def __post_init__(self) -> None:
        if self.channels < 1 or self.chunk_size < 1 or not self.scale > 0 or self.vocab_size < 2:
            raise ValueError(
                f"bad FAST settings: channels={self.channels}, chunk_size={self.chunk_size}, scale={self.scale}, "
                f"vocab={self.vocab_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


@register_tokenizer("fast")
class FASTTokenizer(BaseTokenizer):
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

    config_class = FASTConfig
    config: FASTConfig
    # Action chunks share the (B, C, H) layout and fidelity metrics of the learned "action" tokenizer.
    modality = "timeseries"
    pad_index = -1

    def __init__(
        self,
        channels: int,
        chunk_size: int,
        scale: float = 10.0,
        vocab_size: int = 1024,
        min_frequency: int = 2,
    ) -> None:
        super().__init__(
            FASTConfig(1, int(channels), int(chunk_size), float(scale), int(vocab_size), int(min_frequency))
        )
        self.channels = self.config.channels
        self.chunk_size = self.config.chunk_size
        self.scale = self.config.scale
        self.vocab_size = self.config.vocab_size
        self.min_frequency = self.config.min_frequency
        self.clip: int | None = None
        self._bpe: Any = None
        self._dct = dct_matrix(self.chunk_size)

    @classmethod
    def from_config(cls, config: FASTConfig | dict[str, Any]) -> FASTTokenizer:
        """An unfitted tokenizer from a :class:`FASTConfig` or a dict of its fields."""
        if isinstance(config, dict):
            from ._config import config_from_dict

            config = config_from_dict(FASTConfig, config)
        kwargs = dataclasses.asdict(config)
        kwargs.pop("version")
        return cls(**kwargs)

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
        z = zigzag(codes) + _BASE
        return ["".join(map(chr, row)) for row in z.tolist()]

    # ------------------------------------------------------------------------------------------- BPE
    def fit(self, chunks: Tensor | np.ndarray | Iterable[Tensor | np.ndarray]) -> FASTTokenizer:
        """Fixes the coefficient range and trains the BPE merges on ``chunks`` ``(B, C, H)``.

        Returns:
            ``self``.

        Raises:
            ValueError: On malformed chunks, or when the fitted range does not fit the character block.
        """
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
        bpe = train_bpe(self._to_text(codes), alphabet, self.vocab_size, self.min_frequency)
        # Installed from the tensor form, so a fitted and a reloaded tokenizer run the very same BPE model.
        self._install(torch.tensor(clip), *bpe_to_tensors(bpe, _BASE))
        return self

    def _install(self, clip: Tensor, vocab: Tensor, merges: Tensor) -> None:
        """Sets the fitted state (buffers ``bpe_clip``, ``bpe_vocab``, ``bpe_merges``) and builds the BPE model.

        Raises:
            ValueError: On a clip out of range or malformed BPE tables.
        """
        if clip.ndim != 0 or clip.is_floating_point() or not (0 < int(clip) and 2 * int(clip) + 1 <= _MAX_ZIGZAG):
            raise ValueError(f"bpe_clip must be an integer scalar in [1, {(_MAX_ZIGZAG - 1) // 2}], got {clip}")
        self._bpe = bpe_from_tensors(vocab.long(), merges.long(), _BASE, 2 * int(clip) + 1)
        self.clip = int(clip)
        for name, value in zip(_STATE, (clip, vocab, merges), strict=True):
            self.register_buffer(name, value.long().cpu())

    def _require_fit(self) -> Any:
        if self._bpe is None or self.clip is None:
            raise RuntimeError("FASTTokenizer is not fitted; call fit() or from_pretrained()")
        return self._bpe

    @property
    def vocab_len(self) -> int:
        """Actual vocabulary size after fitting (at most ``vocab_size``)."""
        return int(self._require_fit().get_vocab_size())

    @property
    def codebook_size(self) -> int:
        """The fitted vocabulary size :attr:`vocab_len`: ids lie in ``[0, vocab_len)``."""
        return self.vocab_len

    def check_signal(self, signal: Any) -> None:
        """Raises ``ValueError`` unless ``signal`` is a finite float batch ``(B, C, H)``."""
        if isinstance(signal, Tensor) and not signal.is_floating_point():
            raise ValueError(f"FASTTokenizer expects float chunks, got {signal.dtype}")
        self._check_chunks(signal)

    def encode(self, chunks: Tensor | np.ndarray, **options: Any) -> Tensor:
        """Chunks ``(B, C, H)`` -> int64 ids ``(B, L)``, each row right-padded with ``pad_index`` (-1) to the
        longest of the batch (on the input's device).

        Raises:
            ValueError: On malformed chunks or any option (there are none).
        """
        if options:
            raise ValueError(f"FASTTokenizer.encode takes no options, got {sorted(options)}")
        self.check_signal(chunks)
        rows = self.encode_lists(chunks)
        out = torch.full((len(rows), max(map(len, rows), default=0)), self.pad_index, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out.to(chunks.device) if isinstance(chunks, Tensor) else out

    def encode_lists(self, chunks: Tensor | np.ndarray) -> list[list[int]]:
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

    def decode_integers(self, tokens: Sequence[Sequence[int]] | Tensor | np.ndarray) -> np.ndarray:
        """Token id lists -> integer codes ``(B, H * C)``.

        Args:
            tokens: One sequence of ids per chunk: lists of ints, 1-D integer arrays or tensors, or a
                2-D integer array or tensor (as from :meth:`encode`), whose trailing ``pad_index`` entries
                are padding.

        Raises:
            ValueError: On an unknown id, a non-integer id, a sequence that does not expand to exactly
                ``C * H`` integers (an empty one included), or a ``tokens`` that is not a sequence of
                sequences.
        """
        bpe = self._require_fit()
        vocab = self.vocab_len
        rows = []
        padded = isinstance(tokens, (Tensor, np.ndarray))
        for i, seq in enumerate(token_rows(tokens)):
            while padded and seq and seq[-1] == self.pad_index:
                seq.pop()
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
            rows.append(unzigzag(z))
        if not rows:
            return np.zeros((0, self.values_per_chunk), dtype=np.int64)
        return np.stack(rows)

    def decode(self, tokens: Sequence[Sequence[int]] | Tensor | np.ndarray) -> Tensor:
        """Padded ids ``(B, L)`` from :meth:`encode`, or token id lists -> chunks ``(B, C, H)`` float32 (on the
        device of ``tokens`` when it is a tensor).

        Raises:
            ValueError: On malformed token sequences (see :meth:`decode_integers`); never returns zeros
                for them.
        """
        chunks = self.from_integers(self.decode_integers(tokens))
        return chunks.to(tokens.device) if isinstance(tokens, Tensor) else chunks

    # ------------------------------------------------------------------------------------ save/load
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Writes ``config.json`` and ``model.safetensors`` (the fitted BPE as tensors), like every tokenizer.

        Raises:
            RuntimeError: When the tokenizer is not fitted.
        """
        self._require_fit()
        return super().save_pretrained(directory)

    save = save_pretrained

    @classmethod
    def _from_checkpoint(cls, config: dict[str, Any], state: dict[str, Tensor], source: str) -> FASTTokenizer:
        try:
            tok = cls.from_config(config)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"checkpoint {source!r} has an invalid FAST config: {err}") from err
        if sorted(state) != sorted(_STATE):
            raise CheckpointError(f"{source} does not hold the FAST state {list(_STATE)}; found {sorted(state)}")
        try:
            tok._install(*(state[k] for k in _STATE))
        except ValueError as err:
            raise CheckpointError(f"checkpoint {source!r} holds an invalid FAST state: {err}") from err
        return tok

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> FASTTokenizer:
        """Reads a folder written by :meth:`save_pretrained`, or by ``save`` of vqtok <= 0.1
        (``fast_config.json`` + ``tokenizer.json``).

        Raises:
            CheckpointError: When the folder holds neither, or a file is missing, corrupt or of a newer format.
        """
        directory = Path(directory)
        if (directory / CONFIG_NAME).is_file() or not (directory / _LEGACY_CONFIG_NAME).is_file():
            return cls.from_pretrained(directory)
        args, clip, vocab, merges = read_legacy_fast(
            directory / _LEGACY_CONFIG_NAME, directory / _LEGACY_BPE_NAME, _BASE
        )
        try:
            tok = cls(*args)
            tok._install(clip, vocab, merges)
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{str(directory)!r} holds an invalid FAST tokenizer: {err}") from err
        return tok

    def __repr__(self) -> str:
        return (
            f"FASTTokenizer(channels={self.channels}, chunk_size={self.chunk_size}, scale={self.scale}, "
            f"vocab_size={self.vocab_size}, clip={self.clip})"
        )
