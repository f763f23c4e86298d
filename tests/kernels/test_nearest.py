"""Equivalence of :func:`vqtok.kernels.nearest` with slow fp64 references.

Tolerance policy: the kernel returns the argmin of fp32 distances, so against the fp64 reference the
chosen code's exact distance may exceed the exact minimum by at most the fp32 rounding of the
distance computation, bounded here by ``_TOL * (||x||^2 + max ||c||^2)`` with ``_TOL = 1e-5``
(``D * eps32`` for the largest D used, with margin); whenever the exact gap between the best and
second-best code exceeds that bound, the indices must be identical. Integer-valued inputs make fp32
arithmetic exact, so the tie tests compare indices exactly.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from vqtok.kernels import _cpu_ext, nearest
from vqtok.testing import test_device
from vqtok.testing.nearest import reference_distances

_TOL = 1e-5
_DEVICE = test_device()
# Small tiles force many tiles, ragged edges and both the sparse and the dense index paths.
_TILES = [(512, 2048), (7, 33), (64, 5)]
# The k = 1 equivalence tests run on both CPU paths: the fused kernel sums in another order than BLAS.
_BACKENDS = ["torch", "cpu_ext"]


@pytest.fixture(params=_BACKENDS)
def backend(request) -> str:
    if request.param == "cpu_ext":
        if _DEVICE.type != "cpu":
            pytest.skip("the fused kernel is CPU only")
        if not _cpu_ext.available():
            pytest.skip(f"CPU kernel unavailable: {_cpu_ext.unavailable_reason()}")
    return request.param


def _lexsort_topk(ref: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k smallest per row ordered by (distance, index)."""
    return torch.sort(ref, dim=1, stable=True).indices[:, :k]


def _assert_matches_reference(x: torch.Tensor, c: torch.Tensor, metric: str, dist: torch.Tensor, idx: torch.Tensor):
    ref = reference_distances(x.cpu(), c.cpu(), metric)
    dist, idx = dist.cpu(), idx.cpu()
    best2, top2 = ref.topk(2, dim=1, largest=False)
    # fp32 error of a distance scales with the norms involved: the latent and the competing codes.
    xs, cs = x.double().cpu(), c.double().cpu()
    if metric == "cosine":
        scale = torch.ones(x.shape[0], dtype=torch.float64)
    else:
        c_sq = (cs**2).sum(-1)
        c_scale = torch.maximum(c_sq[idx], c_sq[top2].amax(1))
        x_sq = (xs**2).sum(-1)
        scale = x_sq + c_scale if metric == "l2" else (x_sq * c_scale).sqrt()
    tol = _TOL * scale
    best2 = ref.topk(2, dim=1, largest=False).values
    chosen = ref.gather(1, idx[:, None])[:, 0]
    assert (chosen - best2[:, 0] <= tol).all(), "returned code is not within fp32 error of the exact minimum"
    clear = best2[:, 1] - best2[:, 0] > 2 * tol
    assert clear.float().mean() > 0.5, "test data has too many near ties to be meaningful"
    assert torch.equal(idx[clear], ref.argmin(1)[clear])
    assert ((dist.double() - chosen).abs() <= tol).all()
    assert dist.dtype == torch.float32 and idx.dtype == torch.int64


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
@pytest.mark.parametrize("tiles", _TILES, ids=lambda t: f"tile{t[0]}x{t[1]}")
def test_random_matches_fp64_reference(metric: str, tiles: tuple[int, int], backend: str):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(201, 24, generator=g).to(_DEVICE)
    c = torch.randn(317, 24, generator=g).to(_DEVICE)
    dist, idx = nearest(x, c, metric, tile_n=tiles[0], tile_k=tiles[1], backend=backend)
    assert dist.shape == idx.shape == (201,)
    _assert_matches_reference(x, c, metric, dist, idx)


