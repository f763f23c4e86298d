"""Export sources: ordered, indexable collections of single examples with stable keys.

Files are read by the modality descriptor of the tokenizer that will take them (:mod:`vqtok.modalities`):
its suffixes choose the files of a folder, its readers decode them and its value rule scales raw arrays. A
bad file raises ``ValueError`` naming the file (and the row, for Parquet).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ..modalities import Modality, ReadOptions, get_modality, load_npy
from ..modalities._arrays import real_array

__all__ = ["ArraySource", "DatasetSource", "ExportSource", "FolderSource", "ParquetSource", "open_source"]


def _descriptor(modality: str | Modality) -> Modality:
    return modality if isinstance(modality, Modality) else get_modality(modality)


def _example(descriptor: Modality, arr: np.ndarray, source: str) -> Tensor:
    """One example in the modality's layout; a single-channel example may leave out its channel axis."""
    x = descriptor.from_array(arr, source)
    return x[None] if x.ndim == descriptor.example_ndim - 1 else x


class ExportSource:
    """An ordered, indexable collection of single examples with stable string keys.

    Subclasses set ``description`` (recorded in the fingerprint) and implement ``__len__``, ``key`` and
    ``load`` (one example without the batch dimension, e.g. ``(C, H, W)`` float).
    """

    description: dict[str, Any]

    def __len__(self) -> int:
        raise NotImplementedError

    def key(self, index: int) -> str:
        raise NotImplementedError

    def load(self, index: int) -> Tensor:
        raise NotImplementedError

    def load_many(self, indices: Sequence[int]) -> list[Tensor]:
        """Several examples; sources with a batched fetch override this."""
        return [self.load(i) for i in indices]

    def bind_modality(self, modality: Modality | None) -> None:
        """Called by the exporter with the modality of the tokenizer that will take the items; sources made
        without an explicit modality read their values by its rule. The default does nothing."""


class DatasetSource(ExportSource):
    """A built-in data set from :func:`vqtok.data.create_dataset`; keys are ``name/split/index``.

    Args:
        name: Registered data set name.
        split: ``"train"`` or ``"test"``.
        **kwargs: Passed to the data set factory.
    """

    def __init__(self, name: str, split: str = "train", **kwargs: Any) -> None:
        from ._registry import create_dataset

        self.dataset = create_dataset(name, split, **kwargs)
        self.name, self.split = name, split
        self.description = {"kind": "dataset", "name": name, "split": split, "kwargs": kwargs}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def key(self, index: int) -> str:
        return f"{self.name}/{self.split}/{index}"

    def load(self, index: int) -> Tensor:
        return self.dataset[index]

    def load_many(self, indices: Sequence[int]) -> list[Tensor]:
        getitems = getattr(self.dataset, "__getitems__", None)
        return list(getitems(list(indices))) if getitems is not None else super().load_many(indices)


class ArraySource(ExportSource):
    """Rows of an ``.npy`` array ``(N, ...)``, scaled by the modality's value rule; keys are ``file:index``.

    Args:
        path: The ``.npy`` file; read memory-mapped.
        modality: Modality of the rows. ``None``: the modality of the tokenizer :func:`export_tokens` runs
            (images when the source is read on its own: uint8 / 255, uint16 / 65535, floats in [0, 1]).

    Raises:
        ValueError, TypeError: On an unreadable, empty or non-numeric array, or one with too few dimensions.
    """

    def __init__(self, path: str | os.PathLike[str], modality: str | Modality | None = None) -> None:
        self.path = Path(path)
        self.modality = _descriptor(modality) if modality is not None else None
        self.array = real_array(load_npy(self.path, mmap=True), repr(str(self.path)))
        ndim = self.modality.example_ndim if self.modality is not None else 0
        if self.array.ndim < max(1, ndim) or self.array.shape[0] == 0:
            raise ValueError(
                f"{str(self.path)!r}: expected a non-empty array (N, ...) of examples, got {self.array.shape}"
            )
        self.description = {"kind": "npy", "name": self.path.name, "shape": list(self.array.shape)}

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def key(self, index: int) -> str:
        return f"{self.path.name}:{index}"

    def bind_modality(self, modality: Modality | None) -> None:
        if self.modality is None:
            self.modality = modality

    def load(self, index: int) -> Tensor:
        modality = self.modality or get_modality("image")
        return _example(modality, np.array(self.array[index]), f"{str(self.path)!r} row {index}")


