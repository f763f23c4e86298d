"""vqtok._dist: single-process no-ops and the collectives on a two-rank gloo group."""

from __future__ import annotations

import multiprocessing as mp
import traceback

import pytest
import torch
import torch.distributed as dist

from vqtok import _dist


def test_single_process_is_rank_0_of_1() -> None:
    assert not _dist.is_distributed() and _dist.rank() == 0 and _dist.world_size() == 1 and _dist.is_main()
    _dist.barrier()
    x = torch.arange(3.0)
    assert _dist.all_reduce_sum_(x) is x and torch.equal(x, torch.arange(3.0))
    assert torch.equal(_dist.all_reduce_mean(x), x) and _dist.broadcast_(x) is x
    assert _dist.all_gather_objects({"a": 1}) == [{"a": 1}]
    info = _dist.setup_distributed("cpu")
    assert (info.rank, info.world_size, info.enabled, info.is_main, info.created) == (0, 1, False, True, False)


def _worker(rank: int, store: str, results) -> None:
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
        x = torch.tensor([1.0, 2.0]) * (rank + 1)
        _dist.all_reduce_sum_(x)
        mean = _dist.all_reduce_mean(torch.tensor([float(rank)]))
        b = _dist.broadcast_(torch.tensor([rank + 10]))
        gathered = _dist.all_gather_objects(("rank", rank))
        _dist.barrier()
        results.put((rank, x.tolist(), mean.item(), b.item(), gathered, _dist.rank(), _dist.world_size()))
        dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 - reported to the parent
        results.put((rank, traceback.format_exc()))


def test_collectives_on_two_ranks(tmp_path) -> None:
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, str(tmp_path / "store"), results)) for r in range(2)]
    for p in procs:
        p.start()
    out = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    for item in out:
        if len(item) == 2:
            pytest.fail(item[1])
    for rank, summed, mean, b, gathered, r, w in out:
        assert summed == [3.0, 6.0] and mean == 0.5 and b == 10
        assert gathered == [("rank", 0), ("rank", 1)] and (r, w) == (rank, 2)
