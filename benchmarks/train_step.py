"""One training step (forward + backward, EMA codebook on) of vqtok ``vq`` vs vector-quantize-pytorch.

Both quantizers get the same random codebook-free start (no k-means init), EMA decay 0.99 and N
latents of width D that require grad; the step is ``(out.quantized.sum() + out.loss).backward()``.
Reports wall time (best of ``--reps`` after one warm-up) and peak extra RSS during the first step
(sampled from ``/proc/self/statm``, see ``search.py``). vector-quantize-pytorch is skipped where four
``(N, K)`` fp32 matrices (its measured search peak; training needs more) would exceed ``--vqp-max-gib``.
The default grid is D in {8, 64, 256} x K in {1,024; 16,384; 65,536; 262,144} at N=16,384.

    python benchmarks/train_step.py                  # writes benchmarks/results/train_step.json
    python benchmarks/train_step.py --n 2048 --out /tmp/train_step.json   # quick check
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from _common import print_header, write_results
from search import fresh_allocations, measure
from vector_quantize_pytorch import VectorQuantize

from vqtok.quantizers import create


def main() -> None:
    fresh_allocations()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16_384)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--codebook-sizes", type=int, nargs="+", default=[1_024, 16_384, 65_536, 262_144])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=2, help="timing repeats (best of); 1 above 1e11 N*K*D")
    parser.add_argument("--vqp-max-gib", type=float, default=6.0)
    parser.add_argument("--skip-vqp", action="store_true", help="do not run vector-quantize-pytorch")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_step.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    load_before = os.getloadavg()
    rows = []
    header = (
        f"{'D':>4} {'K':>7} | {'vqtok s':>8} {'vqp s':>8} {'vqp/vqtok':>9} | "
        f"{'vqtok MiB':>9} {'vqp MiB':>9} {'ratio':>6}"
    )
    print(f"N={args.n}, threads={args.threads}, forward+backward, EMA 0.99")
    print_header(header)
    for dim in args.dims:
        for num_codes in args.codebook_sizes:
            # One step at the largest sizes takes a minute on one thread: the repeat adds nothing.
            reps = 1 if args.n * num_codes * dim > 1e11 else args.reps
            latents = torch.randn(args.n, dim)
            ours = create("vq", dim=dim, codebook_size=num_codes, kmeans_init=False, ema_decay=0.99).train()

            def step_ours() -> None:
                z = latents.clone().requires_grad_(True)  # noqa: B023
                out = ours(z)  # noqa: B023
                (out.quantized.sum() + out.loss).backward()

            t_o, m_o, _ = measure(step_ours, 1)
            t_o = min([t_o] + [measure(step_ours, 1)[0] for _ in range(reps - 1)])
            row = {"n": args.n, "dim": dim, "codebook_size": num_codes, "vqtok_s": t_o, "vqtok_peak_mib": m_o}
            need = 4 * args.n * num_codes * 4 / 2**30
            if args.skip_vqp:
                row["vqp_skipped"] = "--skip-vqp"
                print(f"{dim:>4} {num_codes:>7} | {t_o:>8.3f} {'-':>8} {'':>9} | {m_o:>9.1f} {'-':>9}", flush=True)
            elif need <= args.vqp_max_gib:
                vqp = VectorQuantize(dim=dim, codebook_size=num_codes, decay=0.99, kmeans_init=False).train()

                def step_vqp() -> None:
                    z = latents[None].clone().requires_grad_(True)  # noqa: B023
                    quantized, _, loss = vqp(z)  # noqa: B023
                    (quantized.sum() + loss.sum()).backward()

                t_q, m_q, _ = measure(step_vqp, 1)
                t_q = min([t_q] + [measure(step_vqp, 1)[0] for _ in range(reps - 1)])
                row.update(vqp_s=t_q, vqp_peak_mib=m_q, vqp_over_vqtok_time=t_q / t_o, vqp_over_vqtok_mem=m_q / m_o)
                print(
                    f"{dim:>4} {num_codes:>7} | {t_o:>8.3f} {t_q:>8.3f} {t_q / t_o:>9.2f} | {m_o:>9.1f} {m_q:>9.1f} "
                    f"{m_q / m_o:>6.1f}",
                    flush=True,
                )
            else:
                row["vqp_skipped"] = f"four (N, K) fp32 matrices need {need:.0f} GiB"
                skip = "skip"
                print(f"{dim:>4} {num_codes:>7} | {t_o:>8.3f} {skip:>8} {'':>9} | {m_o:>9.1f} {skip:>9}", flush=True)
            rows.append(row)
    # Timings are only comparable on a quiet machine: the load before the run goes next to the one after it.
    write_results(args.out, rows, threads=args.threads, seconds=time.perf_counter() - start, loadavg_before=load_before)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
