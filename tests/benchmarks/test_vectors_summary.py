"""benchmarks/vectors.py: the per-cell summary over seeds (paired recall difference and its standard error)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

ROOT = Path(__file__).resolve().parents[2]
# benchmarks/vectors.py imports its sibling benchmarks/_common.py as a top-level module (the scripts run from there).
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    spec = importlib.util.spec_from_file_location("bench_vectors", ROOT / "benchmarks" / "vectors.py")
    bench_vectors = importlib.util.module_from_spec(spec)
    sys.modules["bench_vectors"] = bench_vectors
    spec.loader.exec_module(bench_vectors)
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def _row(method: str, budget: int, seed: int, faiss_recall: float, vqtok_recall: float) -> dict:
    return {
        "method": method,
        "bytes_per_vector": budget,
        "seed": seed,
        "faiss_mse": 0.5 + seed / 100,
        "vqtok_mse": 0.4 + seed / 100,
        "faiss_recall_1_at_10": faiss_recall,
        "vqtok_recall_1_at_10": vqtok_recall,
    }


def test_paired_difference_cancels_what_both_libraries_share() -> None:
    # Recalls that swing by 20 points from seed to seed, with vqtok always exactly 1 point behind: each library's
    # range is 20 points wide, the paired difference has no spread at all.
    rows = [_row("pq", 8, s, f, f - 0.01) for s, f in enumerate([0.10, 0.30, 0.20])]
    rows.append(_row("pq", 16, 0, 0.5, 0.6))
    cells = {(c["method"], c["bytes_per_vector"]): c for c in bench_vectors.summarize(rows)}
    pq8 = cells[("pq", 8)]
    assert pq8["seeds"] == [0, 1, 2]
    assert pq8["recall_diff_mean"] == pytest.approx(-0.01)
    assert pq8["recall_diff_se"] == pytest.approx(0.0, abs=1e-12)
    assert pq8["vqtok_at_least_faiss"] == 0
    assert pq8["faiss_recall_1_at_10_min"] == 0.10 and pq8["faiss_recall_1_at_10_max"] == 0.30
    assert pq8["vqtok_mse_mean"] == pytest.approx(0.41)
    # A single seed has no spread to estimate.
    assert cells[("pq", 16)]["recall_diff_se"] == 0.0
    assert cells[("pq", 16)]["vqtok_at_least_faiss"] == 1


def test_standard_error_is_that_of_the_mean_difference() -> None:
    diffs = np.array([0.02, -0.01, 0.005, 0.0])
    rows = [_row("opq", 8, s, 0.3, 0.3 + d) for s, d in enumerate(diffs)]
    (cell,) = bench_vectors.summarize(rows)
    assert cell["recall_diff_mean"] == pytest.approx(diffs.mean())
    assert cell["recall_diff_se"] == pytest.approx(diffs.std(ddof=1) / 2)
    assert cell["vqtok_at_least_faiss"] == 3
