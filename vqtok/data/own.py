"""Training on your own data: ``data.path`` chooses a source by what the path is.

* a folder (recursive) of images, audio files or video clips (by the model's modality; a video model takes
  ``.gif`` files as clips, an image model their first frame), see :class:`FolderRecords`;
* a folder written by Hugging Face ``datasets.save_to_disk`` (it holds ``dataset_info.json``);
* a ``.parquet`` file or a folder of them; an ``.npy`` / ``.npz`` array of examples;
* ``.tar`` shards (a file, ``name-{000..099}.tar``, a glob, a folder of tars, or any ``fsspec`` URL), streamed.

Every example is decoded in the DataLoader workers and brought to the model's shape by a seeded transform
(:mod:`vqtok.data.transforms`). An unreadable, corrupt or zero-byte example is skipped with a warning naming
it and counted (:class:`BadDataCounter`); more than ``max_bad_fraction`` of them stops the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .decoders import (
    array_values,
    decode_audio,
    decode_image,
    decode_video,
    image_channels,
    kind_of_suffix,
    suffixes_of,
)
from .records import ArrayRecords, FolderRecords, Record, open_hf_disk, open_parquet
from .transforms import AudioTransform, ImageTransform, VideoTransform, sample_generator

__all__ = ["BadDataCounter", "Decoder", "OwnDataset", "is_shard_spec", "open_records"]

logger = logging.getLogger(__name__)


def is_shard_spec(path: str) -> bool:
    """Whether ``data.path`` names ``.tar`` shards (a tar, a range/glob of them, a URL or a folder of tars)."""
    if "://" in path or "{" in path or any(c in path for c in "*?[") or path.endswith(".tar") or "::" in path:
        return True
    p = Path(path)
    return p.is_dir() and any(p.glob("*.tar")) and not any(p.glob("*.parquet"))


def open_records(path: str, kind: str, column: str | None = None, split: str = "train") -> Any:
    """The record collection ``path`` names (module docstring); shards are opened by the trainer instead.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        ValueError: On a path of no known kind, an empty folder or one with no readable files.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data.path {path!r} does not exist")
    if p.is_dir():
        if (p / "dataset_info.json").is_file() or (p / "dataset_dict.json").is_file():
            return open_hf_disk(p, column, split)
        if any(p.rglob("*.parquet")):
            return open_parquet(p, column)
        return FolderRecords(p, kind)
    suffix = p.suffix.lower()
    if suffix in (".npy", ".npz"):
        return ArrayRecords(p, column)
    if suffix == ".parquet":
        return open_parquet(p, column)
    raise ValueError(
        f"data.path {path!r}: expected a folder, a .npy/.npz/.parquet file, .tar shards or a saved "
        f"Hugging Face data set, got a {suffix or 'suffix-less'} file"
    )


@dataclass
class Decoder:
    """Turns one record into one example of the model's shape (picklable, so it runs in DataLoader workers).

    Attributes:
        kind: ``"image"``, ``"audio"`` or ``"video"``.
        channels: The model's channel count.
        image: Transform for images (``kind == "image"``).
        audio: Transform for audio.
        video: Transform for clips (``kind == "video"``; an array row is ``(C, T, H, W)`` or ``(T, H, W)``).
        sample_rate: Rate assumed for raw audio arrays.
        extension: For tar samples, the member to read (``None``: the first image/audio/npy member).
    """

    kind: str
    channels: int
    image: ImageTransform | None = None
    audio: AudioTransform | None = None
    video: VideoTransform | None = None
    sample_rate: int | None = None
    extension: str | None = None

    def __call__(self, record: Record, generator: torch.Generator | None) -> Tensor:
        payload, source = record.payload, record.source
        if isinstance(payload, np.ndarray):
            x = array_values(payload, source, self.kind)
            if self.kind == "image":
                x = x[None] if x.ndim == 2 else x
                if x.ndim != 3:
                    raise ValueError(f"{source}: an image row must be (C, H, W) or (H, W), got {tuple(x.shape)}")
                x = image_channels(x, self.channels, source)
                return self.image(x, generator, source) if self.image is not None else x
            if self.kind == "video":
                return self._clip(x[None] if x.ndim == 3 else x, source, generator)
            assert self.audio is not None
            return self.audio(x, self.sample_rate or self.audio.sample_rate, generator, source)
        kind = self.kind if record.suffix in suffixes_of(self.kind) else kind_of_suffix(record.suffix) or self.kind
        if kind != self.kind:
            raise ValueError(f"{source}: a {kind} file, but the model takes {self.kind}")
        if self.kind == "video":
            if self.video is None:
                return decode_video(payload, source, self.channels)
            # Only the window is decoded to arrays; the transform's draw order is unchanged (window, then box).
            start_of = lambda total: self.video.window_start(total, generator)  # noqa: E731
            clip = decode_video(payload, source, self.channels, self.video.frames, start_of)
            return self._clip(clip, source, generator)
        if self.kind == "image":
            x = decode_image(payload, source, self.channels, record.suffix)
            return self.image(x, generator, source) if self.image is not None else x
        assert self.audio is not None
        wav, rate = decode_audio(payload, source)
        return self.audio(wav, rate, generator, source)

    def _clip(self, x: Tensor, source: str, generator: torch.Generator | None) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"{source}: a clip must be (C, T, H, W) or (T, H, W), got {tuple(x.shape)}")
        c, t, h, w = x.shape
        # The image channel rule, frame by frame (it is per pixel, so frames stacked along H are fine).
        x = image_channels(x.reshape(c, t * h, w), self.channels, source).reshape(-1, t, h, w)
        return self.video(x, generator, source) if self.video is not None else x

    def tar_sample(self, key: str, parts: dict[str, bytes], source: str, generator: torch.Generator) -> Tensor:
        """Decodes one tar sample (``{ext: bytes}``), for :class:`vqtok.data.shards.ShardStream`."""
        names = [self.extension] if self.extension else sorted(parts)
        for ext in names:
            if ext not in parts:
                continue
            last = "." + ext.rsplit(".", 1)[-1]
            if last == ".npy":
                import io

                arr = np.load(io.BytesIO(parts[ext]), allow_pickle=False)
                return self(Record(arr, last, source), generator)
            if last in suffixes_of(self.kind):
                return self(Record(parts[ext], last, source), generator)
        raise ValueError(f"{source}: no {self.kind} member ({', '.join(sorted(parts))} present)")


