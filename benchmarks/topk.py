"""Exact top-k on CPU (k = 10 by default): vqtok ``nearest(..., k=k)`` vs FAISS ``IndexFlatL2``.

Tie-heavy data (integer or binary coordinates) is where an exact (value, index)-ordered top-k used to fall
behind: many codes share the k-th distance. All libraries run on ``--threads`` threads (default 1).

    python benchmarks/topk.py                          # both vqtok CPU backends, writes benchmarks/results/topk.json
    python benchmarks/topk.py --backends torch         # only the tiled torch path
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import torch
from _common import write_results

from vqtok.kernels import nearest


def best_of(fn: Callable[[], object], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--codebook-size", type=int, default=4_096)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["auto", "torch"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "topk.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    nearest(torch.zeros(1, 8), torch.zeros(2, 8), k=2)  # builds and loads the CPU kernel outside the timings

    def ints(shape: tuple[int, int], g: torch.Generator) -> torch.Tensor:
        return torch.randint(-2, 3, shape, generator=g).float()

    def bits(shape: tuple[int, int], g: torch.Generator) -> torch.Tensor:
        return torch.randint(0, 2, shape, generator=g).float()

    def gauss(shape: tuple[int, int], g: torch.Generator) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    cases = [
        ("ints -2..2", 4, ints),
        ("ints -2..2", 8, ints),
        ("binary", 16, bits),
        ("randn", 8, gauss),
        ("randn", 64, gauss),
    ]
    rows = []
    print(f"N={args.n}, K={args.codebook_size}, k={args.k}, threads={args.threads}, faiss {faiss.__version__}")
    for name, dim, make in cases:
        g = torch.Generator().manual_seed(0)
        x, c = make((args.n, dim), g), make((args.codebook_size, dim), g)
        index = faiss.IndexFlatL2(dim)
        index.add(c.numpy())
        t_f = best_of(lambda: index.search(x.numpy(), args.k), args.reps)  # noqa: B023
        _, idx_f = index.search(x.numpy(), args.k)
        row = {"data": name, "dim": dim, "faiss_s": t_f}
        line = f"{name:>11} D={dim:<3} | faiss {t_f:7.3f} s"
        for backend in args.backends:
            t_v = best_of(lambda: nearest(x, c, k=args.k, backend=backend), args.reps)  # noqa: B023
            dist, _ = nearest(x, c, k=args.k, backend=backend)
            # FAISS breaks ties arbitrarily, so compare the distance lists, not the indices.
            same = bool(torch.allclose(dist, torch.from_numpy(index.search(x.numpy(), args.k)[0]), atol=1e-4))
            row |= {
                f"vqtok_{backend}_s": t_v,
                f"vqtok_{backend}_over_faiss": t_v / t_f,
                f"same_distances_{backend}": same,
            }
            line += f" | vqtok[{backend}] {t_v:7.3f} s ({t_v / t_f:5.2f}x faiss, distances agree: {same})"
        del idx_f
        rows.append(row)
        print(line, flush=True)
    write_results(args.out, rows, n=args.n, codebook_size=args.codebook_size, k=args.k, threads=args.threads)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
