"""vqtok.kernels.ivf_prepare: the compiled probe and PQ tables equal the torch ones (up to summation order)."""

from __future__ import annotations

import pytest
import torch

from vqtok.kernels.ivf_prepare import ivf_prepare, prepare_available
from vqtok.vectors.index.scan import probe
from vqtok.vectors.pq import PQ

pytestmark = pytest.mark.skipif(not prepare_available(), reason="no C++ compiler for the preparation kernel")


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize(("nlist", "nprobe", "nq"), [(0, 1, 7), (13, 5, 41), (9, 20, 3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_prepare_matches_torch_probe_and_tables(metric: str, nlist: int, nprobe: int, nq: int, threads: int) -> None:
    g = torch.Generator().manual_seed(nlist + nq)
    x = torch.randn(600, 40, generator=g)
    codec = PQ(40, 8, 4, device="cpu", progress=False, kmeans_iters=3).fit(x)
    coarse = torch.randn(nlist, 40, generator=g) if nlist else None
    q = torch.randn(nq, 40, generator=g)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        lists, qterm, qlut = ivf_prepare(q, coarse, nprobe, metric, codec.codebooks)
    finally:
        torch.set_num_threads(old)
    ip = codec.inner_product_tables(q)
    torch.testing.assert_close(qlut, -2 * ip if metric == "l2" else -ip, rtol=1e-5, atol=1e-4)
    d_ref, l_ref = probe(q, coarse, nprobe, metric)
    if coarse is None:
        assert torch.equal(lists, torch.zeros(nq, 1, dtype=torch.long))
        expect = q.square().sum(1, keepdim=True) if metric == "l2" else torch.zeros(nq, 1)
        torch.testing.assert_close(qterm, expect, rtol=1e-5, atol=1e-4)
        return
    assert lists.shape == (nq, min(nprobe, nlist))
    torch.testing.assert_close(qterm, d_ref, rtol=1e-4, atol=1e-3)
    # The same lists wherever the ranking is not a near tie; every row a permutation-free set of valid lists.
    gaps = (d_ref[:, 1:] - d_ref[:, :-1]).abs().min(1).values if d_ref.shape[1] > 1 else torch.ones(nq)
    clear = gaps > 1e-3
    assert torch.equal(lists[clear], l_ref[clear])
    assert all(len(set(r)) == len(r) for r in lists.tolist()) and int(lists.max()) < nlist
