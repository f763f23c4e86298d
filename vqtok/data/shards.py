"""WebDataset-style ``.tar`` shards, streamed: each rank and each DataLoader worker reads its own shards.

A shard is a tar whose members ``KEY.EXT`` with the same ``KEY`` form one sample (``000123.jpg``,
``000123.json``). Shards are read sequentially through ``fsspec`` (local paths, ``s3://``, ``gs://``,
``https://`` ...), so data larger than memory or disk streams through.

Distribution: the ``world_size x num_workers`` readers are *slots*; slot ``g = rank * num_workers + local``. In
epoch ``e`` the shard list is permuted by ``(seed, e)`` and slot ``g`` reads every ``S``-th shard starting at
``g`` (``S`` = number of slots), so the slots of all ranks together read every sample of an epoch exactly once.
Each slot shuffles its samples in a buffer seeded by ``(seed, e, g)``, then yields batches. A slot's position
is ``(epoch, samples emitted in that epoch)``; every batch carries it, the trainer stores the latest per slot in
the checkpoint, and a resumed stream skips (without decoding) to exactly that point.

The DataLoader polls its workers round-robin, so after ``s`` steps the next batch belongs to local slot
``s % num_workers``; on resume worker ``w`` takes local slot ``(w + s) % num_workers`` to keep that order.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .transforms import sample_generator

__all__ = ["ShardStream", "expand_shards", "iter_tar_samples"]

_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_shards(spec: str) -> list[str]:
    """Shard URLs from ``spec``: a ``.tar`` file or URL, ``name-{000..099}.tar`` ranges, a glob, a folder
    (every ``*.tar`` under it) or several of these separated by ``::``.

    Raises:
        ValueError: When nothing matches.
    """
    import fsspec

    out: list[str] = []
    for part in spec.split("::"):
        m = _BRACES.search(part)
        if m:
            lo, hi = m.group(1), m.group(2)
            width = len(lo) if lo.startswith("0") else 0
            for i in range(int(lo), int(hi) + 1):
                out.extend(expand_shards(part[: m.start()] + str(i).zfill(width) + part[m.end() :]))
            continue
        fs, path = fsspec.core.url_to_fs(part)
        proto = part.split("://", 1)[0] + "://" if "://" in part else ""
        if any(c in path for c in "*?["):
            out.extend(proto + p for p in sorted(fs.glob(path)))
        elif fs.isdir(path):
            out.extend(proto + p for p in sorted(fs.find(path)) if p.endswith(".tar"))
        elif fs.exists(path):
            out.append(part)
    if not out:
        raise ValueError(f"data.path {spec!r} matches no .tar shards")
    return out


def iter_tar_samples(url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Streams ``(key, {ext: bytes})`` samples of one tar shard in file order (``ext`` lower case, no dot).

    Raises:
        ValueError: On a file that is not a readable tar; the message names the shard.
    """
    import fsspec

    key, parts = None, {}
    try:
        with fsspec.open(url, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)
                stem, _, ext = base[-1].partition(".")
                if stem == "" or not ext:
                    continue  # hidden or extension-less members (e.g. macOS ._ files) are not samples
                k = (base[0] + "/" if len(base) > 1 else "") + stem
                if k != key and key is not None:
                    yield key, parts
                    parts = {}
                key = k
                data = tar.extractfile(member)
                parts[ext.lower()] = data.read() if data is not None else b""
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"shard {url!r}: not a readable tar file ({err})") from err
    if key is not None:
        yield key, parts


