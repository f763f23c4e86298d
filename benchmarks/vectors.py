"""vqtok.vectors vs faiss-cpu on real sentence embeddings, at 8 and 16 bytes per vector.

Data: all-MiniLM-L6-v2 embeddings (384-d, unit norm) of Debian `fortunes` quotes topped up with
`bible-kjv` verses (see vqtok.data.text); 20k train, 10k database, 1k queries, disjoint.
For every method (PQ, OPQ, RQ, LSQ) and budget, both libraries fit on the same train set; we report
relative reconstruction MSE on the database (sum ||x - x_hat||^2 / sum ||x||^2), 1-recall@10 of ADC
search (share of queries whose exact nearest database vector is in the returned top 10), and the
vqtok / faiss ratios of fit and encode wall time, all single-threaded.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vectors.py [--out benchmarks/results/vectors.json]
Iterate on one cell: ``--methods rq --budgets 8 --faiss-cache`` (reuses faiss results for the same data and
settings from ~/.cache/vqtok/faiss_vectors; the final table is run without it, so both sides share one run).

Recall differences of a point need several seeds to see: ``--seeds 0 1 2 3 4 5 6 7`` runs every cell once per seed
and ends with a summary per cell (mean over seeds, and the per-seed vqtok - faiss recall difference on the same
queries with its standard error). On MiniLM's word-piece table the spread of 1-recall@10 from seed to seed is
about 0.5 points with 1k queries, so a 3-seed mean difference of one point is within noise; use all 2,522 rows
left after ``--train 18000`` as queries (``--queries 2522``) there.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import faiss
import numpy as np
import torch
from _common import timed, write_results

from vqtok.data.text import embed_sentences, load_minilm, load_sentences
from vqtok.vectors import LSQ, OPQ, PQ, RQ, ADCIndex


def recall_1_at_10(ids: np.ndarray, truth: np.ndarray) -> float:
    return float((ids[:, :10] == truth[:, None]).any(1).mean())


def summarize(rows: list[dict]) -> list[dict]:
    """Per (method, budget) cell over its seeds: mean MSE and recall, and the paired recall difference.

    The difference ``vqtok - faiss`` is taken per seed (both recalls on the same queries) before averaging, so
    the query sample's own noise cancels; ``diff_se`` is its standard error over seeds (0 for one seed).
    """
    cells: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["method"], r["bytes_per_vector"]), []).append(r)
    out = []
    for (method, budget), rs in cells.items():
        diff = np.array([r["vqtok_recall_1_at_10"] - r["faiss_recall_1_at_10"] for r in rs])
        out.append(
            {
                "method": method,
                "bytes_per_vector": budget,
                "seeds": [r.get("seed") for r in rs],
                **{f"{k}_mean": float(np.mean([r[k] for r in rs])) for k in _SUMMED},
                **{f"{k}_min": float(np.min([r[k] for r in rs])) for k in _SUMMED},
                **{f"{k}_max": float(np.max([r[k] for r in rs])) for k in _SUMMED},
                "recall_diff_mean": float(diff.mean()),
                "recall_diff_se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0,
                "vqtok_at_least_faiss": int((diff >= 0).sum()),
            }
        )
    return out


_SUMMED = ("faiss_mse", "vqtok_mse", "faiss_recall_1_at_10", "vqtok_recall_1_at_10")


def rel_mse(x: np.ndarray, y: np.ndarray) -> float:
    return float(((x - y) ** 2).sum() / (x**2).sum())


def run_faiss(method: str, m: int, dim: int, train, db, queries, seed: int | None = None):
    if method == "pq":
        index = faiss.IndexPQ(dim, m, 8)
        clustering = [index.pq.cp]
    elif method == "opq":
        index = faiss.index_factory(dim, f"OPQ{m},PQ{m}")
        # The OPQ rotation's own initialisation has no seed to set; the final PQ's k-means has.
        clustering = [faiss.downcast_index(index.index).pq.cp]
    elif method == "rq":
        # Norms stored as float (4 extra bytes per vector): favours faiss in the recall column.
        index = faiss.IndexResidualQuantizer(dim, m, 8, faiss.METRIC_L2, faiss.AdditiveQuantizer.ST_norm_float)
        clustering = [index.rq.cp]
    elif method == "lsq":
        index = faiss.IndexLocalSearchQuantizer(dim, m, 8, faiss.METRIC_L2, faiss.AdditiveQuantizer.ST_norm_float)
        clustering = []
        if seed is not None:
            index.lsq.random_seed = seed
    if seed is not None:
        for cp in clustering:
            cp.seed = seed
    fit = timed(index.train, train)[1]
    codes, enc = timed(index.sa_encode, db)
    recon = index.sa_decode(codes)
    index.add(db)
    _, ids = index.search(queries, 10)
    return {"fit_s": fit, "encode_s": enc, "mse": rel_mse(db, recon), "ids": ids, "bytes": index.sa_code_size()}


def cached_faiss(method: str, m: int, dim: int, train, db, queries, use_cache: bool, seed: int | None = None):
    """``run_faiss``, memoised on disk by a hash of the data and the cell (for fast iteration on vqtok only)."""
    if not use_cache:
        return run_faiss(method, m, dim, train, db, queries, seed)
    h = hashlib.sha1()
    for a in (train, db, queries):
        h.update(np.ascontiguousarray(a).tobytes())
    key = f"{method}_{m}_{faiss.__version__}_{h.hexdigest()[:16]}" + ("" if seed is None else f"_seed{seed}")
    path = Path.home() / ".cache" / "vqtok" / "faiss_vectors" / f"{key}.npz"
    if path.exists():
        z = np.load(path)
        return {k: (z[k] if k == "ids" else z[k].item()) for k in z.files}
    out = run_faiss(method, m, dim, train, db, queries, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def make_vqtok(method: str, m: int, dim: int, seed: int | None = None):
    common = {"device": "cpu", "progress": False, "seed": 0 if seed is None else seed}
    if method == "pq":
        return PQ(dim, m, 8, **common)
    if method == "opq":
        return OPQ(dim, m, 8, **common)
    if method == "rq":
        return RQ(dim, m, 8, beam_width=5, encode_beam_width=12, **common)
    return LSQ(dim, m, 8, beam_width=5, **common)


def run_vqtok(method: str, m: int, dim: int, train, db, queries, seed: int | None = None):
    codec = make_vqtok(method, m, dim, seed)
    fit = timed(codec.fit, train)[1]
    idx, enc = timed(codec.encode, db)
    recon = codec.decode(idx).numpy()
    index = ADCIndex(codec)
    index.add_indices(idx)
    _, ids = index.search(queries, 10)
    return {"fit_s": fit, "encode_s": enc, "mse": rel_mse(db, recon), "ids": ids.numpy(), "bytes": codec.code_size}


def load_table(table: str, n: int) -> tuple[np.ndarray, dict]:
    """``n`` rows of the named real table (``sentences``, ``tokens`` or ``tokens-lognorm``) and their sources."""
    if table == "sentences":
        sentences, sources = load_sentences(n, seed=0)
        return embed_sentences(sentences, progress=True), sources
    return token_table(n, table == "tokens-lognorm")


def token_table(n: int, lognorm: bool) -> tuple[np.ndarray, dict]:
    """Rows of all-MiniLM-L6-v2's word-piece embedding table in a fixed random order (a real, non-unit table)."""
    table = load_minilm("cpu")[0].auto_model.embeddings.word_embeddings.weight.detach().numpy().astype(np.float32)
    rng = np.random.default_rng(0)
    rows = table[rng.permutation(table.shape[0])[:n]]
    if lognorm:
        rows = rows * np.exp(rng.uniform(-2.3, 2.3, size=(n, 1))).astype(np.float32)
    norms = np.linalg.norm(rows, axis=1)
    return np.ascontiguousarray(rows), {
        "table": "all-MiniLM-L6-v2 word_embeddings" + (" x exp(U(-2.3, 2.3))" if lognorm else ""),
        "norm_min": float(norms.min()),
        "norm_max": float(norms.max()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=20000)
    p.add_argument("--database", type=int, default=10000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--budgets", type=int, nargs="+", default=[8, 16], help="bytes per vector (8-bit codebooks)")
    p.add_argument("--methods", nargs="+", default=["pq", "opq", "rq", "lsq"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for both libraries' k-means / local search (default: each library's own default), "
        "to measure seed-to-seed spread",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="run every cell once per seed, then summarize")
    p.add_argument(
        "--table",
        choices=["sentences", "tokens", "tokens-lognorm"],
        default="sentences",
        help="sentences: unit-norm MiniLM sentence embeddings; tokens: MiniLM's own word-piece embedding table "
        "(30522 x 384, not unit norm: norms 0.24-1.69); tokens-lognorm: that table with each row scaled by "
        "exp(U(-2.3, 2.3)) (fixed seed), so norms span two orders of magnitude",
    )
    p.add_argument("--faiss-cache", action="store_true", help="reuse cached faiss results (iteration only)")
    p.add_argument("--out", default="benchmarks/results/vectors.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    n = args.train + args.database + args.queries
    emb, sources = load_table(args.table, n)
    train = emb[: args.train]
    db = emb[args.train : args.train + args.database]
    queries = emb[args.train + args.database :]
    dim = emb.shape[1]
    # Exact L2 nearest neighbours (||q - x||^2 up to the per-query constant ||q||^2).
    truth = np.argmin((db**2).sum(1)[None] - 2 * queries @ db.T, axis=1)

    rows = []
    print(f"data: {sources} -> train {train.shape}, database {db.shape}, queries {queries.shape}")
    header = (
        f"{'method':6} {'B/vec':>5} | {'MSE faiss':>9} {'MSE vqtok':>9} | {'R@10 faiss':>10} {'R@10 vqtok':>10} | "
        f"{'fit s f/v':>11} {'fit x':>6} | {'enc s f/v':>11} {'enc x':>6}"
    )
    print(header)
    print("-" * len(header))
    # Method-major order, LSQ last by default: the JSON is rewritten after every cell, so a run cut short
    # keeps the finished cells.
    seeds = args.seeds or [args.seed]
    for method in args.methods:
        for budget, seed in [(b, s) for b in args.budgets for s in seeds]:
            f = cached_faiss(method, budget, dim, train, db, queries, args.faiss_cache, seed)
            v = run_vqtok(method, budget, dim, train, db, queries, seed)
            row = {
                "method": method,
                "bytes_per_vector": budget,
                "seed": seed,
                "faiss_stored_bytes": f["bytes"],
                "vqtok_stored_bytes": v["bytes"],
                "faiss_mse": f["mse"],
                "vqtok_mse": v["mse"],
                "faiss_recall_1_at_10": recall_1_at_10(f["ids"], truth),
                "vqtok_recall_1_at_10": recall_1_at_10(v["ids"], truth),
                "faiss_fit_s": f["fit_s"],
                "vqtok_fit_s": v["fit_s"],
                "faiss_encode_s": f["encode_s"],
                "vqtok_encode_s": v["encode_s"],
                "load_1min": os.getloadavg()[0],
            }
            rows.append(row)
            print(
                f"{method:6} {budget:5d} | {row['faiss_mse']:9.4f} {row['vqtok_mse']:9.4f} | "
                f"{row['faiss_recall_1_at_10']:10.3f} {row['vqtok_recall_1_at_10']:10.3f} | "
                f"{f['fit_s']:5.1f}/{v['fit_s']:5.1f} {v['fit_s'] / f['fit_s']:6.2f} | "
                f"{f['encode_s']:5.1f}/{v['encode_s']:5.1f} {v['encode_s'] / f['encode_s']:6.2f}",
                flush=True,
            )
            write(args, sources, rows)
    if len(seeds) > 1:
        print_summary(summarize(rows))
    print(f"wrote {args.out}")


def print_summary(summary: list[dict]) -> None:
    """Mean (min-max) over seeds per cell, and the paired recall difference in points with its standard error."""
    print(
        f"\n{'method':6} {'B/vec':>5} | {'MSE faiss':>9} {'MSE vqtok':>9} | "
        f"{'R@10 faiss':>19} {'R@10 vqtok':>19} | vqtok - faiss"
    )
    for c in summary:
        rec = [
            f"{c[k + '_mean']:.3f} ({c[k + '_min']:.3f}-{c[k + '_max']:.3f})"
            for k in ("faiss_recall_1_at_10", "vqtok_recall_1_at_10")
        ]
        print(
            f"{c['method']:6} {c['bytes_per_vector']:5d} | {c['faiss_mse_mean']:9.4f} {c['vqtok_mse_mean']:9.4f} | "
            f"{rec[0]:>19} {rec[1]:>19} | {100 * c['recall_diff_mean']:+.2f} +- {100 * c['recall_diff_se']:.2f} pt "
            f"({c['vqtok_at_least_faiss']}/{len(c['seeds'])} seeds vqtok >= faiss)"
        )


def write(args: argparse.Namespace, sources: dict, rows: list[dict]) -> None:
    """(Re)writes the results JSON with the rows so far."""
    write_results(
        args.out,
        rows,
        sources=sources,
        train=args.train,
        database=args.database,
        queries=args.queries,
        threads=args.threads,
        faiss_cached=args.faiss_cache,
        seed=args.seed,
        seeds=args.seeds,
        summary=summarize(rows),
    )


if __name__ == "__main__":
    main()
