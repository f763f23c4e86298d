"""vqtok.kernels.adc_scan: the compiled IVF ADC scan gives the torch path's distances and rows."""

from __future__ import annotations

import pytest
import torch

from vqtok.kernels.adc_scan import fastscan_available, ivf_adc_scan, ivf_fastscan, scan_available
from vqtok.vectors.index import index_factory
from vqtok.vectors.index.scan import rerank, scan_lists

pytestmark = pytest.mark.skipif(not scan_available(), reason="no C++ compiler for the scan kernel")

DIM = 16
FAST = {"codec_options": {"kmeans_iters": 4}, "opq_iters": 2}


def _data(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(30, DIM, generator=torch.Generator().manual_seed(7)) * 3
    return centres[torch.randint(30, (n,), generator=g)] + torch.randn(n, DIM, generator=g)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _data(1500, 0), _data(700, 1), _data(37, 2)


@pytest.mark.parametrize(
    ("desc", "metric"),
    [
        ("PQ4", "l2"),
        ("IVF8,PQ8", "l2"),
        ("IVF8,PQ8x4", "l2"),
        ("IVF8,RQ3x4", "l2"),  # odd M: the last byte holds one nibble
        ("IVF8,PQ4x6", "ip"),  # generic bit reader
        ("OPQ4,IVF8,PQ4", "cosine"),
        ("IVF8,RQ2x8", "l2"),  # additive codec: stored norms
        ("IVF8,LSQ2x5", "ip"),
    ],
)
@pytest.mark.parametrize("nprobe", [1, 3, 8])
def test_kernel_matches_torch_path(data, desc: str, metric: str, nprobe: int) -> None:
    train, db, q = data
    index = index_factory(DIM, desc, metric=metric, **FAST).train(train)
    index.add(db)
    q = index._rotate(index._prepare(q, "q")) if index.rotation is not None or metric == "cosine" else q
    k = 12
    d_ref, r_ref = scan_lists(index, q, k + 1, nprobe, use_kernel=False)  # one more: ties across the cut
    d, r = scan_lists(index, q, k, nprobe, use_kernel=True)
    torch.testing.assert_close(d, d_ref[:, :k], rtol=1e-5, atol=1e-4)
    # Rows agree wherever the distance is not (nearly) tied with a neighbour in the ranking.
    step = (d_ref[:, 1:] - d_ref[:, :-1]).nan_to_num(nan=1e9)
    gap = torch.minimum(step, torch.cat([torch.full((d.shape[0], 1), 1e9), step[:, :-1]], 1))
    clear = (gap > 1e-3) & torch.isfinite(d_ref[:, :k])
    r_ref = r_ref[:, :k]
    assert torch.equal(r[clear], r_ref[clear])
    assert torch.equal(r[~torch.isfinite(d)], torch.full_like(r[~torch.isfinite(d)], -1))


def test_kernel_pads_when_lists_hold_fewer_than_k_and_orders_ties_by_row() -> None:
    # 2 lists, M=1, K=256: list 0 holds rows 0-2, list 1 rows 3-4; all entries tie except row 4.
    qlut = torch.zeros(1, 1, 256)
    qlut[0, 0, 9] = -1.0
    codes = torch.tensor([[1], [2], [3], [4], [9]], dtype=torch.uint8)
    offsets = torch.tensor([0, 3, 5])
    lists = torch.tensor([[1, 0]])
    d, r = ivf_adc_scan(qlut, None, torch.tensor([[0.5, 0.0]]), lists, codes, None, offsets, 8, 7)
    assert r.tolist() == [[4, 0, 1, 2, 3, -1, -1]]
    assert d.tolist() == [[-0.5, 0.0, 0.0, 0.0, 0.5, float("inf"), float("inf")]]


def test_kernel_rejects_malformed_operands() -> None:
    qlut, codes, offsets = torch.zeros(2, 4, 256), torch.zeros(5, 4, dtype=torch.uint8), torch.tensor([0, 5])
    lists, qterm = torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1)
    with pytest.raises(ValueError, match="codes"):
        ivf_adc_scan(qlut, None, qterm, lists, codes[:, :3], None, offsets, 8, 3)
    with pytest.raises(ValueError, match="qlut"):
        ivf_adc_scan(qlut.double(), None, qterm, lists, codes, None, offsets, 8, 3)
    with pytest.raises(ValueError, match="offsets"):
        ivf_adc_scan(qlut, None, qterm, lists, codes, None, torch.tensor([0, 9]), 8, 3)