class ShardStream(IterableDataset):
    """An endless stream of this rank's batches of decoded samples from tar shards (module docstring).

    Args:
        shards: Shard URLs (:func:`expand_shards`).
        decode: ``(key, parts, source, generator) -> tensor``; raises ``ValueError``/``TypeError`` on a bad sample.
        batch_size: Samples per batch on this rank.
        seed: Seed of the shard permutations, shuffle buffers and transforms.
        rank: This rank.
        world_size: Number of ranks.
        shuffle_buffer: Samples held in each slot's shuffle buffer (1: file order).
        positions: ``{slot: (epoch, emitted)}`` to resume from (from :meth:`merge_positions` of a checkpoint).
        start_step: Steps already taken (sets which worker plays which slot).

    Each item is a dict: ``signal`` ``(B, ...)``, ``bad`` (list of ``(source, reason)`` skipped in this batch),
    ``seen`` (samples read for it, bad included) and ``position`` ``(slot, epoch, emitted)``.
    """

    def __init__(
        self,
        shards: list[str],
        decode: Callable[[str, dict[str, bytes], str, torch.Generator], torch.Tensor],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle_buffer: int = 1000,
        positions: dict[int, tuple[int, int]] | None = None,
        start_step: int = 0,
    ) -> None:
        self.shards, self.decode, self.batch_size, self.seed = list(shards), decode, batch_size, seed
        self.rank, self.world_size, self.shuffle_buffer = rank, world_size, max(1, shuffle_buffer)
        self.positions = dict(positions or {})
        self.start_step = start_step

    def slots(self, num_workers: int) -> int:
        """Number of readers over all ranks for ``num_workers`` DataLoader workers per rank."""
        return self.world_size * max(1, num_workers)

    def check_shard_count(self, num_workers: int) -> None:
        """Raises ``ValueError`` when some reader would get no shard (fewer shards than slots)."""
        n = self.slots(num_workers)
        if len(self.shards) < n:
            raise ValueError(
                f"{len(self.shards)} shard(s) for {self.world_size} rank(s) x {max(1, num_workers)} worker(s): every "
                f"reader needs its own shard; write at least {n} shards or use fewer workers (data.num_workers)"
            )

    def shards_of(self, slot: int, epoch: int, num_slots: int) -> list[str]:
        """The shards slot ``slot`` reads in ``epoch``."""
        order = torch.randperm(len(self.shards), generator=torch.Generator().manual_seed(self.seed + epoch))
        return [self.shards[i] for i in order[slot::num_slots].tolist()]

    def _raw(self, slot: int, epoch: int, num_slots: int) -> Iterator[tuple[str, dict[str, bytes], str]]:
        """The slot's samples of ``epoch`` after its shuffle buffer: ``(key, parts, source)``."""
        gen = sample_generator(self.seed, 1, epoch, slot)
        buf: list[tuple[str, dict[str, bytes], str]] = []
        for url in self.shards_of(slot, epoch, num_slots):
            for key, parts in iter_tar_samples(url):
                buf.append((key, parts, f"{url}:{key}"))
                if len(buf) >= self.shuffle_buffer:
                    j = int(torch.randint(len(buf), (1,), generator=gen))
                    buf[j], buf[-1] = buf[-1], buf[j]
                    yield buf.pop()
        while buf:
            j = int(torch.randint(len(buf), (1,), generator=gen))
            buf[j], buf[-1] = buf[-1], buf[j]
            yield buf.pop()

    def _samples(self, slot: int, num_slots: int) -> Iterator[tuple[Any, int, int, str]]:
        """Endless ``(tensor or error, epoch, emitted after it, source)`` of one slot, from its saved position."""
        epoch, skip = self.positions.get(slot, (0, 0))
        while True:
            emitted, empty = 0, True
            for key, parts, source in self._raw(slot, epoch, num_slots):
                empty = False
                emitted += 1
                if emitted <= skip:
                    continue  # resuming: already trained on
                try:
                    item: Any = self.decode(key, parts, source, sample_generator(self.seed, 2, epoch, slot, emitted))
                except (ValueError, TypeError) as err:
                    item = err
                yield item, epoch, emitted, source
            if empty:
                mine = self.shards_of(slot, epoch, num_slots)
                raise ValueError(f"reader {slot} found no samples in its shards {mine}")
            epoch, skip = epoch + 1, 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info is not None else (1, 0)
        self.check_shard_count(workers)
        slot = self.rank * workers + (wid + self.start_step) % workers
        stream = self._samples(slot, self.slots(workers))
        while True:
            signals, bad, seen = [], [], 0
            while len(signals) < self.batch_size:
                item, epoch, emitted, source = next(stream)
                seen += 1
                if isinstance(item, Exception):
                    bad.append((source, str(item)))
                    if not signals and len(bad) >= 10 * self.batch_size:
                        examples = "; ".join(f"{s}: {r}" for s, r in bad[:5])
                        raise ValueError(f"{len(bad)} samples in a row could not be read, e.g. {examples}")
                else:
                    signals.append(item)
            yield {"signal": torch.stack(signals), "bad": bad, "seen": seen, "position": (slot, epoch, emitted)}
