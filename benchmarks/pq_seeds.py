"""PQ codebooks of vqtok vs faiss on one real table, all scored by faiss's IndexPQ: only the k-means differs.

Each variant fits one 256-centroid k-means per sub-space, per seed S: faiss's ``Clustering`` with one seed for all
sub-spaces (as ``ProductQuantizer::train`` does) or ``S + m`` per sub-space, and ``vqtok.kernels.kmeans`` with
``S + m`` (as ``vqtok.vectors.PQ``) or one seed. Prints relative MSE and 1-recall@10 on the first 1k queries and on
all held-out rows, then per variant the mean and the paired difference to faiss (same seed, same queries).

Run: OMP_NUM_THREADS=1 python benchmarks/pq_seeds.py --table tokens-lognorm --m 8 --seeds 0 1 2 3 4 5 6 7
(the measurement behind "Is PQ recall behind faiss's at equal MSE?" in docs/vectors.md).
"""

from __future__ import annotations

import argparse

import faiss
import numpy as np
import torch
from vectors import load_table, rel_mse

from vqtok.kernels.kmeans import kmeans

VARIANTS = ("faiss_shared", "faiss_per_m", "vqtok_per_m", "vqtok_shared")


def fit(variant: str, train: np.ndarray, m: int, seed: int) -> np.ndarray:
    """``(m, 256, D / m)`` codebooks from one variant's per-sub-space k-means."""
    ds = train.shape[1] // m
    books = []
    for j in range(m):
        sub = np.ascontiguousarray(train[:, j * ds : (j + 1) * ds])
        s = seed if variant.endswith("shared") else seed + j
        if variant.startswith("faiss"):
            cp = faiss.ClusteringParameters()
            cp.seed = s
            clus = faiss.Clustering(ds, 256, cp)
            clus.train(sub, faiss.IndexFlatL2(ds))
            books.append(faiss.vector_to_array(clus.centroids).reshape(256, ds))
        else:
            books.append(kmeans(torch.from_numpy(sub), 256, seed=s).numpy())
    return np.stack(books)


def score(books: np.ndarray, db: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray]:
    """Relative MSE on ``db`` and the per-query hit (exact nearest neighbour in faiss's ADC top 10)."""
    index = faiss.IndexPQ(db.shape[1], books.shape[0], 8)
    faiss.copy_array_to_vector(np.ascontiguousarray(books, dtype=np.float32).ravel(), index.pq.centroids)
    index.is_trained = True
    recon = index.sa_decode(index.sa_encode(db))
    index.add(db)
    _, ids = index.search(queries, 10)
    return rel_mse(db, recon), (ids == truth[:, None]).any(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", choices=["tokens", "tokens-lognorm"], default="tokens-lognorm")
    p.add_argument("--m", type=int, default=8, help="sub-spaces (bytes per vector)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = p.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    emb, _ = load_table(args.table, 30522)
    train, db, queries = emb[:18000], emb[18000:28000], emb[28000:]
    truth = np.argmin((db**2).sum(1)[None] - 2 * queries @ db.T, axis=1)
    res: dict[str, list[tuple[float, float, float]]] = {}
    for seed in args.seeds:
        for v in args.variants:
            mse, hit = score(fit(v, train, args.m, seed), db, queries, truth)
            res.setdefault(v, []).append((mse, hit[:1000].mean(), hit.mean()))
            print(f"seed {seed} {v:13} MSE {mse:.4f} 1-R@10 {hit[:1000].mean():.3f} (1k q) {hit.mean():.4f} (all)")
    base = np.array(res.get("faiss_shared", []))
    for v, rows in res.items():
        a = np.array(rows)
        line = f"{v:13} MSE {a[:, 0].mean():.4f} 1-R@10 {a[:, 2].mean():.4f} (sd {a[:, 2].std(ddof=1):.4f})"
        if len(base) and v != "faiss_shared":
            d = 100 * (a[:, 2] - base[:, 2])
            line += f", vs faiss_shared {d.mean():+.2f} +- {d.std(ddof=1) / np.sqrt(len(d)):.2f} pt"
        print(line, flush=True)


if __name__ == "__main__":
    main()