@pytest.mark.parametrize("tiles", _TILES, ids=lambda t: f"tile{t[0]}x{t[1]}")
def test_clustered_inputs_find_their_centre(tiles: tuple[int, int], backend: str):
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(300, 16, generator=g) * 10
    owner = torch.randint(0, 300, (400,), generator=g)
    x = centres[owner] + 0.01 * torch.randn(400, 16, generator=g)
    dist, idx = nearest(x.to(_DEVICE), centres.to(_DEVICE), tile_n=tiles[0], tile_k=tiles[1], backend=backend)
    assert torch.equal(idx.cpu(), owner)
    _assert_matches_reference(x, centres, "l2", dist, idx)


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
@pytest.mark.parametrize("k", [2, 5])
def test_topk_matches_reference_order(metric: str, k: int, backend: str):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(100, 12, generator=g)
    c = torch.randn(90, 12, generator=g)
    for tiles in _TILES:
        dist, idx = nearest(
            x.to(_DEVICE), c.to(_DEVICE), metric, k=k, tile_n=tiles[0], tile_k=tiles[1], backend=backend
        )
        assert dist.shape == idx.shape == (100, k)
        ref = reference_distances(x, c, metric)
        ref_sorted = ref.sort(dim=1).values[:, :k]
        assert torch.allclose(dist.cpu().double(), ref_sorted, atol=1e-4, rtol=1e-4)
        assert (dist[:, 1:] >= dist[:, :-1]).all()
        # Random data: no near ties at this size, so the index lists are identical.
        assert torch.equal(idx.cpu(), _lexsort_topk(ref, k))


