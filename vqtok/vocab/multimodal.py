"""One id space for text and media tokens: interleaved sequences for multimodal language models.

A :class:`MultimodalVocab` combines a text tokenizer (byte-level BPE from Hugging Face ``tokenizers``) with
any number of vqtok tokenizers (:class:`~vqtok.tokenizers.BaseTokenizer`), one per named modality (``"image"``,
``"audio"``, ...), in the spirit of early-fusion token models (Chameleon Team, "Chameleon: Mixed-Modal
Early-Fusion Foundation Models", arXiv:2405.09818). Written for vqtok.

Id layout, in this order (every block starts where the previous one ends)::

    [0, T)            text ids, exactly the text tokenizer's own ids
    specials          <pad>, <bos>, <eos>, then for each modality in order: <name>, </name>
    size tokens       <size:0> ... <size:G-1>, G = max_grid_size (absent when G = 0)
    media blocks      for each modality in order: K blocks of V ids,
                      id = offset + k * V + index[k]

where ``V`` is the quantizer's ``codebook_size`` and ``K = prod(index_shape)`` the number of index entries
per token. Each entry position ``k`` (a residual level, a group, ...) has its own block, so an id says which
modality *and* which entry it encodes and misplaced ids are caught; the price is ``K * V`` embedding rows
instead of ``V``.

A media segment is ``<name> [<size:n_1> ... <size:n_r>] body </name>``. The size tokens give the token grid
shape ``(n_1, ..., n_r)`` (e.g. ``(H/f, W/f)`` for images, frames for audio) and are left out for modalities
built with a fixed ``grid_shape``. The body lists the grid's tokens in row-major (C) order and, within a
token, its K entries consecutively (``index_shape`` flattened row-major), so a residual tokenizer's levels
come coarse to fine for each token. Its length must be ``prod(grid) * K``.

Outside segments, consecutive text ids form one text part; ``<pad>``, ``<bos>`` and ``<eos>`` end it and are
otherwise dropped by :meth:`MultimodalVocab.decode`. An empty string encodes to no ids, and consecutive
strings come back as one string.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .._io import CheckpointError, atomic_directory, read_versioned_json, sha256_file
from ..tokenizers import BaseTokenizer
from .text import load_text_tokenizer, text_vocab_size

if TYPE_CHECKING:
    from tokenizers import Tokenizer as TextTokenizer

__all__ = ["MediaSegment", "ModalityLayout", "MultimodalVocab", "VOCAB_NAME"]

VOCAB_NAME = "vocab.json"
TEXT_NAME = "text/tokenizer.json"
FORMAT = "vqtok-multimodal-vocab"
FORMAT_VERSION = 1
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED = {"pad", "bos", "eos", "size", "text"}

Part = str | Tensor


@dataclass(frozen=True)
class MediaSegment:
    """The indices of one media segment, before (or instead of) decoding them.

    Attributes:
        modality: Modality name, e.g. ``"image"``.
        indices: int64 ``(*grid, *index_shape)``, one example without the batch dimension.
    """

    modality: str
    indices: Tensor


@dataclass(frozen=True)
class ModalityLayout:
    """Where one modality sits in the id space.

    Attributes:
        name: Modality name.
        open_id: Id of ``<name>``.
        close_id: Id of ``</name>``.
        offset: First id of the modality's first index block.
        codebook_size: V, ids per block.
        index_shape: Trailing index shape of one token (``()`` or ``(L,)`` ...).
        grid_shape: Fixed token grid, or ``None`` when every segment writes its grid as size tokens.
    """

    name: str
    open_id: int
    close_id: int
    offset: int
    codebook_size: int
    index_shape: tuple[int, ...]
    grid_shape: tuple[int, ...] | None

    @property
    def entries_per_token(self) -> int:
        """K, index entries per grid token."""
        return math.prod(self.index_shape)

    @property
    def num_ids(self) -> int:
        """``K * V``, the size of the modality's media blocks."""
        return self.entries_per_token * self.codebook_size

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "open_id": self.open_id,
            "close_id": self.close_id,
            "offset": self.offset,
            "codebook_size": self.codebook_size,
            "index_shape": list(self.index_shape),
            "grid_shape": None if self.grid_shape is None else list(self.grid_shape),
        }


