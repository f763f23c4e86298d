"""``vqtok encode`` and ``vqtok decode``: signals <-> indices files (``.npy`` or ``.parquet``).

Inputs of ``encode`` are ``.npy`` arrays or files of the model's modality (images for image tokenizers,
``.wav`` for audio ...; see :mod:`vqtok.modalities`). An array holds one example or a batch ``(N, C, ...)``
(:func:`~vqtok.modalities.batch_from_array`); its values follow the modality's stated dtype rule (images:
uint8 / 255, uint16 / 65535, floats must lie in [0, 1]; audio: int16 / 32768, floats in [-1, 1]; ...).
Fitted tokenizers read ``.npy`` batches the same way (``fast``: action chunks ``(N, C, H)`` of the time-series
modality; ``nodepiece``: int64 node ids ``(N, ...)`` of the graph modality). Every input must give the same
index shape, except that variable-length indices (``fast``) are right-padded with the tokenizer's ``pad_index``
(-1), which ``decode`` strips. Outputs:

* ``.npy``: int64 indices ``(N, ...)`` of all inputs, concatenated;
* ``.parquet``: one row per example with ``source``, ``item``, ``shape`` and flat ``indices``.

``decode`` reads either format (integer indices only) and writes float32 reconstructions ``(N, C, ...)`` (integer
ones, such as node ids, as int64) to ``.npy``.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ._args import positive_int

__all__ = ["add_parser", "load_signals", "read_indices", "write_indices"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="signals -> indices (.npy or .parquet)")
    p.add_argument("--model", required=True, help="directory written by save_pretrained / training (run_dir/model)")
    p.add_argument("inputs", nargs="+", help=".npy arrays or files of the model's modality (images, .wav ...)")
    p.add_argument("-o", "--output", required=True, help="output .npy or .parquet")
    p.add_argument("-f", "--force", action="store_true", help="overwrite the output")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run_encode)

    p = sub.add_parser("decode", help="indices (.npy or .parquet) -> reconstructions (.npy)")
    p.add_argument("--model", required=True, help="directory written by save_pretrained")
    p.add_argument("input", help=".npy or .parquet written by `vqtok encode`")
    p.add_argument("-o", "--output", required=True, help="output .npy")
    p.add_argument("-f", "--force", action="store_true", help="overwrite the output")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run_decode)


def _check_output(path: Path, force: bool, suffixes: tuple[str, ...]) -> None:
    if path.suffix not in suffixes:
        raise ValueError(f"output {str(path)!r} must end in one of {suffixes}")
    if path.is_dir():
        raise ValueError(f"output {str(path)!r} is a folder; give a file name")
    if path.exists() and not force:
        raise FileExistsError(f"{str(path)!r} exists; pass -f/--force to overwrite")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")


def load_signals(path: str | Path, modality: str = "image", channels: int | None = None, **options: int) -> Tensor:
    """Loads one input file as a float batch ``(N, C, ...)`` for a tokenizer of ``modality``.

    Args:
        path: A ``.npy`` array or a file in one of the modality's formats.
        modality: Registered modality name.
        channels: Channels the tokenizer takes.
        **options: Other :class:`~vqtok.modalities.ReadOptions` fields (``sample_rate``).

    Raises:
        FileNotFoundError: When ``path`` is missing.
        ValueError, TypeError: On a folder, an unsupported suffix, or a file or array that cannot be read as the
            modality's examples; the message names ``path``.
    """
    from ..modalities import ReadOptions, batch_from_array, get_modality, load_npy

    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"input {str(path)!r} is a folder; pass its files (e.g. {path}/*) or tokenize a whole folder with "
            "`vqtok export`"
        )
    descriptor = get_modality(modality)
    if path.suffix.lower() == ".npy":
        return batch_from_array(descriptor, load_npy(path), repr(str(path)), channels)
    return descriptor.read_file(path, ReadOptions(channels=channels, **options))[None]


def write_indices(path: Path, indices: Tensor, sources: list[tuple[str, int]]) -> None:
    """Writes ``(N, ...)`` indices to ``.npy`` or ``.parquet`` atomically."""
    from .._io import atomic_open

    if path.suffix == ".npy":
        with atomic_open(path, "wb") as f:
            np.save(f, indices.numpy())
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = indices.reshape(indices.shape[0], -1).numpy()
    table = pa.table(
        {
            "source": [s for s, _ in sources],
            "item": pa.array([i for _, i in sources], pa.int64()),
            "shape": [list(indices.shape[1:])] * indices.shape[0],
            "indices": pa.array(list(flat), pa.list_(pa.int64())),
        }
    )
    with atomic_open(path, "wb") as f:
        pq.write_table(table, f)


def _integer_indices(arr: np.ndarray, source: str) -> Tensor:
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{source}: indices must be integers, got dtype {arr.dtype} (float indices are not truncated)")
    if arr.ndim < 1 or arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{source}: no indices to decode (shape {arr.shape})")
    if arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{source}: index {int(arr.max())} does not fit int64")
    return torch.from_numpy(np.ascontiguousarray(arr).astype(np.int64))


def _read_parquet_indices(path: Path) -> Tensor:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{str(path)!r} is not a readable Parquet file: {err}") from err
    missing = [c for c in ("shape", "indices") if c not in table.column_names]
    if missing:
        raise ValueError(
            f"{str(path)!r} has no {' or '.join(repr(c) for c in missing)} column (columns: {table.column_names}); "
            "decode reads files written by `vqtok encode`"
        )
    kind = table.schema.field("indices").type
    if not pa.types.is_list(kind) or not pa.types.is_integer(kind.value_type):
        raise ValueError(f"{str(path)!r}: column 'indices' must hold lists of integers, got {kind}")
    if table.num_rows == 0:
        raise ValueError(f"{str(path)!r}: no rows to decode")
    data = table.to_pydict()
    shapes = {tuple(s) if s is not None else None for s in data["shape"]}
    if len(shapes) != 1 or None in shapes:
        raise ValueError(f"{str(path)!r} mixes index shapes {sorted(map(str, shapes))}; decode them separately")
    shape = shapes.pop()
    rows = []
    for i, row in enumerate(data["indices"]):
        if row is None or len(row) != math.prod(shape):
            raise ValueError(f"{str(path)!r} row {i}: {0 if row is None else len(row)} indices for shape {shape}")
        rows.append(np.asarray(row, dtype=np.int64))
    return torch.from_numpy(np.stack(rows)).reshape(-1, *shape)


def read_indices(path: str | Path) -> Tensor:
    """Reads indices written by :func:`write_indices` as int64 ``(N, ...)``.

    Raises:
        FileNotFoundError: When ``path`` is missing.
        ValueError: On another format, float or non-numeric indices, no rows, or a Parquet file without the
            ``shape``/``indices`` columns.
    """
    from ..modalities import load_npy

    path = Path(path)
    if path.suffix == ".npy":
        return _integer_indices(load_npy(path), repr(str(path)))
    if path.suffix == ".parquet":
        if path.is_dir():
            raise ValueError(f"{str(path)!r} is a folder, not a Parquet file")
        if not path.is_file():
            raise FileNotFoundError(f"input {str(path)!r} not found")
        return _read_parquet_indices(path)
    raise ValueError(f"unsupported indices file {str(path)!r}: expected .npy or .parquet")


def _load_model(directory: str, device: str):  # type: ignore[no-untyped-def]
    from ..tokenizers import BaseTokenizer

    return BaseTokenizer.from_pretrained(directory, map_location=device).eval()


def _as_output(signal: Tensor) -> Tensor:
    # Float signals are written as float32; integer ones (graph node ids) keep their dtype.
    return signal.float() if signal.is_floating_point() else signal


def _cat(chunks: list[Tensor], pad_index: int | None) -> Tensor:
    """Concatenates index batches; variable-length ones are right-padded to one length with ``pad_index``."""
    if pad_index is None or len({c.shape[1:] for c in chunks}) <= 1:
        return torch.cat(chunks)
    width = max(c.shape[1] for c in chunks)
    return torch.cat([torch.nn.functional.pad(c, (0, width - c.shape[1]), value=pad_index) for c in chunks])


def run_encode(args: argparse.Namespace) -> int:
    from ..modalities import get_modality

    out = Path(args.output)
    _check_output(out, args.force, (".npy", ".parquet"))
    model = _load_model(args.model, args.device)
    descriptor = get_modality(model.modality)
    options = descriptor.read_options(model.config)
    chunks, sources = [], []
    first: tuple[str, tuple[int, ...]] | None = None
    for name in args.inputs:
        x = load_signals(name, descriptor.name, options.channels, sample_rate=options.sample_rate)
        for start in range(0, x.shape[0], args.batch_size):
            try:
                indices = model.encode(x[start : start + args.batch_size].to(args.device)).cpu()
            except ValueError as err:
                raise ValueError(f"{name!r}: {err}") from err
            if first is None:
                first = (name, tuple(indices.shape[1:]))
            elif tuple(indices.shape[1:]) != first[1] and model.pad_index is None:
                raise ValueError(
                    f"{name!r} gives indices of shape {tuple(indices.shape[1:])}, {first[0]!r} gave {first[1]}: "
                    "inputs of different sizes cannot share one output; encode them separately"
                )
            chunks.append(indices)
        sources += [(str(name), i) for i in range(x.shape[0])]
    indices = _cat(chunks, model.pad_index)
    write_indices(out, indices, sources)
    print(f"encoded {indices.shape[0]} example(s) -> {out} (indices shape {tuple(indices.shape)})")
    return 0


def _decode_batch(model, indices: Tensor, source: str, device: str) -> Tensor:  # type: ignore[no-untyped-def]
    try:
        return _as_output(model.decode(indices.to(device)).cpu())
    except (ValueError, RuntimeError) as err:
        # Shape mismatches surface from einops or a conv as RuntimeError; name the file and the shape instead.
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{source}: indices of shape {tuple(indices.shape[1:])} per example do not fit this model ({first})"
        ) from err


def run_decode(args: argparse.Namespace) -> int:
    from .._io import atomic_open

    out = Path(args.output)
    _check_output(out, args.force, (".npy",))
    model = _load_model(args.model, args.device)
    indices = read_indices(args.input)
    with torch.no_grad():
        recon = torch.cat(
            [
                _decode_batch(model, indices[s : s + args.batch_size], repr(args.input), args.device)
                for s in range(0, indices.shape[0], args.batch_size)
            ]
        )
    if recon.is_floating_point() and not torch.isfinite(recon).all():
        raise ValueError(f"{args.input!r}: the model decoded non-finite values; the checkpoint may be corrupt")
    with atomic_open(out, "wb") as f:
        np.save(f, recon.numpy())
    print(f"decoded {recon.shape[0]} example(s) -> {out} (shape {tuple(recon.shape)})")
    return 0