class FolderSource(ExportSource):
    """Files of one modality under a folder, recursively, in sorted order; keys are relative paths.

    Args:
        root: The folder.
        channels: Channels the tokenizer expects (images: 1 -> grey, 3 -> RGB, by the modality's channel rule).
        sample_rate: When set, audio files at another rate are rejected (no resampling is done).
        modality: Which files to read: the modality's suffixes (default images).

    Raises:
        FileNotFoundError: When the folder holds no file of the modality.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        channels: int | None = 3,
        sample_rate: int | None = None,
        modality: str | Modality = "image",
    ) -> None:
        self.root = Path(root)
        self.modality = _descriptor(modality)
        suffixes = set(self.modality.suffixes)
        self.files = sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
        )
        if not self.files:
            raise FileNotFoundError(
                f"no {self.modality.name} files ({', '.join(sorted(suffixes)) or 'none'}) under {str(self.root)!r}"
            )
        self.options = ReadOptions(channels=channels, sample_rate=sample_rate)
        self.description = {"kind": "folder", "name": self.root.name, "num_files": len(self.files)}

    def __len__(self) -> int:
        return len(self.files)

    def key(self, index: int) -> str:
        return self.files[index]

    def load(self, index: int) -> Tensor:
        return self.modality.read_file(self.root / self.files[index], self.options)


class ParquetSource(ExportSource):
    """Rows of a Parquet file.

    The ``column`` holds either encoded files (a struct with a ``bytes`` field, as Hugging Face ``datasets``
    stores ``Image``/``Audio`` features, or raw binary), decoded by the modality's readers (format by content),
    or numbers (a list column, reshaped with an optional ``shape`` list column, scaled by the modality's value
    rule: the stored dtype counts, so a ``list<uint8>`` of pixels is divided by 255). Keys come from a ``key``
    column when present, else ``file:index``.

    Args:
        path: The Parquet file.
        column: Column holding the signals.
        channels: Channels the tokenizer expects.
        sample_rate: Required sample rate of encoded audio, when known.
        modality: Modality of the signals (default images).

    Raises:
        ValueError: On an unreadable file or a missing column.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        column: str = "signal",
        channels: int | None = 3,
        sample_rate: int | None = None,
        modality: str | Modality = "image",
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.modality = _descriptor(modality)
        try:
            self.table = pq.read_table(self.path, memory_map=True)
        except (pa.ArrowException, OSError) as err:
            raise ValueError(f"{str(self.path)!r} is not a readable Parquet file: {err}") from err
        if column not in self.table.column_names:
            raise ValueError(f"{str(self.path)!r} has no column {column!r}; columns: {self.table.column_names}")
        self.column = self.table.column(column)
        self.shapes = self.table.column("shape") if "shape" in self.table.column_names else None
        self.keys = self.table.column("key") if "key" in self.table.column_names else None
        self.options = ReadOptions(channels=channels, sample_rate=sample_rate)
        self.description = {"kind": "parquet", "name": self.path.name, "column": column, "rows": self.table.num_rows}

    def __len__(self) -> int:
        return self.table.num_rows

    def key(self, index: int) -> str:
        return str(self.keys[index].as_py()) if self.keys is not None else f"{self.path.name}:{index}"

    def load(self, index: int) -> Tensor:
        source = f"{str(self.path)!r} row {index}"
        scalar = self.column[index]
        value = scalar.as_py()
        if isinstance(value, dict):
            value = value.get("bytes")
        if isinstance(value, (bytes, bytearray)):
            return self.modality.read_bytes(bytes(value), source, self.options)
        if value is None:
            raise ValueError(f"{source}: empty value")
        values = getattr(scalar, "values", None)
        if values is None:
            raise ValueError(f"{source}: expected encoded file bytes or a list of numbers, got {type(value).__name__}")
        arr = values.to_numpy(zero_copy_only=False)
        if self.shapes is not None:
            shape = self.shapes[index].as_py()
            if shape is None or not all(isinstance(s, int) and s >= 0 for s in shape) or np.prod(shape) != arr.size:
                raise ValueError(f"{source}: shape {shape} does not fit {arr.size} values")
            arr = arr.reshape(shape)
        return _example(self.modality, arr, source)


def open_source(
    spec: str,
    split: str = "train",
    channels: int | None = 3,
    sample_rate: int | None = None,
    column: str = "signal",
    modality: str | Modality | None = None,
) -> ExportSource:
    """A source from a command-line spec: a folder, a ``.npy``/``.parquet`` file, or a built-in data set name.

    ``modality`` chooses the readers (folders and Parquet files default to images; arrays to the tokenizer's
    modality at export time).

    Raises:
        ValueError: When ``spec`` is none of these.
    """
    from ._registry import list_datasets

    path = Path(spec)
    files = modality if modality is not None else "image"
    if path.is_dir():
        return FolderSource(path, channels=channels, sample_rate=sample_rate, modality=files)
    if path.is_file() and path.suffix == ".npy":
        return ArraySource(path, modality=modality)
    if path.is_file() and path.suffix == ".parquet":
        return ParquetSource(path, column=column, channels=channels, sample_rate=sample_rate, modality=files)
    if spec in list_datasets():
        return DatasetSource(spec, split)
    what = "a file of another kind" if path.is_file() else "not found"
    raise ValueError(
        f"input {spec!r} ({what}) is not a folder, a .npy or .parquet file, or a built-in data set "
        f"({', '.join(list_datasets())})"
    )
