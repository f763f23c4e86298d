"""Token datasets: tokenize a whole data set into deterministic, checksummed Parquet shards.

Items (images, audio clips, array rows) are numbered in a fixed order and cut into shards of ``shard_size``
consecutive items; shard ``s`` goes to rank ``s % world_size`` under ``torchrun``. Each shard is written by
exactly one rank, with fixed Parquet settings (row-group size, zstd level, no dictionary, no timestamps), so a
shard's bytes depend only on the items, the model and the settings, never on the number of processes: a
2-process export and a 1-process export give byte-identical files and the same ``manifest.json``.

Output directory::

    data/{split}-00000-of-0000N.parquet   columns: key (str), ids (list<int32>), length (int32), shape (list<int32>)
    .progress/fingerprint.json            what the export was started with (resuming with other settings fails)
    .progress/00000.json                  per-shard record: file, sha256, rows, tokens; written after the shard
    manifest.json                         written once every shard is recorded: settings, totals, per-shard sha256

A shard counts as done only when its file was renamed into place *and* its record (with the file's SHA-256)
was written afterwards, and the file still has that checksum; a killed export rerun with the same settings
skips done shards and redoes the rest. ``ids`` are the tokenizer's indices flattened row-major (``shape``
says how to reshape them), or, with a :class:`~vqtok.vocab.MultimodalVocab`, the ids of one complete media
segment (``<image> ... </image>``) ready to be spliced into language-model sequences.

The ``data/{split}-*.parquet`` names follow the Hugging Face Hub layout, so
``datasets.load_dataset("parquet", data_files=f"{out}/data/*.parquet")`` (or ``load_dataset(out)``) reads the
export directly.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .. import _dist
from .._io import CheckpointError, atomic_write_bytes, read_json, sha256_bytes, sha256_file, write_json
from ..modalities import find_modality
from ..tokenizers import BaseTokenizer
from .sources import ArraySource, DatasetSource, ExportSource, FolderSource, ParquetSource, open_source

if TYPE_CHECKING:
    from ..vocab import MultimodalVocab

__all__ = [
    "ExportResult",
    "ExportSource",
    "ArraySource",
    "DatasetSource",
    "FolderSource",
    "ParquetSource",
    "export_tokens",
    "open_source",
    "sha256_file",
]

logger = logging.getLogger(__name__)

FORMAT = "vqtok-token-export"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PROGRESS_DIR = ".progress"
# Fixed writer settings: part of the fingerprint, because any change alters the shard bytes.
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": False,
    "write_statistics": True,
    "data_page_size": 1 << 20,
    "version": "2.6",
}


# ------------------------------------------------------------------------------------------------ export
@dataclass
class ExportResult:
    """What :func:`export_tokens` did on this rank.

    Attributes:
        out_dir: The output directory.
        num_shards: Shards of the whole export.
        written: Shards this rank wrote in this call.
        skipped: Shards of this rank found complete and skipped.
        complete: True when every shard is recorded and ``manifest.json`` is written.
        items: Items tokenized by this rank in this call.
        tokens: Ids written by this rank in this call.
        seconds: Wall time of this call.
        manifest: The manifest, when complete.
    """

    out_dir: Path
    num_shards: int
    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    complete: bool = False
    items: int = 0
    tokens: int = 0
    seconds: float = 0.0
    manifest: dict[str, Any] | None = None


def _model_digest(model: BaseTokenizer | MultimodalVocab) -> str:
    """Hash of the weights and config, so that resuming with another model is refused."""
    h = hashlib.sha256()
    tokenizers = model.tokenizers if not isinstance(model, BaseTokenizer) else {"": model}
    if not isinstance(model, BaseTokenizer):
        h.update(json.dumps(model.config(), sort_keys=True).encode())
        h.update(model.text.to_str().encode())
    for name, tok in tokenizers.items():
        h.update(name.encode())
        h.update(json.dumps({"arch": tok.architecture, "config": tok.config.to_dict()}, sort_keys=True).encode())
        for key, value in sorted(tok.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _read_record(path: Path) -> dict[str, Any] | None:
    """A progress record, or None when it is missing or damaged (the shard is then simply redone)."""
    try:
        return read_json(path, "export record")
    except CheckpointError:
        return None


def export_tokens(
    source: ExportSource,
    model: BaseTokenizer | MultimodalVocab,
    out_dir: str | os.PathLike[str],
    modality: str | None = None,
    split: str = "train",
    shard_size: int = 4096,
    batch_size: int = 256,
    row_group_size: int = 1024,
    device: str | torch.device = "cpu",
    force: bool = False,
    max_shards: int | None = None,
    progress: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
) -> ExportResult:
    """Tokenizes ``source`` into Parquet shards under ``out_dir`` (format in the module docstring).

    Under ``torchrun`` (an initialised default process group) each rank writes shards ``s`` with
    ``s % world_size == rank``, then rank 0 writes the manifest. Rerunning with the same arguments resumes.

    Args:
        source: The items to tokenize.
        model: A tokenizer (ids = its flattened indices) or a :class:`~vqtok.vocab.MultimodalVocab` (ids = one
            media segment per item).
        out_dir: Output directory.
        modality: With a vocabulary: which of its modalities ``source`` holds (may be left out when it has one).
        split: Split name used in the shard file names.
        shard_size: Items per shard.
        batch_size: Items per tokenizer call (items of different shapes are batched separately).
        row_group_size: Parquet rows per row group.
        device: Where the tokenizer runs.
        force: Delete a previous export in ``out_dir`` that was made with other settings, instead of failing.
        max_shards: Stop after writing this many shards on this rank (time-boxed runs); ``None`` for all.
        progress: Show a tqdm bar on rank 0.
        rank: Override the process group's rank (for tests); ``None`` reads it from ``torch.distributed``.
        world_size: Override the process group's size, with ``rank``.

    Returns:
        An :class:`ExportResult` for this rank.

    Raises:
        ValueError: On bad sizes, an unknown modality, or an existing export in ``out_dir`` made with other
            settings (without ``force``).
    """
    from tqdm.auto import tqdm

    start_time = time.perf_counter()
    if shard_size < 1 or batch_size < 1 or row_group_size < 1:
        raise ValueError("shard_size, batch_size and row_group_size must be >= 1")
    if rank is None or world_size is None:
        rank, world_size = _dist.rank(), _dist.world_size()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {str(out)!r} exists and is not a folder; exports are written into a folder")
    encode, model_desc = _make_encoder(model, modality, torch.device(device))
    # Arrays given without a modality are read by the rule of the tokenizer that takes them.
    tok = model if isinstance(model, BaseTokenizer) else model.tokenizers[model_desc["modality"]]
    source.bind_modality(find_modality(tok.modality))
    num_items = len(source)
    num_shards = max(1, math.ceil(num_items / shard_size))
    keys_digest = sha256_bytes("\n".join(source.key(i) for i in range(num_items)).encode())
    fingerprint = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": source.description,
        "num_items": num_items,
        "keys_sha256": keys_digest,
        "model": model_desc,
        "split": split,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "row_group_size": row_group_size,
        "parquet": PARQUET_OPTIONS,
        "device_type": torch.device(device).type,
    }
    progress_dir = out / PROGRESS_DIR
    previous = _read_record(progress_dir / "fingerprint.json")
    stale = previous is not None and previous != fingerprint
    if stale and not force:
        raise ValueError(
            f"{str(out)!r} holds an export made with other settings, model or inputs; pass force=True "
            "(--force) to replace it, or choose another output directory"
        )
    if rank == 0:
        if stale or force:
            for path in (out / "data", progress_dir):
                shutil.rmtree(path, ignore_errors=True)
            (out / MANIFEST_NAME).unlink(missing_ok=True)
        progress_dir.mkdir(parents=True, exist_ok=True)
        (out / "data").mkdir(parents=True, exist_ok=True)
        if previous is None or stale or force:
            write_json(progress_dir / "fingerprint.json", fingerprint)
    if world_size > 1:  # ranks given by hand (tests, external schedulers) may have no group to wait on
        _dist.barrier()

    result = ExportResult(out_dir=out, num_shards=num_shards)
    mine = [s for s in range(num_shards) if s % world_size == rank]
    todo = [s for s in mine if not _shard_done(out, s)]
    result.skipped = [s for s in mine if s not in todo]
    if max_shards is not None:
        todo = todo[:max_shards]
    total = sum(min(shard_size, num_items - s * shard_size) for s in todo)
    # Closed on errors too, so that the error message is the last line a user sees.
    with tqdm(total=total, unit="item", desc=f"export {split}", disable=not progress or rank != 0) as bar:
        for s in todo:
            items = range(s * shard_size, min(num_items, (s + 1) * shard_size))
            record = _write_shard(out, s, num_shards, split, source, items, encode, batch_size, row_group_size, bar)
            result.written.append(s)
            result.items += record["num_rows"]
            result.tokens += record["num_tokens"]
    if world_size > 1:
        _dist.barrier()

    records = [_read_record(progress_dir / f"{s:05d}.json") for s in range(num_shards)]
    if all(r is not None for r in records):
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "num_items": num_items,
            "num_tokens": sum(r["num_tokens"] for r in records),  # type: ignore[index]
            "num_shards": num_shards,
            "columns": {"key": "string", "ids": "list<int32>", "length": "int32", "shape": "list<int32>"},
            "shards": records,
        }
        if rank == 0:
            write_json(out / MANIFEST_NAME, manifest)
        result.complete, result.manifest = True, manifest
    if world_size > 1:
        _dist.barrier()
    result.seconds = time.perf_counter() - start_time
    logger.info(
        "rank %d: wrote %d shard(s), skipped %d, %d items, %d tokens in %.1f s",
        rank,
        len(result.written),
        len(result.skipped),
        result.items,
        result.tokens,
        result.seconds,
    )
    return result


def _shard_name(split: str, s: int, num_shards: int) -> str:
    return f"data/{split}-{s:05d}-of-{num_shards:05d}.parquet"


def _shard_done(out: Path, s: int) -> bool:
    record = _read_record(out / PROGRESS_DIR / f"{s:05d}.json")
    if record is None:
        return False
    path = out / record.get("file", "")
    return path.is_file() and sha256_file(path) == record.get("sha256")


Encoder = Callable[[Tensor], tuple[list[np.ndarray], list[tuple[int, ...]]]]


def _make_encoder(
    model: BaseTokenizer | MultimodalVocab, modality: str | None, device: torch.device
) -> tuple[Encoder, dict[str, Any]]:
    """``encode(batch (B, ...)) -> (ids per item, index shape per item)`` and the model's description."""
    if isinstance(model, BaseTokenizer):
        tok = model.eval().to(device)
        desc = {"kind": "tokenizer", "architecture": tok.architecture, "sha256": _model_digest(tok)}

        def encode(batch: Tensor) -> tuple[list[np.ndarray], list[tuple[int, ...]]]:
            # unbatch drops the padding of variable-length tokenizers (FAST), so each row keeps its own length.
            rows = tok.unbatch(tok.encode(batch.to(device)).cpu())
            return [r.reshape(-1).numpy().astype(np.int32) for r in rows], [tuple(r.shape) for r in rows]

        return encode, desc

    names = list(model.tokenizers)
    if modality is None:
        if len(names) != 1:
            raise ValueError(f"the vocabulary has modalities {names}; say which one the input holds")
        modality = names[0]
    if modality not in model.tokenizers:
        raise ValueError(f"unknown modality {modality!r}; the vocabulary has {names}")
    vocab, tok = model, model.tokenizers[modality].eval().to(device)
    desc = {"kind": "vocab", "modality": modality, "sha256": _model_digest(vocab)}

    def encode_vocab(batch: Tensor) -> tuple[list[np.ndarray], list[tuple[int, ...]]]:
        rows = tok.unbatch(tok.encode(batch.to(device)).cpu())
        ids = [vocab.encode_indices(modality, r).numpy().astype(np.int32) for r in rows]
        return ids, [tuple(r.shape) for r in rows]

    return encode_vocab, desc