def _tie_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Small integer coordinates: fp32 distances are exact and ties are plentiful."""
    g = torch.Generator().manual_seed(3)
    c = torch.randint(-2, 3, (70, 4), generator=g).float()
    c[40:60] = c[:20]  # duplicate codes at higher indices
    x = torch.randint(-2, 3, (500, 4), generator=g).float()
    return x, c


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("tiles", _TILES, ids=lambda t: f"tile{t[0]}x{t[1]}")
def test_exact_ties_go_to_lowest_index(metric: str, tiles: tuple[int, int], backend: str):
    x, c = _tie_data()
    ref = reference_distances(x, c, metric)
    dist, idx = nearest(x.to(_DEVICE), c.to(_DEVICE), metric, tile_n=tiles[0], tile_k=tiles[1], backend=backend)
    # argmin of the exact distances, first occurrence: the documented tie-breaking.
    first = (ref == ref.min(1, keepdim=True).values).float().argmax(1)
    assert torch.equal(idx.cpu(), first)
    assert torch.equal(dist.cpu().double(), ref.min(1).values)
    for k in (3, 9, 70):
        dist_k, idx_k = nearest(
            x.to(_DEVICE), c.to(_DEVICE), metric, k=k, tile_n=tiles[0], tile_k=tiles[1], backend=backend
        )
        assert torch.equal(idx_k.cpu(), _lexsort_topk(ref, k))
        assert torch.equal(dist_k.cpu().double(), ref.gather(1, idx_k.cpu()))


def test_all_codes_identical_returns_zero(backend: str):
    c = torch.ones(1000, 8)
    x = torch.randn(50, 8)
    _, idx = nearest(x, c, tile_n=16, tile_k=64, backend=backend)
    assert (idx == 0).all()
    _, idx_k = nearest(x, c, k=4, tile_n=16, tile_k=64)
    assert torch.equal(idx_k, torch.arange(4).expand(50, 4))


@pytest.mark.parametrize("scale", [1e-20, 1e25])
def test_huge_and_tiny_norms_do_not_overflow(scale: float, backend: str):
    # 1e25 squared overflows fp32; the kernel rescales by a power of two, which is exact.
    g = torch.Generator().manual_seed(4)
    c = torch.randn(64, 8, generator=g)
    x = c[torch.randperm(64, generator=g)[:40]] + 1e-3 * torch.randn(40, 8, generator=g)
    d0, i0 = nearest(x, c, backend=backend)
    for metric in ("l2", "ip"):
        d1, i1 = nearest(x * scale, c * scale, metric, backend=backend)
        ref_i = reference_distances(x, c, metric).argmin(1)
        assert torch.equal(i1, ref_i)
    d1, i1 = nearest(x * scale, c * scale, backend=backend)
    assert torch.equal(i1, i0)
    assert torch.isfinite(d1).all() or scale > 1e19  # 1e50 does not fit fp32: inf is the honest answer


def test_outlier_norms_in_codebook(backend: str):
    g = torch.Generator().manual_seed(5)
    c = torch.randn(100, 16, generator=g)
    c[::7] *= 1e4  # far codes with huge norms must never win
    x = torch.randn(300, 16, generator=g)
    dist, idx = nearest(x, c, tile_n=32, tile_k=16, backend=backend)
    _assert_matches_reference(x, c, "l2", dist, idx)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_raises(bad: float):
    x, c = torch.randn(10, 4), torch.randn(20, 4)
    x_bad = x.clone()
    x_bad[3, 1] = bad
    c_bad = c.clone()
    c_bad[7, 2] = bad
    with pytest.raises(ValueError, match="NaN"):
        nearest(x_bad, c)
    with pytest.raises(ValueError, match="NaN"):
        nearest(x, c_bad)


def test_bad_arguments_raise():
    x, c = torch.randn(10, 4), torch.randn(20, 4)
    for kwargs in ({"metric": "l1"}, {"k": 0}, {"k": 21}, {"tile_n": 0}, {"backend": "cuda"}):
        with pytest.raises(ValueError):
            nearest(x, c, **kwargs)
    with pytest.raises(ValueError):
        nearest(x, torch.randn(20, 5))
    with pytest.raises(ValueError):
        nearest(x, c, codebook_norms=torch.ones(19))


def test_cached_codebook_norms_and_dtypes(backend: str):
    g = torch.Generator().manual_seed(6)
    x, c = torch.randn(100, 32, generator=g), torch.randn(300, 32, generator=g)
    d0, i0 = nearest(x, c, backend=backend)
    d1, i1 = nearest(x, c, codebook_norms=(c * c).sum(-1), backend=backend)
    assert torch.equal(i0, i1) and torch.equal(d0, d1)
    d2, i2 = nearest(x.bfloat16(), c.bfloat16(), backend=backend)
    assert d2.dtype == torch.float32
    _assert_matches_reference(x.bfloat16().float(), c.bfloat16().float(), "l2", d2, i2)


def test_empty_latents(backend: str):
    d, i = nearest(torch.empty(0, 4), torch.randn(5, 4), backend=backend)
    assert d.shape == i.shape == (0,)
    d, i = nearest(torch.empty(0, 4), torch.randn(5, 4), k=2)
    assert d.shape == i.shape == (0, 2)


@pytest.mark.parametrize("dim", [2, 8, 16, 32, 64, 100])
@pytest.mark.parametrize("tile_k", [None, 48])
def test_dims_and_ragged_sizes(dim: int, tile_k: int | None, backend: str):
    # N not a multiple of the 8-latent block, K not a multiple of the 16-code vector; D covers the
    # kernel's unrolled (8, 16, 32) and generic loops.
    g = torch.Generator().manual_seed(8)
    x = torch.randn(203, dim, generator=g)
    c = torch.randn(1007 if dim > 2 else 207, dim, generator=g)  # fewer codes in 2-D: no crowd of near ties
    dist, idx = nearest(x, c, tile_k=tile_k, backend=backend)
    _assert_matches_reference(x, c, "l2", dist, idx)


@pytest.mark.parametrize("dim", [8, 16, 32, 20])
def test_cpu_ext_duplicate_codes_go_to_lowest_index(dim: int):
    if not _cpu_ext.available():
        pytest.skip(f"CPU kernel unavailable: {_cpu_ext.unavailable_reason()}")
    # Integer coordinates: every fp32 distance is exact, so duplicates tie exactly. Copies of codes 3-6
    # sit in other lanes of the same 16-code group (11-14), in the same lanes of a later group (35-38)
    # and in later tiles (tile_k=64); the first queries are exactly the last copies.
    g = torch.Generator().manual_seed(9)
    c = torch.randint(-2, 3, (600, dim), generator=g).float()
    src = torch.arange(3, 7)
    for offset in (8, 32, 200, 497):
        c[src + offset] = c[src]
    x = torch.cat([c[src + 497], torch.randint(-2, 3, (93, dim), generator=g).float()])
    ref = reference_distances(x, c, "l2")
    first = (ref == ref.min(1, keepdim=True).values).float().argmax(1)
    for tile_k in (None, 64, 16):
        dist, idx = nearest(x, c, tile_k=tile_k, backend="cpu_ext")
        assert torch.equal(idx, first)
        assert torch.equal(dist.double(), ref.min(1).values)
        assert torch.equal(idx[:4], src)


def test_auto_uses_cpu_ext_when_available(monkeypatch):
    if not _cpu_ext.available():
        pytest.skip(f"CPU kernel unavailable: {_cpu_ext.unavailable_reason()}")
    calls = []
    real = _cpu_ext.ext_search
    monkeypatch.setattr(_cpu_ext, "ext_search", lambda *a, **kw: calls.append(a[0].shape) or real(*a, **kw))
    x, c = torch.randn(40, 16), torch.randn(300, 16)
    _, idx = nearest(x, c)
    assert calls == [(40, 16)]
    assert torch.equal(idx, nearest(x, c, backend="torch")[1])
    nearest(x, c, k=2)  # top-k stays on torch
    nearest(torch.randn(4, 600), torch.randn(30, 600))  # above the D where the kernel wins
    assert calls == [(40, 16)]


def test_falls_back_to_torch_without_kernel(monkeypatch):
    monkeypatch.setattr(_cpu_ext, "_state", {"lib": None, "reason": "no compiler in this test"})
    x, c = torch.randn(40, 16), torch.randn(300, 16)
    dist, idx = nearest(x, c)
    _assert_matches_reference(x, c, "l2", dist, idx)
    with pytest.raises(RuntimeError, match="no compiler in this test"):
        nearest(x, c, backend="cpu_ext")


def test_failed_build_warns_once_and_opt_out_is_quiet(monkeypatch, tmp_path, caplog):
    # `false` stands for a compiler that fails; a fresh cache forces a build.
    monkeypatch.setenv("VQTOK_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    monkeypatch.setattr(_cpu_ext, "_state", {})
    with caplog.at_level("INFO", logger=_cpu_ext.__name__):
        assert _cpu_ext.load() is None and _cpu_ext.load() is None
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "false failed" in _cpu_ext.unavailable_reason()
    assert not list(tmp_path.rglob("*.so"))  # the failed build left nothing behind
    caplog.clear()
    monkeypatch.setenv("VQTOK_DISABLE_CPU_EXT", "1")
    monkeypatch.setattr(_cpu_ext, "_state", {})
    with caplog.at_level("INFO", logger=_cpu_ext.__name__):
        assert not _cpu_ext.available()
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert torch.equal(nearest(torch.ones(3, 2), torch.eye(2))[1], torch.zeros(3, dtype=torch.long))


def test_concurrent_builds_share_one_cache(tmp_path):
    if not _cpu_ext.available():
        pytest.skip(f"CPU kernel unavailable: {_cpu_ext.unavailable_reason()}")
    # Three processes compile into the same empty cache at once; each must load a complete library.
    script = "from vqtok.kernels import _cpu_ext; assert _cpu_ext.available(), _cpu_ext.unavailable_reason()"
    env = {**os.environ, "VQTOK_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    assert len(list(tmp_path.rglob("*.so"))) == 1  # temporary files were renamed or removed


def test_cpu_ext_threads_split_rows_identically():
    if not _cpu_ext.available():
        pytest.skip(f"CPU kernel unavailable: {_cpu_ext.unavailable_reason()}")
    g = torch.Generator().manual_seed(10)
    x, c = torch.randn(811, 12, generator=g), torch.randn(500, 12, generator=g)
    one = nearest(x, c, backend="cpu_ext")
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # three chunks of rows, the last one ragged
    try:
        three = nearest(x, c, backend="cpu_ext")
    finally:
        torch.set_num_threads(before)
    # Each latent is scored by the same code path whichever thread runs it.
    assert torch.equal(one[0], three[0]) and torch.equal(one[1], three[1])


def test_cpu_ext_rejects_what_it_cannot_read():
    if not _cpu_ext.available():
        pytest.skip(f"CPU kernel unavailable: {_cpu_ext.unavailable_reason()}")
    x, c = torch.randn(10, 4), torch.randn(20, 4)
    with pytest.raises(ValueError, match="k=21"):
        _cpu_ext.ext_topk(x, c, (c * c).sum(-1), 21)
    with pytest.raises(ValueError):
        _cpu_ext.ext_search(x.T.contiguous().T, c, (c * c).sum(-1))
    with pytest.raises(ValueError):
        _cpu_ext.ext_search(x, c, (c * c).sum(-1)[:5])


# Peak-memory bound for N=200,000 x K=65,536 x D=64: the full distance matrix would be 48.8 GiB.
# Outputs are 2.4 MiB and the tile buffer 4 MiB; the rest of the bound covers BLAS/OpenMP
# workspaces and allocator slack.
_RSS_BOUND_MIB = 64
_MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from vqtok.kernels import nearest
    from vqtok.testing.memory import peak_extra_mib

    n, k, d = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    c = torch.randn(k, d, generator=g)
    nearest(x[:8], c[:8])  # load BLAS and size thread pools before the baseline
    # VmHWM-based (see vqtok.testing.memory): ru_maxrss would carry pytest's peak across fork+exec.
    print(peak_extra_mib(lambda: nearest(x, c)))
    """
)


