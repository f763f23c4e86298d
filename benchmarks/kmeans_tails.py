"""Near-empty centroids and held-out MSE of the shared k-means variants vs faiss on heavy-tailed data (docs/vectors.md).

Student-t (3 dof) directions, norms log-uniform over two orders of magnitude; 20k train / 10k held out; 256 centroids;
25 iterations; seeds 0-2.

Run: OMP_NUM_THREADS=1 python benchmarks/kmeans_tails.py [DIM]   (default 24)
"""

from __future__ import annotations

import sys

import faiss
import numpy as np
import torch

from vqtok.kernels.kmeans import assign, kmeans

VARIANTS = {
    "kmeans++, split empty": {"seeding": "kmeans++", "min_points": 0},
    "random, split empty": {"seeding": "random", "min_points": 0},
    "kmeans++, split <= 1": {"seeding": "kmeans++", "min_points": 1},
    "random, split <= 1": {"seeding": "random", "min_points": 1},
}


def heavy_tailed(seed: int, n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(n, d)).astype(np.float32)
    norms = np.exp(rng.uniform(np.log(0.1), np.log(10), size=(n, 1))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True) * norms * np.sqrt(d)


def stats(train: np.ndarray, test: np.ndarray, centroids) -> tuple[int, float]:
    c = torch.as_tensor(centroids)
    _, idx = assign(torch.as_tensor(train), c)
    near_empty = int((torch.bincount(idx, minlength=c.shape[0]) <= 1).sum())
    return near_empty, float(assign(torch.as_tensor(test), c)[0].mean())


def main() -> None:
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    k, d = 256, int(sys.argv[1]) if len(sys.argv) > 1 else 24
    res: dict[str, list[tuple[int, float]]] = {}
    for seed in range(3):
        x = heavy_tailed(seed, 30000, d)
        train, test = x[:20000], x[20000:]
        km = faiss.Kmeans(d, k, niter=25, seed=seed + 1)
        km.train(train)
        res.setdefault("faiss", []).append(stats(train, test, km.centroids))
        for name, kw in VARIANTS.items():
            c = kmeans(torch.as_tensor(train), k, iters=25, seed=seed, **kw)
            res.setdefault(name, []).append(stats(train, test, c))
    for name, v in res.items():
        a = np.array(v)
        print(f"{name:22s} near-empty (<= 1 point) {a[:, 0].mean():5.1f}  held-out MSE {a[:, 1].mean():.4f}")


if __name__ == "__main__":
    main()
