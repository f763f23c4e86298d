"""vqtok.vectors.index vs faiss-cpu: recall@10 against queries/s over an nprobe sweep, at matched settings.

Both libraries build the same description (e.g. ``IVF256,PQ16``: same nlist, same bytes per vector) with
``index_factory`` on the same training set, add the same database and answer the same queries, one thread.
Reported per nprobe: 1-recall@10 (share of queries whose exact L2 nearest neighbour is in the returned top 10) and
queries/s; per index: build time (train + add) and stored bytes per vector (codes + norms + 8-byte id).

Data (``--table``, see benchmarks/vectors.py): ``sentences`` (unit-norm all-MiniLM-L6-v2 sentence embeddings, needs
embedding ~30k sentences on first use), ``tokens`` / ``tokens-lognorm`` (MiniLM's word-piece embedding table,
raw or with norms spread over two orders of magnitude; no model run needed), ``synthetic`` (a Gaussian mixture
fitted to the word-piece table: 64 k-means components, each with its own diagonal covariance in the table's PCA
basis; any size, e.g. ``--database 1000000``; queries drawn from the same mixture). The database is added in chunks
of 100k so that neither library holds more than one extra copy of a chunk.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/index.py --table tokens --index IVF128,PQ16 [--out ...]
"""

from __future__ import annotations

import argparse

import faiss
import numpy as np
import torch
from _common import timed, write_results
from vectors import load_table, recall_1_at_10, token_table

from vqtok.kernels.kmeans import kmeans
from vqtok.vectors.index import index_factory


def gaussian_mixture(n: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """``n`` vectors from a 64-component Gaussian mixture fitted to MiniLM's word-piece table (see the docstring)."""
    table, _ = token_table(30522, False)
    t = torch.from_numpy(table)
    mean = t.mean(0)
    _, _, v = torch.linalg.svd(t - mean, full_matrices=False)  # rows of v: PCA basis
    z = (t - mean) @ v.T
    centres = kmeans(z, 64, iters=20, seed=seed)
    assign = torch.cdist(z, centres).argmin(1)
    weights = torch.bincount(assign, minlength=64).double()
    std = torch.stack([z[assign == c].std(0) if (assign == c).sum() > 1 else z.std(0) for c in range(64)])
    g = torch.Generator().manual_seed(seed)
    out = np.empty((n, table.shape[1]), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(n, s + 100_000) - s
        comp = torch.multinomial(weights, m, replacement=True, generator=g)
        zz = centres[comp] + std[comp] * torch.randn(m, table.shape[1], generator=g)
        out[s : s + m] = (zz @ v + mean).numpy()
    return out, {"table": "64-component diagonal Gaussian mixture fitted to all-MiniLM-L6-v2 word_embeddings"}


def exact_nearest(queries: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Exact L2 nearest database row of each query (chunked over the database)."""
    q = torch.from_numpy(queries)
    best_d = torch.full((q.shape[0],), float("inf"))
    best_i = torch.zeros(q.shape[0], dtype=torch.long)
    for s in range(0, db.shape[0], 100_000):
        x = torch.from_numpy(db[s : s + 100_000])
        d = x.square().sum(1)[None] - 2 * q @ x.T
        v, i = d.min(1)
        better = v < best_d
        best_d, best_i = torch.where(better, v, best_d), torch.where(better, i + s, best_i)
    return best_i.numpy()


def add_chunks(index, db: np.ndarray, lib: str) -> None:
    for s in range(0, db.shape[0], 100_000):
        chunk = db[s : s + 100_000]
        index.add(chunk if lib == "faiss" else torch.from_numpy(chunk))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", choices=["sentences", "tokens", "tokens-lognorm", "synthetic"], default="tokens")
    p.add_argument("--train", type=int, default=18000)
    p.add_argument("--database", type=int, default=10000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--index", nargs="+", default=["IVF128,PQ16"], help="faiss-style descriptions")
    p.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timed searches per library and nprobe (best kept)")
    p.add_argument("--out", default="benchmarks/results/index.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    n = args.train + args.database + args.queries
    emb, sources = gaussian_mixture(n) if args.table == "synthetic" else load_table(args.table, n)
    train, db, queries = emb[: args.train], emb[args.train : args.train + args.database], emb[-args.queries :]
    truth = exact_nearest(queries, db)
    dim = emb.shape[1]
    rows = []
    print(f"data: {sources}: train {train.shape}, database {db.shape}, queries {queries.shape}")
    print(
        f"{'index':18} {'lib':6} {'B/vec':>5} {'build s':>8} | "
        + " ".join(f"np={p:<3} R@10  q/s " for p in args.nprobe)
    )
    for desc in args.index:
        built = {}
        for lib in ("faiss", "vqtok"):
            if lib == "faiss":
                index = faiss.index_factory(dim, desc)
                if "Refine" in desc:
                    faiss.downcast_index(index).k_factor = 4  # vqtok's default (faiss's is 1)
                _, build = timed(lambda: (index.train(train), add_chunks(index, db, lib)))  # noqa: B023
                ivf = faiss.extract_index_ivf(index) if "IVF" in desc else None
                # sa_code_size counts the list number, which the inverted lists do not store; add the 8-byte id.
                bpv = index.sa_code_size() - (ivf.coarse_code_size() if ivf is not None else 0) + 8
                index.search(queries[:20], 10)  # untimed: one-off costs of the first call
            else:
                index, ivf = index_factory(dim, desc), None
                _, build = timed(lambda: (index.train(torch.from_numpy(train)), add_chunks(index, db, lib)))  # noqa: B023
                bpv = index.bytes_per_vector
                index.search(torch.from_numpy(queries[:20]), 10)  # untimed: kernel loading, thread pool
            built[lib] = (index, ivf, bpv, build)
        # The machine is shared: both libraries are timed alternately, `--repeats` times per nprobe, best kept.
        curves = {lib: [] for lib in built}
        for nprobe in args.nprobe:
            best = {lib: 0.0 for lib in built}
            for _ in range(args.repeats):
                for lib, (index, ivf, _, _) in built.items():
                    if lib == "faiss":
                        if ivf is not None:
                            ivf.nprobe = nprobe
                        (_, ids), secs = timed(lambda: index.search(queries, 10))  # noqa: B023
                    else:
                        (_, ids), secs = timed(lambda: index.search(torch.from_numpy(queries), 10, nprobe=nprobe))  # noqa: B023
                        ids = ids.numpy()
                    best[lib] = max(best[lib], len(queries) / secs)
                    recall = recall_1_at_10(ids, truth)
                    if len(curves[lib]) < args.nprobe.index(nprobe) + 1:
                        curves[lib].append({"nprobe": nprobe, "recall_1_at_10": recall})
            for lib in built:
                curves[lib][-1]["qps"] = best[lib]
        for lib, (_, _, bpv, build) in built.items():
            curve = curves[lib]
            rows.append({"index": desc, "library": lib, "bytes_per_vector": bpv, "build_s": build, "curve": curve})
            line = " ".join(f"{c['recall_1_at_10']:10.3f} {c['qps']:6.0f}" for c in curve)
            print(f"{desc:18} {lib:6} {bpv:5d} {build:8.1f} | {line}", flush=True)
    write_results(args.out, rows, sources=sources, args=vars(args))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
