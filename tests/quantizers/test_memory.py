"""Guards against N x K materialisation in quantizer training, k-means init and beam encoding.

At N=4,096 latents and K=65,536 codes one (N, K) fp32 matrix is 1 GiB. Each case runs in a fresh
subprocess and reports its peak extra resident memory (``VmHWM`` after resetting it through
``/proc/self/clear_refs``), the way ``tests/kernels/test_nearest.py`` measures ``nearest``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")

N, K, D = 4_096, 65_536, 8
_DENSE_MIB = N * K * 4 / 2**20  # one (N, K) fp32 matrix: 1024 MiB
# Outputs and per-code statistics are O(N D + K D) (a few MiB); nearest's tiles and beam_search's
# chunks are bounded by their own budgets. An eighth of one dense matrix leaves room for allocator
# slack while any (N, K) temporary, even in int8, would exceed it.
_BOUND_MIB = _DENSE_MIB / 8

_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from vqtok.quantizers import create
    from vqtok.testing.memory import peak_extra_mib

    n, k, d = (int(a) for a in sys.argv[1:4])
    torch.manual_seed(0)
    x = torch.randn(n, d)

    def train_step(q):
        z = x.clone().requires_grad_(True)
        out = q(z)
        (out.quantized.sum() + out.loss).backward()

    def vq_ema_steps():
        q = create("vq", dim=d, codebook_size=k, kmeans_init=False).train()
        for _ in range(2):  # the second step restarts the codes the first one left dead
            train_step(q)

    def vq_kmeans_init():
        train_step(create("vq", dim=d, codebook_size=k, kmeans_iters=2).train())

    def rvq_beam_encode():
        # A quarter of K: the exact top-k search behind the beam is slower than top-1.
        q = create("rvq", dim=d, codebook_size=k // 4, num_levels=2, beam_width=4, kmeans_init=False)
        q.eval().encode(x)

    # Load BLAS, the nearest kernels and the autograd engine before the baseline.
    small = create("rvq", dim=d, codebook_size=8, num_levels=2, beam_width=2).train()
    z = x[:64].clone().requires_grad_(True)
    small(z).quantized.sum().backward()
    small.eval().encode(x[:64])
    for case in (vq_ema_steps, vq_kmeans_init, rvq_beam_encode):
        print(case.__name__, peak_extra_mib(case), flush=True)
    """
)


@pytest.fixture(scope="module")
def peaks() -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(N), str(K), str(D)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        # Every allocation above 64 KiB gets fresh pages, so nothing hides in memory the allocator
        # kept from earlier frees, and each case's peak is its own.
        env={**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536"},
    )
    return {name: float(value) for name, value in (line.split() for line in out.stdout.strip().splitlines())}


@pytest.mark.parametrize("case", ["vq_ema_steps", "vq_kmeans_init", "rvq_beam_encode"])
def test_peak_memory_far_below_one_n_by_k_matrix(peaks, case):
    assert 0 <= peaks[case] < _BOUND_MIB, f"{case}: {peaks[case]:.1f} MiB (dense (N, K) fp32: {_DENSE_MIB:.0f} MiB)"
