"""vqtok.vectors.index vs faiss-cpu: recall@10 against queries/s over an nprobe sweep, at matched settings.

Both libraries build the same description (e.g. ``IVF256,PQ16``: same nlist, same bytes per vector) with
``index_factory`` on the same training set, add the same database and answer the same queries, one thread.
Reported per nprobe: 1-recall@10 (share of queries whose exact L2 nearest neighbour is in the returned top 10) and
queries/s; per index: build time (train + add) and stored bytes per vector (codes + norms + 8-byte id).

Data (``--table``, see benchmarks/vectors.py): ``sentences`` (unit-norm all-MiniLM-L6-v2 sentence embeddings, needs
embedding ~30k sentences on first use), ``tokens`` / ``tokens-lognorm`` (MiniLM's word-piece embedding table,
raw or with norms spread over two orders of magnitude; no model run needed).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/index.py --table tokens --index IVF128,PQ16 [--out ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import faiss
import numpy as np
import torch
from vectors import embed_sentences, load_sentences, recall_1_at_10, token_table

from vqtok.vectors.index import index_factory


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", choices=["sentences", "tokens", "tokens-lognorm"], default="tokens")
    p.add_argument("--train", type=int, default=18000)
    p.add_argument("--database", type=int, default=10000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--index", nargs="+", default=["IVF128,PQ16"], help="faiss-style descriptions")
    p.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/index.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    n = args.train + args.database + args.queries
    if args.table == "sentences":
        sentences, sources = load_sentences(n, seed=0)
        emb = embed_sentences(sentences, progress=True)
    else:
        emb, sources = token_table(n, args.table == "tokens-lognorm")
    train, db, queries = emb[: args.train], emb[args.train : args.train + args.database], emb[-args.queries :]
    truth = np.argmin((db**2).sum(1)[None] - 2 * queries @ db.T, axis=1)
    dim = emb.shape[1]
    rows = []
    print(f"data: {sources}: train {train.shape}, database {db.shape}, queries {queries.shape}")
    print(
        f"{'index':18} {'lib':6} {'B/vec':>5} {'build s':>8} | "
        + " ".join(f"np={p:<3} R@10  q/s " for p in args.nprobe)
    )
    for desc in args.index:
        for lib in ("faiss", "vqtok"):
            if lib == "faiss":
                index = faiss.index_factory(dim, desc)
                if "Refine" in desc:
                    faiss.downcast_index(index).k_factor = 4  # vqtok's default (faiss's is 1)
                _, build = timed(lambda: (index.train(train), index.add(db)))  # noqa: B023
                bpv = index.sa_code_size() + 8
                ivf = faiss.extract_index_ivf(index) if "IVF" in desc else None
            else:
                index = index_factory(dim, desc)
                _, build = timed(lambda: (index.train(train), index.add(db)))  # noqa: B023
                bpv = index.bytes_per_vector
            curve = []
            for nprobe in args.nprobe:
                if lib == "faiss":
                    if ivf is not None:
                        ivf.nprobe = nprobe
                    (_, ids), secs = timed(lambda: index.search(queries, 10))  # noqa: B023
                else:
                    (_, ids), secs = timed(lambda: index.search(torch.from_numpy(queries), 10, nprobe=nprobe))  # noqa: B023
                    ids = ids.numpy()
                curve.append(
                    {"nprobe": nprobe, "recall_1_at_10": recall_1_at_10(ids, truth), "qps": len(queries) / secs}
                )
            rows.append({"index": desc, "library": lib, "bytes_per_vector": bpv, "build_s": build, "curve": curve})
            line = " ".join(f"{c['recall_1_at_10']:10.3f} {c['qps']:6.0f}" for c in curve)
            print(f"{desc:18} {lib:6} {bpv:5d} {build:8.1f} | {line}", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    meta = {
        "sources": sources,
        "args": vars(args),
        "load_average": os.getloadavg(),
        "faiss": faiss.__version__,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    with open(args.out, "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
