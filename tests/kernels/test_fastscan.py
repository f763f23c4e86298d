"""vqtok.kernels.adc_scan.ivf_fastscan: the 4-bit fast scan against a brute-force reference.

With integer tables whose every sub-space spans exactly 0..255, the kernel's uint8 quantization is the identity
(scale 1, offsets 0), so its candidate selection is exact and its result must equal the brute-force top-k by
(distance, row), ties included, whatever the number of candidates re-scored.
"""

from __future__ import annotations

import pytest
import torch

from vqtok.kernels.adc_scan import fastscan_available, fastscan_pack, ivf_fastscan

pytestmark = pytest.mark.skipif(not fastscan_available(), reason="no C++ compiler for the fast-scan kernel")


def _problem(sizes: list[int], m: int, nq: int, probes: int, seed: int, integer: bool):
    g = torch.Generator().manual_seed(seed)
    cs = (m + 1) // 2
    offsets = torch.tensor([0, *sizes]).cumsum(0)
    codes = torch.randint(0, 256, (int(offsets[-1]), cs), dtype=torch.uint8, generator=g)
    if m % 2:
        codes[:, -1] &= 15  # the packing leaves the unused high nibble zero
    if integer:
        qlut = torch.randint(0, 256, (nq, m, 16), generator=g).float()
        qlut[..., 0], qlut[..., 1] = 0.0, 255.0  # every sub-space spans 0..255 exactly: scale 1
        qterm = torch.randint(0, 1000, (nq, probes), generator=g).float()
    else:
        qlut = torch.randn(nq, m, 16, generator=g)
        qterm = torch.rand(nq, probes, generator=g)
    lists = torch.stack([torch.randperm(len(sizes), generator=g)[:probes] for _ in range(nq)])
    lists[0, -1] = -1  # a missing probe
    return qlut, qterm, lists, codes, offsets


def _brute_force(qlut, qterm, lists, codes, offsets, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    m = qlut.shape[1]
    idx = torch.stack([codes & 15, codes >> 4], 2).reshape(codes.shape[0], -1)[:, :m].long()  # (N, M)
    out_d = torch.full((qlut.shape[0], k), float("inf"))
    out_r = torch.full((qlut.shape[0], k), -1, dtype=torch.long)
    for q in range(qlut.shape[0]):
        pairs = []
        for p, lst in enumerate(lists[q].tolist()):
            if lst < 0:
                continue
            for row in range(int(offsets[lst]), int(offsets[lst + 1])):
                d = qterm[q, p] + qlut[q, torch.arange(m), idx[row]].sum()
                pairs.append((float(d), row))
        pairs.sort()
        for j, (d, row) in enumerate(pairs[:k]):
            out_d[q, j], out_r[q, j] = d, row
    return out_d, out_r


@pytest.mark.parametrize(
    ("sizes", "m", "k"),
    [
        ([33, 0, 64, 1, 31, 32, 70, 5], 32, 10),  # tails, an empty list, exact multiples of 32
        ([40, 7, 0, 90], 7, 12),  # odd M: the last byte holds one nibble
        ([3, 2, 0, 1], 16, 20),  # k larger than every probed list together: padding
        ([50, 45, 60], 1, 6),  # M = 1: 16 distinct values, many exact ties (broken by row)
    ],
)
@pytest.mark.parametrize("simd", [True, False])
def test_fast_scan_equals_brute_force_on_exactly_quantized_tables(sizes, m: int, k: int, simd: bool) -> None:
    qlut, qterm, lists, codes, offsets = _problem(sizes, m, 9, min(3, len(sizes)), seed=m + k, integer=True)
    d_ref, r_ref = _brute_force(qlut, qterm, lists, codes, offsets, k)
    d, r = ivf_fastscan(qlut, None, qterm, lists, codes, offsets, k, k, simd=simd)
    assert torch.equal(r, r_ref)
    assert torch.equal(d, d_ref)


def test_simd_and_scalar_builds_agree_on_float_tables() -> None:
    qlut, qterm, lists, codes, offsets = _problem([100, 0, 37, 64, 250, 3], 24, 40, 4, seed=5, integer=False)
    llut = torch.randn(6, 24, 16, generator=torch.Generator().manual_seed(9))
    packed = fastscan_pack(codes, offsets)
    d0, r0 = ivf_fastscan(qlut, llut, qterm, lists, codes, offsets, 10, 20, packed=packed)
    d1, r1 = ivf_fastscan(qlut, llut, qterm, lists, codes, offsets, 10, 20, packed=packed, simd=False)
    assert torch.equal(r0, r1) and torch.equal(d0, d1)
    # The distances are exact ADC distances of the returned rows (re-scored with the float tables).
    idx = torch.stack([codes & 15, codes >> 4], 2).reshape(codes.shape[0], -1)[:, :24].long()
    for q in range(0, 40, 7):
        for d, row in zip(d0[q].tolist(), r0[q].tolist(), strict=True):
            if row < 0:
                continue
            p = next(j for j, lst in enumerate(lists[q].tolist()) if offsets[lst] <= row < offsets[lst + 1])
            lut = qlut[q] + llut[lists[q, p]]
            assert d == pytest.approx(float(qterm[q, p] + lut[torch.arange(24), idx[row]].sum()), rel=1e-5, abs=1e-4)


def test_pack_layout_and_stale_packs() -> None:
    codes = torch.arange(70 * 2, dtype=torch.uint8).reshape(70, 2)
    offsets = torch.tensor([0, 33, 33, 70])
    blocks, start = fastscan_pack(codes, offsets)
    assert start.tolist() == [0, 2, 2, 4]
    view = blocks.view(4, 2, 32)  # (block, byte, row)
    assert torch.equal(view[1, :, 0], codes[32]) and torch.equal(view[2, :, 5], codes[38])
    assert int(view[1, :, 1:].abs().sum()) == 0  # padding rows are zero
    qlut, qterm, lists = torch.zeros(1, 4, 16), torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="packed"):
        ivf_fastscan(qlut, None, qterm, lists, codes, offsets, 3, 3, packed=(blocks[:-1], start))
