"""One id space for text and media tokens: interleaved sequences for multimodal language models.

A :class:`MultimodalVocab` combines a text tokenizer (byte-level BPE from Hugging Face ``tokenizers``) with
any number of vqtok tokenizers (:class:`~vqtok.tokenizers.BaseTokenizer`), one per named modality (``"image"``,
``"audio"``, ...), in the spirit of early-fusion token models (Chameleon Team, "Chameleon: Mixed-Modal
Early-Fusion Foundation Models", arXiv:2405.09818). Written for vqtok.

The id layout and the segment format are described in :mod:`vqtok.vocab.layout`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .._io import CheckpointError
from ..tokenizers import BaseTokenizer
from .folder import FORMAT as FORMAT
from .folder import FORMAT_VERSION as FORMAT_VERSION
from .folder import TEXT_NAME as TEXT_NAME
from .folder import VOCAB_NAME as VOCAB_NAME
from .folder import read_vocab, save_vocab
from .layout import SPECIAL_TOKENS as SPECIAL_TOKENS
from .layout import MediaSegment as MediaSegment
from .layout import ModalityLayout as ModalityLayout
from .layout import as_id_array, assign_ids, check_modality_name
from .text import load_text_tokenizer, text_vocab_size

if TYPE_CHECKING:
    from tokenizers import Tokenizer as TextTokenizer

__all__ = ["MediaSegment", "ModalityLayout", "MultimodalVocab", "VOCAB_NAME"]

Part = str | Tensor


class MultimodalVocab:
    """Text plus media tokenizers behind one id space (layout in :mod:`vqtok.vocab.layout`).

    Args:
        text: A ``tokenizers.Tokenizer`` (e.g. from :func:`~vqtok.vocab.train_bpe`) or the path of a
            ``tokenizer.json``.
        tokenizers: Modality name -> vqtok tokenizer, in id-layout order. Names are lowercase identifiers
            other than ``pad``, ``bos``, ``eos``, ``size`` and ``text``. The models are put in eval mode.
        grid_shapes: Optional modality name -> fixed token grid shape (e.g. ``{"image": (7, 7)}``); those
            segments carry no size tokens and every example must produce exactly that grid.
        max_grid_size: G, the number of size tokens; every grid dimension of a modality without a fixed
            shape must be below it. 0 is allowed when every modality has a fixed grid.

    Raises:
        ValueError: On a bad modality name, a grid shape for an unknown modality, or ``max_grid_size``
            = 0 with a modality of variable grid.
    """

    def __init__(
        self,
        text: TextTokenizer | str | os.PathLike[str],
        tokenizers: Mapping[str, BaseTokenizer],
        grid_shapes: Mapping[str, Sequence[int]] | None = None,
        max_grid_size: int = 1024,
    ) -> None:
        self.text = load_text_tokenizer(text)
        grid_shapes = dict(grid_shapes or {})
        unknown = sorted(set(grid_shapes) - set(tokenizers))
        if unknown:
            raise ValueError(f"grid_shapes names unknown modalities {unknown}; modalities: {list(tokenizers)}")
        if max_grid_size < 0:
            raise ValueError(f"max_grid_size must be >= 0, got {max_grid_size}")
        for name, tok in tokenizers.items():
            check_modality_name(name)
            if not isinstance(tok, BaseTokenizer):
                raise ValueError(f"modality {name!r}: expected a vqtok BaseTokenizer, got {type(tok).__name__}")
            if name not in grid_shapes and max_grid_size == 0:
                raise ValueError(f"modality {name!r} has no fixed grid_shape, so max_grid_size must be > 0")
        self.tokenizers: dict[str, BaseTokenizer] = {name: tok.eval() for name, tok in tokenizers.items()}
        self.max_grid_size = int(max_grid_size)
        self.text_vocab_size = text_vocab_size(self.text)

        blocks = {name: (int(tok.codebook_size), tuple(tok.index_shape)) for name, tok in self.tokenizers.items()}
        self.special_tokens, self.layouts, self._size = assign_ids(
            self.text_vocab_size, blocks, grid_shapes, self.max_grid_size
        )
        self.size_offset = self.text_vocab_size + len(self.special_tokens)
        self.media_offset = self.size_offset + self.max_grid_size
        self._open = {lay.open_id: lay for lay in self.layouts.values()}
        self._close = {lay.close_id: lay for lay in self.layouts.values()}

    # ------------------------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return self._size

    @property
    def vocab_size(self) -> int:
        """Total number of ids (embedding rows a language model needs)."""
        return self._size

    @property
    def pad_id(self) -> int:
        return self.special_tokens["<pad>"]

    @property
    def bos_id(self) -> int:
        return self.special_tokens["<bos>"]

    @property
    def eos_id(self) -> int:
        return self.special_tokens["<eos>"]

    def modality_range(self, name: str) -> range:
        """The media ids of modality ``name``."""
        lay = self._layout(name)
        return range(lay.offset, lay.offset + lay.num_ids)

    def id_to_token(self, token_id: int) -> str:
        """A readable name for any id: the BPE token, ``<image>``, ``<size:7>`` or ``<image:k:index>``.

        Raises:
            ValueError: When ``token_id`` is outside ``[0, len(self))``.
        """
        if not 0 <= token_id < self._size:
            raise ValueError(f"id {token_id} is outside the vocabulary [0, {self._size})")
        if token_id < self.text_vocab_size:
            return self.text.id_to_token(token_id) or f"<text:{token_id}>"
        if token_id < self.size_offset:
            return list(self.special_tokens)[token_id - self.text_vocab_size]
        if token_id < self.media_offset:
            return f"<size:{token_id - self.size_offset}>"
        for lay in self.layouts.values():
            if token_id < lay.offset + lay.num_ids:
                k, index = divmod(token_id - lay.offset, lay.codebook_size)
                return f"<{lay.name}:{k}:{index}>"
        raise AssertionError("unreachable: the layout covers [0, len)")

    # -------------------------------------------------------------------------------------- encoding
    def encode(
        self, parts: Sequence[Part | tuple[str, Tensor] | MediaSegment], bos: bool = False, eos: bool = False
    ) -> Tensor:
        """Encodes interleaved text and media into one id sequence.

        Args:
            parts: Strings, ``(modality, signal)`` tuples of single-example signals without the batch
                dimension (e.g. an image ``(C, H, W)``), :class:`MediaSegment` indices that were tokenized
                already, or bare signal tensors. A named modality is used as given (its tokenizer checks the
                signal; shapes are never compared with other modalities). Only a bare tensor is matched by
                shape: it must fit exactly one modality's tokenizer.
            bos: Prepend ``<bos>``.
            eos: Append ``<eos>``.

        Returns:
            int64 ids ``(N,)``.

        Raises:
            ValueError: On a part of another type, a tensor no modality (or more than one) accepts, or a grid
                that does not fit the modality's fixed shape or ``max_grid_size``.
        """
        if isinstance(parts, (str, Tensor)):
            raise ValueError("parts must be a list of strings and tensors, not a single one")
        chunks: list[Tensor] = []
        if bos:
            chunks.append(torch.tensor([self.bos_id]))
        for i, part in enumerate(parts):
            if isinstance(part, str):
                if part:
                    chunks.append(torch.tensor(self.text.encode(part, add_special_tokens=False).ids, dtype=torch.long))
            elif isinstance(part, MediaSegment):
                chunks.append(self.encode_indices(part.modality, part.indices))
            elif isinstance(part, tuple) and len(part) == 2 and isinstance(part[0], str):
                chunks.append(self.encode_signal(part[0], part[1]))
            elif isinstance(part, Tensor):
                chunks.append(self.encode_signal(self._infer_modality(part, i), part))
            else:
                raise ValueError(f"part {i} has unsupported type {type(part).__name__}; expected str or Tensor")
        if eos:
            chunks.append(torch.tensor([self.eos_id]))
        return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.long)

    @torch.no_grad()
    def encode_signal(self, modality: str, signal: Tensor) -> Tensor:
        """One media segment (tags, size tokens, body) for a single example ``signal`` (no batch dim).

        Returns:
            int64 ids ``(N,)``.
        """
        tok = self.tokenizers[self._layout(modality).name]
        if not isinstance(signal, Tensor):
            raise ValueError(f"modality {modality!r}: expected a signal tensor, got {type(signal).__name__}")
        param = next(tok.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        try:
            indices = tok.encode(signal[None].to(device))[0].cpu()
        except ValueError as err:
            raise ValueError(f"modality {modality!r}: {err}") from err
        return self.encode_indices(modality, indices)

    def encode_indices(self, modality: str, indices: Tensor) -> Tensor:
        """One media segment from one example's tokenizer indices ``(*grid, *index_shape)``.

        Returns:
            int64 ids ``(N,)``: ``<name> [size tokens] body </name>``.

        Raises:
            ValueError: On a wrong trailing shape, an index out of ``[0, V)`` or a grid that does not fit.
        """
        lay = self._layout(modality)
        return lay.segment_ids(indices, self.size_offset, self.max_grid_size)

    def _infer_modality(self, signal: Tensor, position: int) -> str:
        fits = []
        for name, tok in self.tokenizers.items():
            try:
                tok.check_signal(signal[None])
            except ValueError:
                continue
            fits.append(name)
        if len(fits) != 1:
            what = "no modality" if not fits else f"several modalities {fits}"
            raise ValueError(
                f"part {position}: a tensor of shape {tuple(signal.shape)} fits {what}; pass (modality, tensor) "
                f"with one of {list(self.tokenizers)} (signals are single examples without the batch dimension)"
            )
        return fits[0]

    # -------------------------------------------------------------------------------------- decoding
    def split(self, ids: Tensor | Sequence[int] | np.ndarray) -> list[str | MediaSegment]:
        """Parses ids into text and media indices, validating the whole sequence.

        Args:
            ids: ``(N,)`` integer ids.

        Returns:
            Text parts as strings and media parts as :class:`MediaSegment` (indices, not decoded).

        Raises:
            ValueError: On an id outside the vocabulary, an unclosed, nested or unopened segment, a media
                id outside its segment or in the wrong entry block, missing or misplaced size tokens, or a
                body whose length does not match its grid.
        """
        arr = as_id_array(ids)
        if arr.size and (arr.min() < 0 or arr.max() >= self._size):
            bad = int(np.flatnonzero((arr < 0) | (arr >= self._size))[0])
            raise ValueError(f"id {int(arr[bad])} at position {bad} is outside the vocabulary [0, {self._size})")
        parts: list[str | MediaSegment] = []
        special = np.flatnonzero((arr >= self.text_vocab_size) & (arr < self.size_offset))
        pos = 0
        open_at: int | None = None
        for s in special.tolist():
            sid = int(arr[s])
            if open_at is None:
                self._check_text_run(arr, pos, s)
                if s > pos:
                    parts.append(self.text.decode(arr[pos:s].tolist(), skip_special_tokens=False))
                if sid in self._close:
                    raise ValueError(f"{self.id_to_token(sid)} at position {s} closes a segment that was never opened")
                if sid in self._open:
                    open_at = s
            else:
                lay = self._open[int(arr[open_at])]
                if sid != lay.close_id:
                    raise ValueError(
                        f"{self.id_to_token(sid)} at position {s} inside the <{lay.name}> segment opened at "
                        f"position {open_at}; segments cannot nest and must be closed by </{lay.name}>"
                    )
                parts.append(lay.parse_segment(arr, open_at, s, self.size_offset, self.media_offset, self.id_to_token))
                open_at = None
            pos = s + 1
        if open_at is not None:
            name = self._open[int(arr[open_at])].name
            raise ValueError(f"unclosed <{name}> segment opened at position {open_at} (no </{name}> before the end)")
        self._check_text_run(arr, pos, arr.size)
        if arr.size > pos:
            parts.append(self.text.decode(arr[pos:].tolist(), skip_special_tokens=False))
        return parts

    @torch.no_grad()
    def decode(self, ids: Tensor | Sequence[int] | np.ndarray) -> list[str | Tensor]:
        """Decodes ids back into text and media.

        Args:
            ids: ``(N,)`` integer ids.

        Returns:
            Strings, and for each media segment the tokenizer's reconstruction of that single example
            (no batch dimension, on the CPU, e.g. ``(C, H, W)``).

        Raises:
            ValueError: On a malformed sequence (see :meth:`split`).
        """
        out: list[str | Tensor] = []
        for part in self.split(ids):
            if isinstance(part, str):
                out.append(part)
                continue
            tok = self.tokenizers[part.modality]
            param = next(tok.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
            signal = tok.decode(part.indices[None].to(device))[0].cpu()
            # Float signals come back as float32; integer ones (graph node ids) keep their dtype.
            out.append(signal.float() if signal.is_floating_point() else signal)
        return out

    def _check_text_run(self, arr: np.ndarray, start: int, stop: int) -> None:
        run = arr[start:stop]
        bad = np.flatnonzero(run >= self.text_vocab_size)
        if bad.size:
            i = start + int(bad[0])
            raise ValueError(f"{self.id_to_token(int(arr[i]))} (id {int(arr[i])}) at position {i} outside any segment")

    def _layout(self, name: str) -> ModalityLayout:
        if name not in self.layouts:
            raise ValueError(f"unknown modality {name!r}; this vocabulary has {list(self.layouts)}")
        return self.layouts[name]

    # ----------------------------------------------------------------------------------- checkpoints
    def config(self) -> dict[str, Any]:
        """The JSON-safe layout: enough to check that a loaded vocabulary assigns the same ids."""
        return {
            "text_vocab_size": self.text_vocab_size,
            "special_tokens": dict(self.special_tokens),
            "max_grid_size": self.max_grid_size,
            "size_offset": self.size_offset,
            "media_offset": self.media_offset,
            "vocab_size": self._size,
            "modalities": [lay.to_dict() for lay in self.layouts.values()],
        }

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Writes the text tokenizer, every modality tokenizer and ``vocab.json`` into ``directory``.

        Layout: ``text/tokenizer.json``, ``modalities/<name>/`` (each a tokenizer checkpoint) and
        ``vocab.json`` with the id layout and the SHA-256 of every file. The whole folder is built beside
        ``directory`` and swapped in at once (:func:`vqtok._io.atomic_directory`), so a kill at any instant
        leaves the complete previous vocabulary or the complete new one.

        Returns:
            The directory.
        """
        return save_vocab(self, directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], map_location: str | torch.device = "cpu", verify: bool = True
    ) -> MultimodalVocab:
        """Loads a vocabulary written by :meth:`save_pretrained`.

        Args:
            directory: The vocabulary directory.
            map_location: Device of the modality tokenizers.
            verify: Check the SHA-256 of every part and refuse non-finite weights (off: load as is).

        Raises:
            CheckpointError: When ``vocab.json`` or a part is missing, corrupt, altered after saving, saved by a
                newer vqtok, or yields a different id layout than the one recorded.
        """
        parts = read_vocab(directory, map_location, verify)
        vocab = cls(parts.text, parts.tokenizers, grid_shapes=parts.grid_shapes, max_grid_size=parts.max_grid_size)
        if vocab.config() != parts.layout:
            raise CheckpointError(f"{str(directory)!r}: the loaded parts give a different id layout than recorded")
        return vocab

    def __repr__(self) -> str:
        mods = ", ".join(f"{n}: {lay.num_ids}" for n, lay in self.layouts.items())
        return f"MultimodalVocab(size={self._size}, text={self.text_vocab_size}, {mods})"