class OwnDataset(Dataset):
    """A map-style data set over a record collection; items are ``(index, step)`` pairs (the step seeds the
    transform, see :class:`vqtok.data.StepBatchSampler`'s ``with_step``) or plain indices (seeded by index).

    A record that fails to decode gives a :class:`BadRecord` instead of raising; :func:`collate_own` drops it.
    """

    def __init__(self, records: Any, decoder: Decoder, seed: int = 0) -> None:
        self.records, self.decoder, self.seed = records, decoder, seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> Any:
        index, step = item if isinstance(item, tuple) else (item, 0)
        try:
            record = self.records.get(index)
            return self.decoder(record, sample_generator(self.seed, 3, step, index))
        except (ValueError, TypeError, OSError) as err:
            return BadRecord(self.records.key(index), str(err))


@dataclass
class BadRecord:
    """A record that could not be read: its key and the reason."""

    source: str
    reason: str


def collate_own(items: list[Any]) -> dict[str, Any]:
    """Stacks the good examples of a batch; lists the bad ones (``bad``) and how many were read (``seen``)."""
    good = [x for x in items if not isinstance(x, BadRecord)]
    bad = [(x.source, x.reason) for x in items if isinstance(x, BadRecord)]
    if good:
        shapes = {tuple(x.shape) for x in good}
        if len(shapes) > 1:
            raise ValueError(
                f"examples of different shapes {sorted(shapes)[:4]} in one batch: the data set holds mixed sizes; "
                "set data.transform (resize, center_crop, random_resized_crop) or data.segment_seconds"
            )
    return {"signal": torch.stack(good) if good else None, "bad": bad, "seen": len(items)}


@dataclass
class BadDataCounter:
    """Counts skipped examples; warns for each and raises once more than ``max_fraction`` of the data is bad.

    The fraction is taken of ``max(total, seen)``: ``total`` is the data set size when known, so a few bad files
    early in an epoch do not stop the run; for streams (``total`` 0) it is checked once ``min_seen`` examples
    were read.
    """

    max_fraction: float = 0.01
    total: int = 0
    min_seen: int = 200
    seen: int = 0
    bad: int = 0
    examples: list[str] = field(default_factory=list)

    def update(self, seen: int, bad: list[tuple[str, str]], check: bool = True) -> None:
        """Adds one batch's counts.

        Args:
            seen: Examples read for the batch, bad ones included.
            bad: ``(source, reason)`` of each skipped example.
            check: Apply the limit now (``False`` under DDP, where :meth:`check` runs on global counts).

        Raises:
            ValueError: When the bad fraction exceeds ``max_fraction``; the message lists examples.
        """
        self.seen += seen
        for source, reason in bad:
            self.bad += 1
            logger.warning("skipping unreadable example %s (%s)", source, reason)
            if len(self.examples) < 5:
                self.examples.append(f"{source}: {reason}")
        if check:
            self.check(self.seen, self.bad)

    def check(self, seen: int, bad: int) -> None:
        """Raises ``ValueError`` (listing this process's examples) when ``bad`` of ``seen`` is over the limit."""
        denominator = max(self.total, seen)
        if bad and bad > self.max_fraction * denominator and (self.total or seen >= self.min_seen):
            raise ValueError(
                f"{bad} of {denominator} examples are unreadable (more than data.max_bad_fraction="
                f"{self.max_fraction:g}); e.g. " + "; ".join(self.examples or ["(on another rank)"])
            )
