"""``benchmarks/gpu.py`` stays runnable between GPU sessions: its smoke mode runs every part on CPU (the gpu tests'
logic included, as a dry run), and its targets and table handle GPU-sized results, failures and OOMs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _load_driver():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("gpu_bench_driver", BENCH / "gpu.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    # A generous budget: on a loaded 2-core runner every row must still be measured, not skipped for time.
    cmd = [sys.executable, str(BENCH / "gpu.py"), "--smoke", "--budget-s", "150", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text()), out.with_suffix(".md").read_text()


def test_smoke_runs_every_part(smoke) -> None:
    result, table = smoke
    parts = result["parts"]
    assert set(parts) == {"tests", "search", "train_step", "demo"}
    for name, part in parts.items():
        assert part["status"] == "ok", (name, part.get("error"), part.get("traceback"))
    assert result["meta"]["smoke"] and result["meta"]["device"] == "cpu"
    assert "| target |" in table and "Search" in table


def test_smoke_gpu_tests_dry_run(smoke) -> None:
    tests = smoke[0]["parts"]["tests"]
    assert "tests/gpu/test_gpu_paths.py" in tests["files"]
    assert not tests.get("timed_out") and tests["returncode"] == 0, tests.get("output_tail")
    assert tests["failed"] == 0 and tests["error"] == 0, tests["failed_tests"]
    # The dry run executes the tests' logic (quantizer contracts, trainer steps), it does not just skip them.
    assert tests["passed"] >= 50, tests["summary"]


def test_smoke_search_values(smoke) -> None:
    search = smoke[0]["parts"]["search"]
    assert search["bf16_peak_tflops"] > 0
    sizes = smoke[0]["meta"]["sizes"]["search"]
    assert len(search["rows"]) == len(sizes["dims"]) * len(sizes["codebook_sizes"]) * len(sizes["dtypes"])
    for row in search["rows"]:
        assert "skipped" not in row, row
        torch_res = row["torch"]
        assert torch_res["seconds"] > 0 and torch_res["tflops"] > 0
        # fp32 chunked torch is the reference computation; bf16 distances lose digits but not most winners.
        assert torch_res["agreement"] >= (0.99 if row["dtype"] == "fp32" else 0.9), row
        for method in ("triton", "faiss"):
            res = row[method]
            assert "error" not in res, (method, res)
            if "skipped" not in res:
                assert res["seconds"] > 0 and res["agreement"] >= 0.99, (method, row)
                if method == "triton":
                    assert 0 <= res["recheck_fraction"] <= 1, row


def test_smoke_train_step_and_demo_values(smoke) -> None:
    parts = smoke[0]["parts"]
    rows = parts["train_step"]["rows"]
    ours = [r for r in rows if r["impl"] == "vqtok"]
    # RSS-based on CPU: a few pages of noise either way.
    assert ours and all(r["seconds"] > 0 and r["peak_extra_rss_gib"] > -0.01 for r in ours), ours
    assert all("error" not in r for r in rows), rows
    assert any(r["n"] < smoke[0]["meta"]["sizes"]["train_step"]["n"] for r in ours), "no smaller-N comparison row"
    demo = parts["demo"]["rows"]
    assert {r["mode"] for r in demo} == {"eager", "compile_without_quantizer"}
    for row in demo:
        assert row["images_per_s"] > 0 and row["steps"] >= 1, row
    targets = smoke[0]["targets"]
    assert len(targets) == 3 and all(t["met"] == "n/a (smoke sizes)" for t in targets)


def _gpu_like_result() -> dict:
    def hit(seconds: float, fraction: float) -> dict:
        return {"seconds": seconds, "tflops": 300 * fraction, "fraction_of_bf16_peak": fraction, "agreement": 1.0}

    search = [
        {"dtype": "bf16", "dim": 64, "codebook_size": 16384, "n": 2**20, "triton": hit(0.01, 0.55),
         "torch": hit(0.1, 0.2), "faiss": {"skipped": "faiss not importable"}, "triton_speedup_over_torch": 10.0},
        {"dtype": "bf16", "dim": 256, "codebook_size": 262144, "n": 2**20, "triton": hit(0.4, 0.35),
         "torch": {"error": "OOM"}, "faiss": {"skipped": "faiss not importable"}},
        {"dtype": "fp32", "dim": 8, "codebook_size": 16384, "n": 2**20, "triton": hit(0.01, 0.02),
         "torch": hit(0.3, 0.001), "faiss": {"error": "RuntimeError: x"}, "triton_speedup_over_torch": 30.0},
        {"dtype": "fp32", "dim": 8, "codebook_size": 262144, "n": 2**20, "skipped": "budget"},
    ]  # fmt: skip
    train = [
        {"impl": "vqtok", "dim": 64, "codebook_size": 262144, "n": 2**20, "seconds": 0.5, "peak_gib": 3.2},
        {"impl": "vqp", "dim": 64, "codebook_size": 262144, "n": 2**20, "error": "OOM"},
        {"impl": "vqp", "dim": 64, "codebook_size": 262144, "n": 8192, "skipped": "budget"},
    ]
    demo = [{"mode": "compile", "batch_size": 128, "autocast": "bf16", "error": "BackendCompilerFailed: x"}]
    return {
        "meta": {"device_name": "H200", "torch": "2.x", "seconds": 400.0},
        "parts": {
            "tests": {"status": "ok", "seconds": 90, "passed": 140, "failed": 1, "error": 0, "skipped": 3,
                      "failed_tests": ["tests/gpu/test_gpu_paths.py::test_x"]},
            "search": {"status": "ok", "seconds": 60, "bf16_peak_tflops": 780.0, "rows": search},
            "train_step": {"status": "ok", "seconds": 30, "rows": train},
            "demo": {"status": "error", "seconds": 5, "rows": demo},
        },
    }  # fmt: skip


def test_targets_and_table_on_gpu_sized_results() -> None:
    driver = _load_driver()
    result = _gpu_like_result()
    result["targets"] = driver.targets(result["parts"], smoke=False)
    peak, speed, train = result["targets"]
    assert (peak["met"], peak["value"]) == ("not met", 0.35)  # the worst bf16 row at D >= 64 decides
    assert (speed["met"], speed["value"]) == ("met", 30.0)  # only D = 8 rows count
    assert (train["met"], train["value"]) == ("met", 3.2)
    table = driver.markdown(result)
    assert "| OOM |" in table and "BackendCompilerFailed" in table and "FAILED tests/gpu" in table
    del result["parts"]["train_step"]["rows"][0]
    assert driver.targets(result["parts"], smoke=False)[2]["met"] == "not measured"


def test_pytest_outcome_lines_are_parsed() -> None:
    driver = _load_driver()
    lines = [
        "tests/gpu/test_gpu_paths.py::test_a[fp32] PASSED                    [  1%]",
        "tests/gpu/test_gpu_paths.py::test_b SKIPPED (needs a CUDA device)   [  2%]",
        "tests/gpu/test_gpu_paths.py::test_c FAILED                          [  3%]",
        "FAILED tests/gpu/test_gpu_paths.py::test_c - AssertionError: x",
    ]
    got = [driver._OUTCOME.match(line) for line in lines]
    assert [m[2] or m[3] for m in got] == ["PASSED", "SKIPPED", "FAILED", "FAILED"]
