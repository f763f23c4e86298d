"""Streamed .tar shards: shard expansion, disjoint readers over 2 gloo ranks x 2 workers, exact resume."""

from __future__ import annotations

import io
import multiprocessing as mp
import tarfile
import traceback

import fsspec
import pytest
import torch
import torch.distributed as dist
from _files import id_shards
from torch.utils.data import DataLoader

from vqtok import _dist
from vqtok.data.own import Decoder
from vqtok.data.shards import ShardStream, expand_shards, iter_tar_samples
from vqtok.data.transforms import ImageTransform

NUM_SHARDS, PER_SHARD, BATCH = 8, 6, 3


def _decoder(mode: str = "none") -> Decoder:
    return Decoder("image", 1, image=ImageTransform((8, 8), mode))


def _ids(signal: torch.Tensor) -> list[int]:
    return torch.round(signal[:, 0, 0, 0] * 255).long().tolist()


def _stream(shards, rank=0, world=2, **kw) -> ShardStream:
    decode = _decoder(kw.pop("mode", "none")).tar_sample
    return ShardStream([str(s) for s in shards], decode, BATCH, 7, rank, world, **kw)


def _batches(stream: ShardStream, workers: int, n: int) -> list[dict]:
    loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=lambda b: b)
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            break
    return out


def test_expand_shards_ranges_globs_folders_and_urls(tmp_path) -> None:
    shards = id_shards(tmp_path / "s", 3, 2)
    names = [str(p) for p in shards]
    assert expand_shards(str(tmp_path / "s" / "shard-{000..002}.tar")) == names
    assert expand_shards(str(tmp_path / "s" / "shard-*.tar")) == names
    assert expand_shards(str(tmp_path / "s")) == names
    assert expand_shards(f"{names[0]}::{names[2]}") == [names[0], names[2]]
    assert expand_shards("file://" + names[1]) == ["file://" + names[1]]
    with pytest.raises(ValueError, match="matches no .tar shards"):
        expand_shards(str(tmp_path / "s" / "nothing-*.tar"))


def test_iter_tar_samples_groups_members_by_key_from_any_fsspec_url(tmp_path) -> None:
    (path,) = id_shards(tmp_path, 1, 3)
    with fsspec.open("memory://bucket/shard.tar", "wb") as f:
        f.write(path.read_bytes())
    for url in (str(path), "memory://bucket/shard.tar"):
        samples = list(iter_tar_samples(url))
        assert [k for k, _ in samples] == ["000000", "000001", "000002"]
        assert all(sorted(parts) == ["json", "png"] for _, parts in samples)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ValueError, match="bad.tar"):
        list(iter_tar_samples(str(bad)))


def test_too_few_shards_for_the_readers_is_a_clear_error(tmp_path) -> None:
    stream = _stream(id_shards(tmp_path, 3, 2))
    with pytest.raises(ValueError, match="3 shard\\(s\\) for 2 rank\\(s\\) x 2 worker\\(s\\)"):
        stream.check_shard_count(2)


def _rank_worker(rank: int, store: str, shards: list[str], results) -> None:
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
        torch.set_num_threads(1)
        per_epoch = NUM_SHARDS * PER_SHARD // (2 * BATCH)  # batches per rank per epoch
        batches = _batches(_stream(shards, rank, 2, shuffle_buffer=4), 2, 2 * per_epoch)
        epochs = [sum((_ids(b["signal"]) for b in batches[e * per_epoch : (e + 1) * per_epoch]), []) for e in (0, 1)]
        gathered = _dist.all_gather_objects(epochs)
        results.put((rank, gathered, [b["position"] for b in batches]))
        dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 - reported to the parent
        results.put((rank, traceback.format_exc(), None))


def test_two_gloo_ranks_two_workers_see_every_sample_once_per_epoch(tmp_path) -> None:
    shards = [str(p) for p in id_shards(tmp_path / "s", NUM_SHARDS, PER_SHARD)]
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank_worker, args=(r, str(tmp_path / "store"), shards, results)) for r in range(2)]
    for p in procs:
        p.start()
    out = sorted((results.get(timeout=120) for _ in procs), key=lambda x: x[0])
    for p in procs:
        p.join(timeout=60)
    for _, gathered, _ in out:
        if isinstance(gathered, str):
            pytest.fail(gathered)
    gathered = out[0][1]
    assert gathered == out[1][1]
    total = NUM_SHARDS * PER_SHARD
    for epoch in (0, 1):
        seen = gathered[0][epoch] + gathered[1][epoch]
        assert sorted(seen) == list(range(total)), f"epoch {epoch} is not every sample exactly once"
        assert not set(gathered[0][epoch]) & set(gathered[1][epoch])
    assert gathered[0][0] != gathered[0][1]  # the order is reshuffled every epoch
    # Readers: 2 per rank, polled in turn; ranks own disjoint slot numbers.
    assert {p[0] for p in out[0][2]} == {0, 1} and {p[0] for p in out[1][2]} == {2, 3}


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_continues_bit_identically(tmp_path, workers) -> None:
    shards = id_shards(tmp_path / "s", 4, 5)
    full = _batches(_stream(shards, 0, 1, mode="random_resized_crop", shuffle_buffer=3), workers, 12)
    k = 5  # stop mid-epoch (an epoch is 20 samples: 6.7 batches)
    positions = {b["position"][0]: tuple(b["position"][1:]) for b in full[:k]}
    resumed = _stream(shards, 0, 1, mode="random_resized_crop", shuffle_buffer=3, positions=positions, start_step=k)
    rest = _batches(resumed, workers, len(full) - k)
    for a, b in zip(full[k:], rest, strict=True):
        assert torch.equal(a["signal"], b["signal"]) and a["position"] == b["position"]


def test_bad_samples_are_skipped_and_reported(tmp_path) -> None:
    shards = id_shards(tmp_path / "s", 2, 4)
    with tarfile.open(shards[0], "a") as tar:
        for name, data in (("corrupt.png", b"\x89PNG junk"), ("empty.png", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    batches = _batches(_stream(shards, 0, 1, shuffle_buffer=1), 0, 3)
    bad = [s for b in batches for s, _ in b["bad"]]
    assert any(s.endswith(":corrupt") for s in bad) and any(s.endswith(":empty") for s in bad)
    assert all(b["signal"].shape == (BATCH, 1, 8, 8) for b in batches)
