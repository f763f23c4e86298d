"""``vqtok encode`` and ``vqtok decode``: signals <-> indices files (``.npy`` or ``.parquet``).

Inputs of ``encode`` are ``.npy`` batches the tokenizer accepts as they are (e.g. action chunks ``(N, C, H)`` for
``fast``, int64 node ids ``(N,)`` for ``nodepiece``), otherwise images: ``.npy`` arrays (``(N, C, H, W)``,
``(N, H, W)`` or one ``(H, W)``/``(C, H, W)`` image; uint8 is scaled by 1/255) or image files (PNG/JPEG).
Variable-length indices (``fast``) are right-padded with the tokenizer's ``pad_index`` (-1), which ``decode``
strips. Outputs:

* ``.npy``: int64 indices ``(N, ...)`` of all inputs, concatenated;
* ``.parquet``: one row per example with ``source``, ``item``, ``shape`` and flat ``indices``.

``decode`` reads either format and writes float32 reconstructions (integer ones, such as node ids, as int64) to
``.npy``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["add_parser", "load_signals", "read_indices", "write_indices"]

logger = logging.getLogger(__name__)

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="signals -> indices (.npy or .parquet)")
    p.add_argument("--model", required=True, help="directory written by save_pretrained / training (run_dir/model)")
    p.add_argument("inputs", nargs="+", help=".npy arrays or image files")
    p.add_argument("-o", "--output", required=True, help="output .npy or .parquet")
    p.add_argument("-f", "--force", action="store_true", help="overwrite the output")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run_encode)

    p = sub.add_parser("decode", help="indices (.npy or .parquet) -> reconstructions (.npy)")
    p.add_argument("--model", required=True, help="directory written by save_pretrained")
    p.add_argument("input", help=".npy or .parquet written by `vqtok encode`")
    p.add_argument("-o", "--output", required=True, help="output .npy")
    p.add_argument("-f", "--force", action="store_true", help="overwrite the output")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run_decode)


def _check_output(path: Path, force: bool, suffixes: tuple[str, ...]) -> None:
    if path.suffix not in suffixes:
        raise ValueError(f"output {str(path)!r} must end in one of {suffixes}")
    if path.exists() and not force:
        raise FileExistsError(f"{str(path)!r} exists; pass -f/--force to overwrite")


def _as_float(arr: np.ndarray) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def load_signals(path: str | Path, channels: int) -> Tensor:
    """Loads one input file as a float batch ``(N, C, H, W)``.

    Raises:
        ValueError: On an unsupported suffix or an array that cannot be read as images with ``channels``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input {str(path)!r} not found")
    if path.suffix == ".npy":
        x = _as_float(np.load(path, allow_pickle=False))
    elif path.suffix.lower() in _IMAGE_SUFFIXES:
        from PIL import Image

        img = Image.open(path).convert("L" if channels == 1 else "RGB")
        x = _as_float(np.asarray(img))
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    else:
        raise ValueError(f"unsupported input {str(path)!r}: expected .npy or an image file")
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None] if x.shape[0] == channels and channels != 1 else x[:, None] if channels == 1 else x[None]
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{str(path)!r}: cannot read shape {tuple(x.shape)} as images with {channels} channel(s)")
    return x


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


def read_indices(path: str | Path) -> Tensor:
    """Reads indices written by :func:`write_indices` as int64 ``(N, ...)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input {str(path)!r} not found")
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False)).long()
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path).to_pydict()
        shapes = {tuple(s) for s in table["shape"]}
        if len(shapes) != 1:
            raise ValueError(f"{str(path)!r} mixes index shapes {sorted(shapes)}; decode them separately")
        shape = shapes.pop()
        return torch.tensor(np.stack([np.asarray(r, dtype=np.int64) for r in table["indices"]])).reshape(-1, *shape)
    raise ValueError(f"unsupported indices file {str(path)!r}: expected .npy or .parquet")


def _load_model(directory: str, device: str):  # type: ignore[no-untyped-def]
    from ..tokenizers import BaseTokenizer

    return BaseTokenizer.from_pretrained(directory, map_location=device).eval()


def _read_batch(path: str, model, channels: int) -> Tensor:  # type: ignore[no-untyped-def]
    """A ``.npy`` batch the model accepts as it is (action chunks, node ids, ...), else images."""
    if Path(path).suffix == ".npy" and Path(path).is_file():
        arr = np.load(path, allow_pickle=False)
        batch = _as_float(arr) if arr.dtype == np.uint8 or np.issubdtype(arr.dtype, np.floating) else None
        batch = (
            torch.from_numpy(arr.astype(np.int64)) if batch is None and np.issubdtype(arr.dtype, np.integer) else batch
        )
        if batch is not None:
            try:
                model.check_signal(batch)
                return batch
            except ValueError:
                pass
    return load_signals(path, channels)


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
    out = Path(args.output)
    _check_output(out, args.force, (".npy", ".parquet"))
    model = _load_model(args.model, args.device)
    channels = getattr(model.config, "in_channels", 1)
    chunks, sources = [], []
    for name in args.inputs:
        x = _read_batch(name, model, channels)
        for start in range(0, x.shape[0], args.batch_size):
            chunks.append(model.encode(x[start : start + args.batch_size].to(args.device)).cpu())
        sources += [(str(name), i) for i in range(x.shape[0])]
    indices = _cat(chunks, model.pad_index)
    write_indices(out, indices, sources)
    print(f"encoded {indices.shape[0]} example(s) -> {out} (indices shape {tuple(indices.shape)})")
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from .._io import atomic_open

    out = Path(args.output)
    _check_output(out, args.force, (".npy",))
    model = _load_model(args.model, args.device)
    indices = read_indices(args.input)
    with torch.no_grad():
        recon = torch.cat(
            [
                _as_output(model.decode(indices[s : s + args.batch_size].to(args.device)).cpu())
                for s in range(0, indices.shape[0], args.batch_size)
            ]
        )
    with atomic_open(out, "wb") as f:
        np.save(f, recon.numpy())
    print(f"decoded {recon.shape[0]} example(s) -> {out} (shape {tuple(recon.shape)})")
    return 0