@pytest.mark.parametrize(("desc", "metric"), [("IVF8,PQ8x4fs", "l2"), ("PQ16x4fs", "ip"), ("OPQ4,IVF8,PQ4x4fs", "l2")])
def test_fast_scan_returns_exact_distances_of_nearly_the_exact_top_k(data, desc: str, metric: str) -> None:
    if not fastscan_available():
        pytest.skip("no fast-scan kernel")
    train, db, q = data
    index = index_factory(DIM, desc, metric=metric, **FAST).train(train)
    index.add(db)
    assert index.fast_scan
    q = index._rotate(index._prepare(q, "q"))
    k = 10
    d_ref, r_ref = scan_lists(index, q, k, 3, use_kernel=False)  # exact float tables (torch)
    d, r = scan_lists(index, q, k, 3, use_kernel=True)
    # Every returned distance is the exact ADC distance of its row ...
    d_all, r_all = scan_lists(index, q, 700, 3, use_kernel=False)
    for qi in range(q.shape[0]):
        exact_of = dict(zip(r_all[qi].tolist(), d_all[qi].tolist(), strict=True))
        for dist, row in zip(d[qi].tolist(), r[qi].tolist(), strict=True):
            if row >= 0:
                assert dist == pytest.approx(exact_of[row], rel=1e-5, abs=1e-4)
    # ... the results are sorted, and the selection loses nothing here against the exact top-k: the sorted
    # distances agree (rows may differ among the many exact ties of 4-bit codes).
    assert bool((d[:, 1:] >= d[:, :-1]).all())
    torch.testing.assert_close(d, d_ref, rtol=1e-4, atol=1e-3)


def test_fast_scan_kernel_rejects_non_4_bit_operands() -> None:
    qlut, codes, offsets = torch.zeros(2, 4, 256), torch.zeros(5, 4, dtype=torch.uint8), torch.tensor([0, 5])
    lists, qterm = torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1)
    with pytest.raises(ValueError, match="qlut"):
        ivf_fastscan(qlut, None, qterm, lists, codes, offsets, 3, 6)
    with pytest.raises(ValueError, match="cand"):
        ivf_fastscan(torch.zeros(2, 8, 16), None, qterm, lists, codes, offsets, 3, 2)


@pytest.mark.parametrize(("desc", "metric"), [("IVF8,PQ4,Refine(SQ8)", "l2"), ("IVF8,PQ4,Refine(Flat)", "ip")])
def test_compiled_rerank_matches_torch_path(data, desc: str, metric: str) -> None:
    train, db, q = data
    index = index_factory(DIM, desc, metric=metric, **FAST).train(train)
    index.add(db)
    _, rows = scan_lists(index, q, 40, 2)
    rows[:, -3:] = -1  # missing candidates are skipped
    d_ref, r_ref = rerank(index, q, rows, 10, use_kernel=False)
    d, r = rerank(index, q, rows, 10, use_kernel=True)
    torch.testing.assert_close(d, d_ref, rtol=1e-5, atol=1e-4)
    step = (d_ref[:, 1:] - d_ref[:, :-1]).abs()
    clear = torch.cat([step[:, :1], torch.minimum(step[:, 1:], step[:, :-1]), step[:, -1:]], 1) > 1e-3
    assert torch.equal(r[clear], r_ref[clear]) and clear.float().mean() > 0.8
    d, r = rerank(index, q, torch.full((q.shape[0], 5), -1), 10, use_kernel=True)
    assert d.shape == (q.shape[0], 5) and bool((r == -1).all()) and bool(torch.isinf(d).all())