def _encode_items(
    source: ExportSource, items: Sequence[int], encode: Encoder, batch_size: int, bar: Any
) -> tuple[list[np.ndarray], list[tuple[int, ...]]]:
    ids: list[np.ndarray] = [np.zeros(0, np.int32)] * len(items)
    shapes: list[tuple[int, ...]] = [()] * len(items)
    for start in range(0, len(items), batch_size):
        chunk = list(items[start : start + batch_size])
        signals = source.load_many(chunk)
        # Same-shape items share a tokenizer call; results go back to their own rows.
        groups: dict[tuple[int, ...], list[int]] = {}
        for j, x in enumerate(signals):
            groups.setdefault(tuple(x.shape), []).append(j)
        for members in groups.values():
            out_ids, out_shapes = encode(torch.stack([signals[j] for j in members]))
            for j, row, shape in zip(members, out_ids, out_shapes, strict=True):
                ids[start + j], shapes[start + j] = row, shape
        bar.update(len(chunk))
    return ids, shapes


def _write_shard(
    out: Path,
    s: int,
    num_shards: int,
    split: str,
    source: ExportSource,
    items: range,
    encode: Encoder,
    batch_size: int,
    row_group_size: int,
    bar: Any,
) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids, shapes = _encode_items(source, items, encode, batch_size, bar)
    lengths = np.array([len(r) for r in ids], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32)
    flat = np.concatenate(ids).astype(np.int32) if ids else np.zeros(0, np.int32)
    table = pa.table(
        {
            "key": pa.array([source.key(i) for i in items], pa.string()),
            "ids": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, pa.int32())),
            "length": pa.array(lengths, pa.int32()),
            "shape": pa.array([list(sh) for sh in shapes], pa.list_(pa.int32())),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_size, **PARQUET_OPTIONS)
    data = buf.getvalue()
    name = _shard_name(split, s, num_shards)
    atomic_write_bytes(out / name, data)
    # The record comes after the rename: a record always describes a file that is fully in place.
    record = {
        "shard": s,
        "file": name,
        "sha256": sha256_bytes(data),
        "bytes": len(data),
        "num_rows": len(items),
        "num_tokens": int(lengths.sum()),
        "first_key": source.key(items[0]) if len(items) else None,
    }
    write_json(out / PROGRESS_DIR / f"{s:05d}.json", record)
    return record