def _peak_extra_mib(n: int, k: int, d: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(n), str(k), str(d)],
        capture_output=True,
        text=True,
        check=True,
        # One thread: the bound does not depend on it. The mmap threshold makes every allocation above
        # 64 KiB fresh pages, so nothing hides in memory the allocator kept from earlier frees.
        env={**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536"},
    )
    return float(out.stdout.strip().splitlines()[-1])


def test_peak_rss_is_bounded_by_tile_not_n_times_k():
    # Same K and D as the full-size test with 1% of the latents (N*K*4 bytes would be 500 MiB).
    assert _peak_extra_mib(2_000, 65_536, 64) < _RSS_BOUND_MIB


@pytest.mark.slow
def test_peak_rss_full_size():
    assert _peak_extra_mib(200_000, 65_536, 64) < _RSS_BOUND_MIB


_HAS_TRITON = importlib.util.find_spec("triton") is not None


@pytest.mark.skipif(not _HAS_TRITON, reason="triton is not installed")
def test_triton_kernel_logic_in_interpreter():
    # TRITON_INTERPRET=1 runs the kernel on CPU tensors with numpy; it must be set before triton is
    # imported, hence the subprocess.
    script = textwrap.dedent(
        """
        import torch
        from vqtok.kernels._triton_nearest import triton_nearest
        from vqtok.kernels import nearest
        g = torch.Generator().manual_seed(0)
        x = torch.randn(70, 20, generator=g)
        c = torch.randn(150, 20, generator=g)
        c[100:120] = c[10:30]
        x[:10] = c[110:120]  # exact hits on duplicated codes: near-tie re-check must pick the lower index
        cn = (c * c).sum(-1)
        d, i = triton_nearest(x, c, cn, torch.float32, tile_n=32, tile_k=64)
        d_ref, i_ref = nearest(x, c, backend="torch")
        assert torch.equal(i, i_ref), (i, i_ref)
        assert torch.allclose(d + (x * x).sum(-1), d_ref, atol=1e-4)
        assert (i[:10] < 100).all()
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "TRITON_INTERPRET": "1"},
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_gpu_matches_fp64_reference(dtype: torch.dtype, metric: str):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4096, 64, generator=g).to(dtype)
    c = torch.randn(20_000, 64, generator=g).to(dtype)
    c[15_000:15_100] = c[:100]
    x[:100] = c[:100]
    for backend in ("auto", "torch"):
        dist, idx = nearest(x.cuda(), c.cuda(), metric, backend=backend)
        _assert_matches_reference(x.float(), c.float(), metric, dist, idx)
        assert (idx[:100].cpu() < 15_000).all()


# ------------------------------------------------------------------------------------- far from the origin
_OFFSETS = [0.0, 10.0, 100.0, 1e3, 1e4]
# A mismatch with the fp64 argmin is allowed only for a genuine near tie: an exact gap below this fraction
# of the translation-invariant scale ||x - m||^2 + ||c - m||^2 (m the codebook mean), about D * eps32.
_TIE_TOL = 1e-6


def _offset_data(offset: float, n: int = 1000, k: int = 1024, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return torch.randn(n, dim, generator=g) + offset, torch.randn(k, dim, generator=g) + offset


def _assert_exact_up_to_near_ties(x: torch.Tensor, c: torch.Tensor, dist: torch.Tensor, idx: torch.Tensor) -> None:
    xd, cd = x.double(), c.double()
    ref = torch.cdist(xd, cd).square()
    best = ref.min(1)
    m = cd.mean(0)
    scale = (xd - m).square().sum(-1) + (cd - m).square().sum(-1).amax()
    chosen = ref.gather(1, idx[:, None])[:, 0]
    wrong = idx != best.indices
    assert bool(((chosen - best.values)[wrong] <= _TIE_TOL * scale[wrong]).all()), (
        f"{int(wrong.sum())} of {len(idx)} indices differ from the fp64 argmin beyond near ties"
    )
    assert wrong.float().mean() < 0.01
    # The returned distance is the fp32 value of the chosen code's distance, with the same scale of error.
    assert bool(((dist.double() - chosen).abs() <= 10 * _TIE_TOL * scale).all())


@pytest.mark.parametrize("offset", _OFFSETS)
def test_far_from_origin_is_exact(offset: float, backend: str):
    # Issue 17: with c = randn(1024, 8) + 1000 only 63.5 % of the indices were the fp64 argmin.
    x, c = _offset_data(offset)
    dist, idx = nearest(x.to(_DEVICE), c.to(_DEVICE), backend=backend)
    _assert_exact_up_to_near_ties(x, c, dist.cpu(), idx.cpu())
    # Only the codebook far away, or only the latents: the centre is the codebook's.
    for xs, cs in ((x - offset, c), (x, c - offset)):
        dist, idx = nearest(xs.to(_DEVICE), cs.to(_DEVICE), backend=backend, tile_k=64)
        _assert_exact_up_to_near_ties(xs, cs, dist.cpu(), idx.cpu())


@pytest.mark.parametrize("offset", [1e3, 1e4])
def test_far_from_origin_topk_is_exact(offset: float):
    x, c = _offset_data(offset, n=300, k=500)
    _, idx = nearest(x.to(_DEVICE), c.to(_DEVICE), k=5, tile_n=64, tile_k=128)
    ref = torch.cdist(x.double(), c.double()).square()
    ref_idx = ref.topk(5, dim=1, largest=False).indices
    gaps = ref.gather(1, idx.cpu()) - ref.gather(1, ref_idx)
    m = c.double().mean(0)
    scale = (x.double() - m).square().sum(-1, keepdim=True) + (c.double() - m).square().sum(-1).amax()
    assert bool((gaps.abs() <= _TIE_TOL * scale).all())


def test_integer_ties_survive_centring(backend: str):
    # Integer coordinates far from the origin: the centre is an integer, x - centre is exact, and duplicated
    # codes still tie exactly (lowest index wins).
    x, c = _tie_data()
    ref = reference_distances(x, c, "l2")
    first = (ref == ref.min(1, keepdim=True).values).float().argmax(1)
    for offset in (1000.0, 4096.0):
        _, idx = nearest(x + offset, c + offset, backend=backend)
        assert torch.equal(idx, first)


@pytest.mark.skipif(not _HAS_TRITON, reason="triton is not installed")
def test_triton_far_from_origin_in_interpreter():
    script = textwrap.dedent(
        """
        import torch
        from vqtok.kernels import nearest
        for offset in (0.0, 10.0, 100.0, 1e3, 1e4):
            g = torch.Generator().manual_seed(12)
            x = torch.randn(150, 8, generator=g) + offset
            c = torch.randn(300, 8, generator=g) + offset
            ref = torch.cdist(x.double(), c.double()).square()
            _, idx = nearest(x, c, backend="triton", tile_n=64, tile_k=64)
            m = c.double().mean(0)
            scale = (x.double() - m).square().sum(-1) + (c.double() - m).square().sum(-1).amax()
            gap = ref.gather(1, idx[:, None])[:, 0] - ref.min(1).values
            assert bool((gap <= 1e-6 * scale).all()), (offset, int((gap > 1e-6 * scale).sum()))
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "TRITON_INTERPRET": "1"}
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