class MultimodalVocab:
    """Text plus media tokenizers behind one id space (layout in the module docstring).

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
            if not isinstance(name, str) or not _NAME_RE.match(name) or name in _RESERVED:
                raise ValueError(f"modality name {name!r} must match [a-z][a-z0-9_]* and not be one of {_RESERVED}")
            if not isinstance(tok, BaseTokenizer):
                raise ValueError(f"modality {name!r}: expected a vqtok BaseTokenizer, got {type(tok).__name__}")
            if name not in grid_shapes and max_grid_size == 0:
                raise ValueError(f"modality {name!r} has no fixed grid_shape, so max_grid_size must be > 0")
        self.tokenizers: dict[str, BaseTokenizer] = {name: tok.eval() for name, tok in tokenizers.items()}
        self.max_grid_size = int(max_grid_size)
        self.text_vocab_size = text_vocab_size(self.text)

        # Specials right after the text ids, then size tokens, then media blocks.
        self.special_tokens: dict[str, int] = {}
        for tok_name in SPECIAL_TOKENS:
            self.special_tokens[tok_name] = self.text_vocab_size + len(self.special_tokens)
        for name in self.tokenizers:
            for tag in (f"<{name}>", f"</{name}>"):
                self.special_tokens[tag] = self.text_vocab_size + len(self.special_tokens)
        self.size_offset = self.text_vocab_size + len(self.special_tokens)
        offset = self.size_offset + self.max_grid_size
        self.media_offset = offset
        self.layouts: dict[str, ModalityLayout] = {}
        for name, tok in self.tokenizers.items():
            grid = grid_shapes.get(name)
            layout = ModalityLayout(
                name=name,
                open_id=self.special_tokens[f"<{name}>"],
                close_id=self.special_tokens[f"</{name}>"],
                offset=offset,
                codebook_size=int(tok.codebook_size),
                index_shape=tuple(int(s) for s in tok.index_shape),
                grid_shape=None if grid is None else tuple(int(s) for s in grid),
            )
            self.layouts[name] = layout
            offset += layout.num_ids
        self._size = offset
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
        if not isinstance(indices, Tensor) or indices.is_floating_point() or indices.dtype == torch.bool:
            raise ValueError(f"{modality!r} indices must be an integer tensor")
        trailing = len(lay.index_shape)
        if indices.ndim < trailing or tuple(indices.shape[indices.ndim - trailing :]) != lay.index_shape:
            raise ValueError(
                f"{modality!r} indices must end in index_shape {lay.index_shape}, got {tuple(indices.shape)}"
            )
        grid = tuple(indices.shape[: indices.ndim - trailing])
        header: list[int] = [lay.open_id]
        if lay.grid_shape is not None:
            if grid != lay.grid_shape:
                raise ValueError(f"{modality!r} has the fixed grid {lay.grid_shape}, this example gives {grid}")
        else:
            if not grid or max(grid) >= self.max_grid_size:
                raise ValueError(
                    f"{modality!r} grid {grid} needs at least one dimension, each below max_grid_size "
                    f"{self.max_grid_size}"
                )
            header += [self.size_offset + n for n in grid]
        flat = indices.reshape(-1, lay.entries_per_token).long().cpu()
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= lay.codebook_size):
            raise ValueError(
                f"{modality!r} indices must lie in [0, {lay.codebook_size}), got [{int(flat.min())}, {int(flat.max())}]"
            )
        blocks = lay.offset + torch.arange(lay.entries_per_token) * lay.codebook_size
        body = (flat + blocks).reshape(-1)
        return torch.cat([torch.tensor(header), body, torch.tensor([lay.close_id])])

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
        arr = self._as_array(ids)
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
                parts.append(self._parse_segment(arr, open_at, s, lay))
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

    def _parse_segment(self, arr: np.ndarray, open_at: int, close_at: int, lay: ModalityLayout) -> MediaSegment:
        inner = arr[open_at + 1 : close_at]
        is_size = (inner >= self.size_offset) & (inner < self.media_offset)
        num_sizes = int(np.argmin(is_size)) if not is_size.all() else int(inner.size)
        if is_size[num_sizes:].any():
            i = open_at + 1 + num_sizes + int(np.flatnonzero(is_size[num_sizes:])[0])
            raise ValueError(f"size token at position {i} inside the body of the <{lay.name}> segment")
        if lay.grid_shape is not None:
            if num_sizes:
                raise ValueError(f"<{lay.name}> at position {open_at} has a fixed grid and takes no size tokens")
            grid = lay.grid_shape
        else:
            if not num_sizes:
                raise ValueError(f"<{lay.name}> segment at position {open_at} lacks its grid size tokens")
            grid = tuple(int(v) - self.size_offset for v in inner[:num_sizes])
        body = inner[num_sizes:]
        k = lay.entries_per_token
        expected = math.prod(grid) * k
        if body.size != expected:
            raise ValueError(
                f"<{lay.name}> segment at position {open_at} has {body.size} body ids, but grid {grid} with "
                f"{k} entries per token needs {expected}"
            )
        # Entry j of a token must come from block j: this catches foreign ids and shifted levels alike.
        local = body - lay.offset
        block_start = (np.arange(body.size) % k) * lay.codebook_size
        bad = np.flatnonzero((local < block_start) | (local >= block_start + lay.codebook_size))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"id {int(body[i])} ({self.id_to_token(int(body[i]))}) at position {open_at + 1 + num_sizes + i} "
                f"is not a valid entry {i % k} of a <{lay.name}> token (ids [{lay.offset + int(block_start[i])}, "
                f"{lay.offset + int(block_start[i]) + lay.codebook_size}))"
            )
        indices = torch.from_numpy((local - block_start).astype(np.int64)).reshape(*grid, *lay.index_shape)
        return MediaSegment(lay.name, indices)

    @staticmethod
    def _as_array(ids: Tensor | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(ids, Tensor):
            if ids.is_floating_point() or ids.dtype == torch.bool:
                raise ValueError(f"ids must be an integer tensor, got {ids.dtype}")
            arr = ids.detach().cpu().numpy()
        else:
            arr = np.asarray(ids)
            if arr.size == 0:
                arr = arr.astype(np.int64)
            elif not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
        if arr.ndim != 1:
            raise ValueError(f"ids must be one-dimensional (N,), got shape {arr.shape}")
        return arr.astype(np.int64, copy=False)

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
        from ..version import __version__

        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            (tmp / TEXT_NAME).parent.mkdir(parents=True)
            (tmp / TEXT_NAME).write_text(self.text.to_str(), encoding="utf-8")
            files = [TEXT_NAME]
            for name, tok in self.tokenizers.items():
                sub = tmp / "modalities" / name
                tok.save_pretrained(sub)
                files += sorted(p.relative_to(tmp).as_posix() for p in sub.iterdir() if not p.name.startswith("."))
            payload = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "vqtok_version": __version__,
                "layout": self.config(),
                "files": {rel: sha256_file(tmp / rel) for rel in files},
            }
            (tmp / VOCAB_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return directory

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
        vocab = cls(text, tokenizers, grid_shapes=grids, max_grid_size=layout["max_grid_size"])
        if vocab.config() != layout:
            raise CheckpointError(f"{str(directory)!r}: the loaded parts give a different id layout than recorded")
        return vocab

    def __repr__(self) -> str:
        mods = ", ".join(f"{n}: {lay.num_ids}" for n, lay in self.layouts.items())
        return f"MultimodalVocab(size={self._size}, text={self.text_vocab_size}, {mods})"
