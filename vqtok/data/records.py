"""Indexable collections of raw records (file bytes or arrays) that a training path can point at.

Each collection has ``len()``, ``key(i)`` and ``get(i) -> Record``; decoding happens later, in DataLoader
workers (:class:`vqtok.data.own.OwnDataset`). Opening a collection only lists files or maps tables, so a
folder or table larger than memory is fine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..modalities import load_npy
from .decoders import suffixes_of

__all__ = ["ArrayRecords", "FolderRecords", "Record", "TableRecords", "open_hf_disk", "open_parquet"]

_AUTO_COLUMNS = ("image", "audio", "signal", "img", "jpg", "png", "wav", "flac", "array", "pixels")


@dataclass
class Record:
    """One raw example: ``payload`` is a file's bytes (decoded by ``suffix``, or by content when unknown) or a
    numeric array; ``source`` names it in warnings and errors."""

    payload: bytes | np.ndarray
    suffix: str
    source: str


class FolderRecords:
    """The files of ``kind`` under ``root``, recursively, in sorted order (hidden files skipped).

    Raises:
        FileNotFoundError: When ``root`` is missing.
        ValueError: When the folder is empty or holds no file with a readable suffix (the message lists what it
            found).
    """

    def __init__(self, root: str | os.PathLike[str], kind: str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.path {str(self.root)!r} is not a folder")
        wanted = suffixes_of(kind)
        all_files = [p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")]
        self.files = sorted(p.relative_to(self.root).as_posix() for p in all_files if p.suffix.lower() in wanted)
        if not self.files:
            found = sorted({p.suffix.lower() or "(no suffix)" for p in all_files})
            what = f"only {', '.join(found[:10])} files" if found else "no files at all"
            raise ValueError(
                f"data.path {str(self.root)!r} holds no {kind} files ({', '.join(wanted)}); it holds {what}"
            )
        self.description = {"kind": "folder", "root": str(self.root), "files": len(self.files)}

    def __len__(self) -> int:
        return len(self.files)

    def key(self, index: int) -> str:
        return self.files[index]

    def get(self, index: int) -> Record:
        path = self.root / self.files[index]
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ValueError(f"{str(path)!r}: unreadable ({err})") from err
        return Record(data, path.suffix.lower(), repr(str(path)))


class ArrayRecords:
    """Rows of an ``.npy`` array (memory-mapped) or of one array in an ``.npz`` (``column`` names it when the
    archive holds several). Pickled object arrays are never loaded.

    Raises:
        ValueError: On an unreadable file, an object array, a 0-d or empty array, or an ambiguous ``.npz``.
    """

    def __init__(self, path: str | os.PathLike[str], column: str | None = None) -> None:
        self.path = Path(path)
        name = repr(str(self.path))
        if self.path.stat().st_size == 0:
            raise ValueError(f"{name}: the file is empty (0 bytes)")
        try:
            if self.path.suffix.lower() == ".npz":
                archive = np.load(self.path, allow_pickle=False)
                names = list(archive.files)
                if column is None and len(names) != 1:
                    raise ValueError(f"{name} holds arrays {names}; choose one with data.column=NAME")
                if column is not None and column not in names:
                    raise ValueError(f"{name} has no array {column!r}; it holds {names}")
                self.array = archive[column or names[0]]
            else:
                self.array = load_npy(self.path, mmap=True)
        except ValueError as err:
            if "pickle" in str(err) or "object" in str(err):
                why = "holds Python objects (pickles are never loaded); save a numeric array"
                raise ValueError(f"{name} {why}") from err
            raise ValueError(f"{name}: not a readable array file ({err})") from err
        except (OSError, EOFError) as err:
            raise ValueError(f"{name}: not a readable array file ({err})") from err
        if self.array.ndim < 2 or self.array.shape[0] == 0:
            raise ValueError(f"{name}: expected a non-empty array (N, ...) of examples, got shape {self.array.shape}")
        self.description = {"kind": "array", "path": str(self.path), "shape": list(self.array.shape)}

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def key(self, index: int) -> str:
        return f"{self.path.name}:{index}"

    def get(self, index: int) -> Record:
        return Record(np.asarray(self.array[index]), "", f"{str(self.path)!r} row {index}")


class TableRecords:
    """Rows of an Arrow table (Parquet files, Hugging Face ``datasets`` saved to disk).

    The column holds encoded files (a struct with ``bytes`` and ``path``, as ``datasets`` stores ``Image`` and
    ``Audio`` features, or plain binary) or numbers (a (nested) list column; a ``shape`` list column, when
    present, reshapes each row).

    Args:
        table: A ``pyarrow.Table``.
        name: Names the table in messages.
        column: The signal column (``None``: the first of image, audio, signal, ... or the only column).
    """

    def __init__(self, table: Any, name: str, column: str | None = None) -> None:
        cols = table.column_names
        if column is None:
            picks = [c for c in _AUTO_COLUMNS if c in cols] or (cols if len(cols) == 1 else [])
            if not picks:
                raise ValueError(f"{name}: choose the signal column with data.column=NAME; columns: {cols}")
            column = picks[0]
        if column not in cols:
            raise ValueError(f"{name} has no column {column!r}; columns: {cols}")
        if table.num_rows == 0:
            raise ValueError(f"{name}: the table has no rows")
        self.table, self.name, self.column_name = table, name, column
        self.column = table.column(column)
        self.shapes = table.column("shape") if "shape" in cols and column != "shape" else None
        self.description = {"kind": "table", "name": name, "column": column, "rows": table.num_rows}

    def __len__(self) -> int:
        return self.table.num_rows

    def key(self, index: int) -> str:
        return f"{self.name}:{index}"

    def get(self, index: int) -> Record:
        source = f"{self.name} row {index} column {self.column_name!r}"
        value = self.column[index].as_py()
        suffix = ""
        if isinstance(value, dict):
            suffix = Path(str(value.get("path") or "")).suffix.lower()
            value = value.get("bytes")
        if value is None:
            raise ValueError(f"{source}: empty value")
        if isinstance(value, (bytes, bytearray)):
            return Record(bytes(value), suffix, source)
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"{source}: ragged or non-numeric values cannot be read as an array")
        if self.shapes is not None:
            arr = arr.reshape(self.shapes[index].as_py())
        return Record(arr, "", source)


def open_parquet(path: str | os.PathLike[str], column: str | None = None) -> TableRecords:
    """A Parquet file, or every ``*.parquet`` under a folder (sorted, concatenated)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    try:
        tables = [pq.read_table(f, memory_map=True) for f in files]
    except (OSError, pa.ArrowInvalid) as err:
        raise ValueError(f"{str(path)!r}: not readable Parquet ({err})") from err
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return TableRecords(table, repr(str(path)), column)


def open_hf_disk(path: str | os.PathLike[str], column: str | None = None, split: str = "train") -> TableRecords:
    """A Hugging Face ``datasets`` folder from ``save_to_disk`` (a ``DatasetDict``: its ``split``), read as
    its memory-mapped Arrow table, so ``Image``/``Audio`` columns stay encoded bytes until a worker decodes them."""
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"{str(path)!r} holds splits {list(ds)}, not {split!r}; set data.split")
        ds = ds[split]
    table = ds.data.table
    if ds._indices is not None:  # a selected/shuffled view: materialise its rows in order
        table = ds.flatten_indices().data.table
    return TableRecords(table, repr(str(path)), column)