@pytest.mark.parametrize("dim", [2, 8, 16, 32, 20])
@pytest.mark.parametrize("k", [2, 16, 60])
def test_cpu_ext_topk_on_ties_and_ragged_sizes(dim: int, k: int):
    if not _cpu_ext.available():
        pytest.skip(f"CPU kernel unavailable: {_cpu_ext.unavailable_reason()}")
    # Integer coordinates: exact fp32 distances and many ties at every rank, across lanes, groups and tiles.
    g = torch.Generator().manual_seed(13)
    c = torch.randint(-1, 2, (203, dim), generator=g).float()
    x = torch.randint(-1, 2, (91, dim), generator=g).float()
    ref = reference_distances(x, c, "l2")
    for tile_k in (None, 48, 16):
        dist, idx = nearest(x, c, k=k, tile_k=tile_k, backend="cpu_ext")
        assert torch.equal(idx, _lexsort_topk(ref, k))
        assert torch.equal(dist.double(), ref.gather(1, idx))
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        big = torch.randint(-1, 2, (811, dim), generator=g).float()
        one = nearest(big, c, k=k, backend="cpu_ext")
        assert torch.equal(one[1], _lexsort_topk(reference_distances(big, c, "l2"), k))
    finally:
        torch.set_num_threads(before)


def test_topk_auto_uses_cpu_ext_up_to_its_k(monkeypatch):
    if not _cpu_ext.available():
        pytest.skip(f"CPU kernel unavailable: {_cpu_ext.unavailable_reason()}")
    calls = []
    real = _cpu_ext.ext_topk
    monkeypatch.setattr(_cpu_ext, "ext_topk", lambda *a, **kw: calls.append(a[3]) or real(*a, **kw))
    x, c = torch.randn(40, 16), torch.randn(600, 16)
    _, idx = nearest(x, c, k=10)
    assert calls == [10]
    assert torch.equal(idx, nearest(x, c, k=10, backend="torch")[1])
    nearest(x, c, k=300)  # above the k where sorted-list insertion stops paying: torch
    assert calls == [10]
