"""Where each modality sits in a :class:`~vqtok.vocab.MultimodalVocab` id space, and its segment codec.

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
A :class:`ModalityLayout` holds one modality's place and maps one example's indices to a segment's ids and
back (:meth:`ModalityLayout.segment_ids`, :meth:`ModalityLayout.parse_segment`). Written for vqtok.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["MediaSegment", "ModalityLayout", "SPECIAL_TOKENS", "as_id_array", "assign_ids", "check_modality_name"]

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED = {"pad", "bos", "eos", "size", "text"}


def check_modality_name(name: object) -> None:
    """Raises ValueError unless ``name`` is a lowercase identifier that is not a reserved word."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in _RESERVED:
        raise ValueError(f"modality name {name!r} must match [a-z][a-z0-9_]* and not be one of {_RESERVED}")


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

    def segment_ids(self, indices: Tensor, size_offset: int, max_grid_size: int) -> Tensor:
        """One media segment from one example's tokenizer indices ``(*grid, *index_shape)``.

        Args:
            indices: Integer indices ``(*grid, *index_shape)``.
            size_offset: Id of ``<size:0>``.
            max_grid_size: G; every grid dimension of a variable grid must be below it.

        Returns:
            int64 ids ``(N,)``: ``<name> [size tokens] body </name>``.

        Raises:
            ValueError: On a wrong trailing shape, an index out of ``[0, V)`` or a grid that does not fit.
        """
        modality = self.name
        if not isinstance(indices, Tensor) or indices.is_floating_point() or indices.dtype == torch.bool:
            raise ValueError(f"{modality!r} indices must be an integer tensor")
        trailing = len(self.index_shape)
        if indices.ndim < trailing or tuple(indices.shape[indices.ndim - trailing :]) != self.index_shape:
            raise ValueError(
                f"{modality!r} indices must end in index_shape {self.index_shape}, got {tuple(indices.shape)}"
            )
        grid = tuple(indices.shape[: indices.ndim - trailing])
        header: list[int] = [self.open_id]
        if self.grid_shape is not None:
            if grid != self.grid_shape:
                raise ValueError(f"{modality!r} has the fixed grid {self.grid_shape}, this example gives {grid}")
        else:
            if not grid or max(grid) >= max_grid_size:
                raise ValueError(
                    f"{modality!r} grid {grid} needs at least one dimension, each below max_grid_size {max_grid_size}"
                )
            header += [size_offset + n for n in grid]
        flat = indices.reshape(-1, self.entries_per_token).long().cpu()
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.codebook_size):
            raise ValueError(
                f"{modality!r} indices must lie in [0, {self.codebook_size}), "
                f"got [{int(flat.min())}, {int(flat.max())}]"
            )
        blocks = self.offset + torch.arange(self.entries_per_token) * self.codebook_size
        body = (flat + blocks).reshape(-1)
        return torch.cat([torch.tensor(header), body, torch.tensor([self.close_id])])

    def parse_segment(
        self,
        arr: np.ndarray,
        open_at: int,
        close_at: int,
        size_offset: int,
        media_offset: int,
        id_to_token: Callable[[int], str],
    ) -> MediaSegment:
        """The inverse of :meth:`segment_ids` for the segment ``arr[open_at:close_at + 1]``.

        Args:
            arr: The whole id sequence ``(N,)`` (positions in messages refer to it).
            open_at: Position of ``<name>``.
            close_at: Position of ``</name>``.
            size_offset: Id of ``<size:0>``.
            media_offset: First media id (one past the last size token).
            id_to_token: Readable name of an id, for error messages.

        Raises:
            ValueError: On missing or misplaced size tokens, a body whose length does not match its grid, or
                an id outside its entry block.
        """
        inner = arr[open_at + 1 : close_at]
        is_size = (inner >= size_offset) & (inner < media_offset)
        num_sizes = int(np.argmin(is_size)) if not is_size.all() else int(inner.size)
        if is_size[num_sizes:].any():
            i = open_at + 1 + num_sizes + int(np.flatnonzero(is_size[num_sizes:])[0])
            raise ValueError(f"size token at position {i} inside the body of the <{self.name}> segment")
        if self.grid_shape is not None:
            if num_sizes:
                raise ValueError(f"<{self.name}> at position {open_at} has a fixed grid and takes no size tokens")
            grid = self.grid_shape
        else:
            if not num_sizes:
                raise ValueError(f"<{self.name}> segment at position {open_at} lacks its grid size tokens")
            grid = tuple(int(v) - size_offset for v in inner[:num_sizes])
        body = inner[num_sizes:]
        k = self.entries_per_token
        expected = math.prod(grid) * k
        if body.size != expected:
            raise ValueError(
                f"<{self.name}> segment at position {open_at} has {body.size} body ids, but grid {grid} with "
                f"{k} entries per token needs {expected}"
            )
        # Entry j of a token must come from block j: this catches foreign ids and shifted levels alike.
        local = body - self.offset
        block_start = (np.arange(body.size) % k) * self.codebook_size
        bad = np.flatnonzero((local < block_start) | (local >= block_start + self.codebook_size))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"id {int(body[i])} ({id_to_token(int(body[i]))}) at position {open_at + 1 + num_sizes + i} "
                f"is not a valid entry {i % k} of a <{self.name}> token (ids [{self.offset + int(block_start[i])}, "
                f"{self.offset + int(block_start[i]) + self.codebook_size}))"
            )
        indices = torch.from_numpy((local - block_start).astype(np.int64)).reshape(*grid, *self.index_shape)
        return MediaSegment(self.name, indices)


def assign_ids(
    text_vocab_size: int,
    blocks: Mapping[str, tuple[int, tuple[int, ...]]],
    grid_shapes: Mapping[str, Sequence[int]],
    max_grid_size: int,
) -> tuple[dict[str, int], dict[str, ModalityLayout], int]:
    """Lays out the id space above the text ids.

    Args:
        text_vocab_size: T, the number of text ids.
        blocks: Modality name -> ``(codebook_size, index_shape)``, in layout order.
        grid_shapes: Modality name -> fixed token grid (absent: variable grid with size tokens).
        max_grid_size: G, the number of size tokens.

    Returns:
        ``(special_tokens, layouts, vocab_size)``: token -> id for the specials, name -> layout, total ids.
    """
    # Specials right after the text ids, then size tokens, then media blocks.
    special_tokens: dict[str, int] = {}
    for tok_name in SPECIAL_TOKENS:
        special_tokens[tok_name] = text_vocab_size + len(special_tokens)
    for name in blocks:
        for tag in (f"<{name}>", f"</{name}>"):
            special_tokens[tag] = text_vocab_size + len(special_tokens)
    offset = text_vocab_size + len(special_tokens) + max_grid_size
    layouts: dict[str, ModalityLayout] = {}
    for name, (codebook_size, index_shape) in blocks.items():
        grid = grid_shapes.get(name)
        layout = ModalityLayout(
            name=name,
            open_id=special_tokens[f"<{name}>"],
            close_id=special_tokens[f"</{name}>"],
            offset=offset,
            codebook_size=int(codebook_size),
            index_shape=tuple(int(s) for s in index_shape),
            grid_shape=None if grid is None else tuple(int(s) for s in grid),
        )
        layouts[name] = layout
        offset += layout.num_ids
    return special_tokens, layouts, offset


def as_id_array(ids: Tensor | Sequence[int] | np.ndarray) -> np.ndarray:
    """Ids as a one-dimensional int64 array.

    Raises:
        ValueError: On float or boolean ids, or ids that are not ``(N,)``.
    """
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
