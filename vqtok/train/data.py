"""The trainer's data: this rank's batches, from a built-in data set or from ``data.path``, and their position.

Built-in data sets and map-style sources (folders, arrays, tables) are indexed by
:class:`vqtok.data.StepBatchSampler`, whose position is the number of batches drawn; ``.tar`` shards stream
through :class:`vqtok.data.shards.ShardStream`, whose position is ``(epoch, samples)`` per reader. Either is
saved in the checkpoint (:meth:`TrainData.state`), so a resumed run draws exactly the batches an uninterrupted
one would. Decoding happens in DataLoader workers (``data.num_workers``); batches are pinned on CUDA.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from .._config import config_from_dict
from .._dist import DistInfo, all_reduce_sum_
from ..data import StepBatchSampler, create_dataset
from ..data.own import BadDataCounter, Decoder, OwnDataset, collate_own, is_shard_spec, open_records
from ..data.shards import ShardStream, expand_shards
from ..data.transforms import AudioTransform, ImageTransform, VideoTransform
from ..tokenizers import tokenizer_class
from .config import TrainConfig

__all__ = ["TrainData", "build_decoder"]

logger = logging.getLogger(__name__)

# Map-style own data is drawn by an endless sampler: a batch whose examples were all unreadable is skipped
# without costing a step, so the batch position (saved in the checkpoint) may run ahead of the step.
_ENDLESS = 1 << 62


def build_decoder(cfg: TrainConfig) -> Decoder:
    """The decoder and transform that bring ``data.path`` examples to the model's shape.

    Raises:
        ValueError: For a tokenizer that takes neither images (``image_size``) nor audio (``sample_rate``).
    """
    model = config_from_dict(tokenizer_class(cfg.tokenizer).config_class, cfg.model, prefix="model.")
    d = cfg.data
    channels = int(getattr(model, "in_channels", 1))
    if hasattr(model, "image_size"):
        size = model.image_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        if hasattr(model, "frames"):  # clips: T = model.frames (1 + ft*k, or any count with repeat_last)
            video = VideoTransform(size, model.frames, d.transform, d.crop_scale)
            return Decoder("video", channels, video=video, extension=d.column)
        return Decoder("image", channels, image=ImageTransform(size, d.transform, d.crop_scale), extension=d.column)
    if hasattr(model, "sample_rate"):
        seconds = d.segment_seconds if d.segment_seconds is not None else d.kwargs.get("segment_seconds", 1.0)
        segment = round(float(seconds) * model.sample_rate)
        audio = AudioTransform(model.sample_rate, channels, segment, d.channel)
        return Decoder("audio", channels, audio=audio, sample_rate=model.sample_rate, extension=d.column)
    raise ValueError(f"data.path: tokenizer {cfg.tokenizer!r} takes neither images nor audio; register a data set")


class TrainData:
    """This rank's batches for steps ``start_step, start_step + 1, ...`` and the data position.

    Args:
        cfg: The run's config.
        info: This process's rank and device.
        start_step: Steps already taken (0, or the resumed step).
        saved: The ``data`` entry of a checkpoint (one state per rank), or ``None``.
    """

    def __init__(self, cfg: TrainConfig, info: DistInfo, start_step: int, saved: list[Any] | None = None) -> None:
        self.cfg, self.info, self.start_step = cfg, info, start_step
        self.kind = "builtin" if cfg.data.path is None else "shards" if is_shard_spec(cfg.data.path) else "map"
        mine = saved[info.rank] if saved and len(saved) == info.world_size else None
        if saved and mine is None:
            logger.warning("data position saved by %d ranks, now %d: data order restarts", len(saved), info.world_size)
        self.batches = int(mine["batches"]) if mine and mine.get("kind") == self.kind == "map" else start_step
        self.positions: dict[int, tuple[int, int]] = {}
        self.readers = info.world_size * max(1, cfg.data.num_workers)
        if saved and self.kind == "shards":
            for state in saved:
                state = state or {}
                if state.get("readers", self.readers) != self.readers:
                    # Reader g reads other shards when ranks x workers changes: its saved place means nothing.
                    logger.warning("data.num_workers or world size changed: the shard stream restarts its order")
                    self.positions = {}
                    break
                self.positions.update({int(k): tuple(v) for k, v in state.get("positions", {}).items()})
        self.counter = BadDataCounter(cfg.data.max_bad_fraction)
        self.loader = self._loader()

    def _loader(self) -> DataLoader:
        cfg, info, d = self.cfg, self.info, self.cfg.data
        common: dict[str, Any] = {"num_workers": d.num_workers, "pin_memory": info.device.type == "cuda"}
        if d.num_workers:
            common["persistent_workers"] = False
        # An explicit generator: otherwise creating the iterator draws from the global RNG, and a resumed
        # run would draw at a different point of the stream than an uninterrupted one.
        common["generator"] = torch.Generator().manual_seed(cfg.seed)
        if self.kind == "builtin":
            from .trainer import collate

            dataset = create_dataset(d.name, d.split, **d.kwargs)
            sampler = StepBatchSampler(
                len(dataset), cfg.batch_size, cfg.steps, cfg.seed, self.start_step, info.rank, info.world_size
            )
            return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, **common)
        decoder = build_decoder(cfg)
        assert d.path is not None
        if self.kind == "shards":
            if cfg.batch_size % info.world_size:
                raise ValueError(f"batch size {cfg.batch_size} is not divisible by world size {info.world_size}")
            stream = ShardStream(
                expand_shards(d.path),
                decoder.tar_sample,
                cfg.batch_size // info.world_size,
                cfg.seed,
                info.rank,
                info.world_size,
                d.shuffle_buffer,
                self.positions,
                self.start_step,
            )
            stream.check_shard_count(d.num_workers)
            return DataLoader(stream, batch_size=None, collate_fn=_identity, **common)
        records = open_records(d.path, decoder.kind, d.column, d.split)
        self.counter.total = len(records)
        logger.info("training on %d examples from %s", len(records), d.path)
        sampler = StepBatchSampler(
            len(records), cfg.batch_size, _ENDLESS, cfg.seed, self.batches, info.rank, info.world_size, with_step=True
        )
        dataset = OwnDataset(records, decoder, cfg.seed)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_own, **common)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            if self.kind == "builtin":
                yield batch
                continue
            self.counter.update(batch["seen"], batch["bad"], check=not self.info.enabled)
            if self.kind == "map":
                self.batches += 1
            else:
                slot, epoch, emitted = batch["position"]
                self.positions[int(slot)] = (int(epoch), int(emitted))
            if batch["signal"] is not None:
                yield batch["signal"]

    def check_bad_data(self) -> None:
        """Under DDP, applies ``data.max_bad_fraction`` to the counts of all ranks; every rank must call it at the
        same step (the trainer does at each log step), so all stop together instead of one rank hanging."""
        if not self.info.enabled or self.kind == "builtin":
            return
        counts = all_reduce_sum_(torch.tensor([self.counter.seen, self.counter.bad], dtype=torch.float64))
        self.counter.check(int(counts[0]), int(counts[1]))

    def state(self) -> dict[str, Any]:
        """This rank's data position, for the checkpoint."""
        if self.kind == "shards":
            positions = {int(k): list(v) for k, v in self.positions.items()}
            return {"kind": "shards", "readers": self.readers, "positions": positions}
        return {"kind": self.kind, "batches": self.batches}


def _identity(batch: Any) -> Any:
    return batch
