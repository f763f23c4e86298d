"""Exact nearest-code search on CPU: vqtok vs FAISS ``IndexFlatL2`` vs vector-quantize-pytorch, in one run.

For every size it reports wall time (best of ``--reps``), effective GFLOP/s (``2 N K D / t``), peak
extra resident memory during the call (RSS sampled every 0.5 ms from ``/proc/self/statm``, minus the
RSS just before the call) and index agreement with FAISS. All libraries run with the same number of
threads (``--threads``, default 1: on a shared machine OpenMP barriers of many small parallel regions
dominate, and ratios within one run are what we report).

    python benchmarks/search.py                      # full grid, writes benchmarks/results/search.json
    python benchmarks/search.py --quick              # small grid, a few seconds
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import torch
from _common import print_header, write_results

from vqtok.kernels import nearest
from vqtok.kernels.nearest import auto_cpu_ext

_PAGE = resource.getpagesize()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def measure(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    """(best seconds, peak extra RSS in MiB over the first call, result of the last call)."""
    gc.collect()
    base = rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    out = fn()
    best = time.perf_counter() - t0
    stop.set()
    sampler.join()
    peak_mib = (max(peak[0], rss_bytes()) - base) / 2**20
    for _ in range(reps - 1):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, peak_mib, out


def fresh_allocations() -> None:
    """Re-executes with glibc returning every allocation above 64 KiB to the OS on free.

    Otherwise glibc's dynamic mmap threshold lets later calls reuse memory freed by earlier ones
    (up to 32 MiB per block), and their RSS deltas read as zero.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> None:
    fresh_allocations()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16_384)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--codebook-sizes", type=int, nargs="+", default=[1_024, 16_384, 65_536])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3, help="timing repeats (best of); 1 above 1e10 flops")
    parser.add_argument(
        "--vqp-max-gib",
        type=float,
        default=6.0,
        help="skip vector-quantize-pytorch where 4 fp32 (N, K) matrices (its measured peak) exceed this",
    )
    parser.add_argument("--skip-vqp", action="store_true", help="do not run vector-quantize-pytorch")
    parser.add_argument("--quick", action="store_true", help="N=2048, D in {8, 64}, K in {1024, 4096}")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "search.json")
    args = parser.parse_args()
    if args.quick:
        args.n, args.dims, args.codebook_sizes = 2048, [8, 64], [1024, 4096]
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    torch.manual_seed(0)
    # Builds (first run on a machine) and loads the fused CPU kernel outside the timed calls.
    nearest(torch.zeros(1, 8), torch.zeros(1, 8))

    rows = []
    header = (
        f"{'D':>4} {'K':>6} | {'vqtok s':>8} {'faiss s':>8} {'vqp s':>8} | {'vqtok GF/s':>10} {'faiss GF/s':>10} | "
        f"{'vqtok/faiss':>11} {'vqp/vqtok':>9} | {'vqtok MiB':>9} {'faiss MiB':>9} {'vqp MiB':>8} | {'agree':>7} "
        f"{'backend':>8}"
    )
    print(f"N={args.n}, threads={args.threads}, torch {torch.__version__}, faiss {faiss.__version__}")
    print_header(header)
    for dim in args.dims:
        for num_codes in args.codebook_sizes:
            x = torch.randn(args.n, dim)
            c = torch.randn(num_codes, dim)
            flops = 2.0 * args.n * num_codes * dim
            reps = args.reps if flops < 1e10 else 1

            # The path nearest() takes for these sizes: the fused CPU kernel or the tiled torch fallback.
            backend = "cpu_ext" if auto_cpu_ext(x.device, dim, 1) else "torch"
            t_v, m_v, (_, idx_v) = measure(lambda: nearest(x, c), reps)  # noqa: B023

            index = faiss.IndexFlatL2(dim)
            index.add(c.numpy())
            xn = x.numpy()
            t_f, m_f, (_, idx_f) = measure(lambda: index.search(xn, 1), reps)  # noqa: B023
            idx_f = idx_f[:, 0]

            vqp_gib = 4 * args.n * num_codes * 4 / 2**30
            t_q = m_q = agree_q = float("nan")
            vqp_skipped = args.skip_vqp or vqp_gib > args.vqp_max_gib
            if not vqp_skipped:
                from vector_quantize_pytorch import VectorQuantize

                vqp = VectorQuantize(dim=dim, codebook_size=num_codes, decay=0.99).eval()
                with torch.no_grad():
                    vqp._codebook.embed.copy_(c[None])
                xb = x[None]

                def run_vqp() -> torch.Tensor:
                    with torch.no_grad():
                        return vqp(xb)[1][0]  # noqa: B023

                # One call: it is the slow side by far, and each call allocates several (N, K) matrices.
                t_q, m_q, idx_q = measure(run_vqp, 1)
                agree_q = float((idx_q.numpy() == idx_f).mean())
                vqp = xb = None
            agree = float((idx_v.numpy() == idx_f).mean())
            row = {
                "n": args.n,
                "dim": dim,
                "codebook_size": num_codes,
                "vqtok_s": t_v,
                "faiss_s": t_f,
                "vqp_s": t_q,
                "vqtok_gflops": flops / t_v / 1e9,
                "faiss_gflops": flops / t_f / 1e9,
                "vqp_gflops": flops / t_q / 1e9,
                "vqtok_over_faiss": t_v / t_f,
                "vqp_over_vqtok": t_q / t_v,
                "vqtok_peak_mib": m_v,
                "faiss_peak_mib": m_f,
                "vqp_peak_mib": m_q,
                "vqp_skipped": vqp_skipped,
                "vqtok_backend": backend,
                "agree_vqtok_faiss": agree,
                "agree_vqp_faiss": agree_q,
            }
            rows.append(row)
            print(
                f"{dim:>4} {num_codes:>6} | {t_v:>8.3f} {t_f:>8.3f} {t_q:>8.3f} | {row['vqtok_gflops']:>10.1f} "
                f"{row['faiss_gflops']:>10.1f} | {t_v / t_f:>11.2f} {t_q / t_v:>9.2f} | {m_v:>9.1f} {m_f:>9.1f} "
                f"{m_q:>8.1f} | {agree:>7.4f} {backend:>8}",
                flush=True,
            )
    write_results(args.out, rows, threads=args.threads)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
