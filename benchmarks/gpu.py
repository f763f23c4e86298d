"""One prepared check of every GPU path, in minutes (issue 16); writes JSON and a Markdown table.

Parts (``--parts``, all by default, run in this order):

* ``tests``: ``pytest -m gpu`` on every test file that uses the marker, in a subprocess; pass/fail counts.
* ``search``: exact nearest-code search at N = 2^20 latents x K in {16,384; 262,144} x D in {8, 64, 256}, fp32 and
  bf16 inputs: the Triton kernel (``nearest(backend="triton")``) vs chunked torch (``addmm`` + ``argmin`` in the
  inputs' dtype, 2 GiB of distances per chunk) vs faiss GPU when importable. TFLOP/s counts ``2 N K D`` flops and
  is compared with a bf16 8192^3 matmul measured in the same run; index agreement is against the fp32 argmin
  (no TF32) of a 4,096-row subsample.
* ``train_step``: one ``vq`` training step (forward + backward, EMA codebook, no k-means init) at
  K in {16,384; 262,144} on 2^20 tokens of width D in {64, 256}: best time and ``torch.cuda.max_memory_allocated``,
  next to vector-quantize-pytorch's ``VectorQuantize`` (OOM recorded as such), and both again at the largest
  power-of-two token count where vqp's four ``(N, K)`` fp32 matrices take half the free memory.
* ``demo``: training throughput of the ``configs/fashion_mnist_vq.yaml`` model on synthetic batches (images/s,
  bf16 autocast, AdamW, gradient clipping) at batch 128 and 1,024: eager, and ``torch.compile`` of the encoder and
  decoder (quantizer left eager); ``torch.compile`` of the whole model at batch 128.

Every part (and every row inside a part) records its error instead of stopping the run, the JSON is rewritten after
every row, and the parts share ``--budget-s`` (default 420 s) in proportion to their weights: whatever a part
leaves unused goes to the next ones, and rows past a part's deadline are recorded as skipped.

    python benchmarks/gpu.py                           # on a GPU; benchmarks/results/gpu.json and gpu.md
    python benchmarks/gpu.py --smoke                   # tiny sizes on CPU in < 60 s: results/gpu_smoke.json and .md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # a bare GPU machine has the checkout, not an installed vqtok
    sys.path.insert(0, str(ROOT))

from gpu_parts import Context, free_memory, run_demo, run_search, run_train_step  # noqa: E402

from vqtok._io import atomic_write_bytes, write_json  # noqa: E402

PARTS = ("tests", "search", "train_step", "demo")
# Shares of the budget. On an H200 the parts are expected to need about: tests 60-120 s (Triton JIT of many
# specialisations), search 40-60 s, train_step 20-30 s, demo 60-100 s (inductor compiles twice). In smoke mode the
# tests part dry-runs every gpu test's logic on CPU, the one place CI runs it, so it gets the largest share.
WEIGHTS = {
    "gpu": {"tests": 120, "search": 120, "train_step": 70, "demo": 110},
    "smoke": {"tests": 200, "search": 60, "train_step": 30, "demo": 60},
}
SIZES = {
    "gpu": {
        "search": {"n": 2**20, "codebook_sizes": [16_384, 262_144], "dims": [8, 64, 256], "dtypes": ["fp32", "bf16"],
                   "ref_rows": 4096, "peak_n": 8192},
        "train_step": {"n": 2**20, "codebook_sizes": [16_384, 262_144], "dims": [64, 256], "reps": 2},
        "demo": {"batch_sizes": [128, 1024], "warmup_steps": 3, "steps": 30, "full_compile": True},
    },
    "smoke": {
        "search": {"n": 1024, "codebook_sizes": [128, 512], "dims": [8, 64], "dtypes": ["fp32", "bf16"],
                   "ref_rows": 256, "peak_n": 256},
        # vqp_fit_bytes: a pretend memory limit, so that the smaller-N comparison rows run in smoke mode too.
        "train_step": {"n": 4096, "codebook_sizes": [256, 1024], "dims": [8], "reps": 1, "vqp_fit_bytes": 2**25},
        "demo": {"batch_sizes": [8], "warmup_steps": 1, "steps": 2, "full_compile": False},
    },
}  # fmt: skip
TARGET_PEAK_FRACTION, TARGET_SPEEDUP_D8, TARGET_TRAIN_GIB = 0.40, 20.0, 4.0


# -------------------------------------------------------------------------------------------- tests
def gpu_test_files() -> list[str]:
    """Test files that use the ``gpu`` marker (so a new one is picked up without editing this script)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py") if "mark.gpu" in p.read_text())


_OUTCOME = re.compile(r"^(\S+::\S+)\s+(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b|^(PASSED|FAILED|ERROR) (\S+::\S+)")


def run_tests(ctx: Context, out: dict) -> None:
    files = gpu_test_files()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if ctx.smoke:
        env["VQTOK_GPU_TESTS_ON_CPU"] = "1"  # dry-run the tests' logic on CPU (conftest.py)
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-rfE", "-p", "no:cacheprovider", *files]
    out.update(command=" ".join(cmd[1:]), files=files)
    # A session of its own, so that a timeout kills anything the tests started too (a hung NCCL rank, say),
    # and nothing keeps the pipe open while the output is collected.
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        text, _ = proc.communicate(timeout=max(ctx.left(), 5))
        out["returncode"] = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        text, _ = proc.communicate()
        out["timed_out"] = True
        # -v prints a test's id before running it: the last line names the test that was running.
        out["running_at_timeout"] = next((line for line in reversed(text.splitlines()) if "::" in line), None)
    outcomes: dict[str, str] = {}
    for line in text.splitlines():
        m = _OUTCOME.match(line.strip())
        if m:
            name, outcome = (m[1], m[2]) if m[1] else (m[4], m[3])
            outcomes[name] = outcome  # a teardown ERROR after PASSED overrides it
    counts = {k.lower(): sum(v == k for v in outcomes.values()) for k in ("PASSED", "FAILED", "SKIPPED", "ERROR")}
    out.update(counts, failed_tests=sorted(n for n, v in outcomes.items() if v in ("FAILED", "ERROR")))
    summary = [line for line in text.splitlines() if re.match(r"^=+ .*(passed|failed|skipped|error).* =+$", line)]
    out["summary"] = summary[-1].strip("= ") if summary else None
    if out["failed"] or out["error"] or out.get("timed_out") or out.get("returncode") not in (0, 5):
        out["output_tail"] = text[-6000:]


# ------------------------------------------------------------------------------------------ targets
def targets(parts: dict, smoke: bool) -> list[dict]:
    search = [r for r in parts.get("search", {}).get("rows", []) if "seconds" in r.get("triton", {})]
    peak_rows = [r for r in search if r["dtype"] == "bf16" and r["dim"] >= 64]
    d8 = [r for r in search if r["dim"] == 8 and "triton_speedup_over_torch" in r]
    train = [
        r
        for r in parts.get("train_step", {}).get("rows", [])
        if r["impl"] == "vqtok" and r["codebook_size"] == 262_144 and r["n"] == 2**20 and r["dim"] == 64
    ]
    found = [
        (
            f"Triton search >= {TARGET_PEAK_FRACTION:.0%} of the measured bf16 peak (bf16 inputs, D >= 64; worst row)",
            min((r["triton"]["fraction_of_bf16_peak"] for r in peak_rows), default=None),
            lambda v: v >= TARGET_PEAK_FRACTION,
            "{:.1%}",
        ),
        (
            f"Triton search >= {TARGET_SPEEDUP_D8:.0f}x chunked torch at D = 8 (worst of fp32/bf16, both K)",
            min((r["triton_speedup_over_torch"] for r in d8), default=None),
            lambda v: v >= TARGET_SPEEDUP_D8,
            "{:.1f}x",
        ),
        (
            f"vq training step at K = 262,144 on 2^20 tokens (D = 64) under {TARGET_TRAIN_GIB:.0f} GiB",
            next((r["peak_gib"] for r in train if "peak_gib" in r), None),
            lambda v: v < TARGET_TRAIN_GIB,
            "{:.2f} GiB",
        ),
    ]
    rows = []
    for name, value, ok, fmt in found:
        if smoke:
            met = "n/a (smoke sizes)"
        else:
            met = "not measured" if value is None else ("met" if ok(value) else "not met")
        rows.append({"target": name, "value": value, "shown": "-" if value is None else fmt.format(value), "met": met})
    return rows


# ----------------------------------------------------------------------------------------- markdown
def _f(v: Any, fmt: str = "{:.3g}") -> str:
    return "-" if v is None else fmt.format(v)


def _cell(res: dict | None, key: str, fmt: str = "{:.3g}") -> str:
    if not res:
        return "-"
    if "seconds" not in res:
        return "OOM" if res.get("error") == "OOM" else "err" if "error" in res else "skip"
    return _f(res.get(key), fmt)


def _table(header: list[str], aligns: str, rows: list[list[Any]]) -> list[str]:
    """Markdown table lines; ``aligns`` has one letter per column, ``r`` for right-aligned (numbers), else left."""
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if a == "r" else "---" for a in aligns) + " |"]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _search_row(r: dict) -> list[Any]:
    tr, to, fa = r.get("triton"), r.get("torch"), r.get("faiss")
    return [
        *(r["dtype"], r["dim"], f"{r['codebook_size']:,}", _cell(tr, "seconds"), _cell(tr, "tflops")),
        *(_cell(tr, "fraction_of_bf16_peak", "{:.1%}"), _cell(tr, "recheck_fraction", "{:.2%}")),
        *(_cell(to, "seconds"), _f(r.get("triton_speedup_over_torch"), "{:.1f}x"), _cell(fa, "seconds")),
        "/".join(_cell(x, "agreement", "{:.4f}") for x in (tr, to, fa)),
    ]


def markdown(result: dict) -> str:
    meta, parts = result["meta"], result["parts"]
    lines = [f"# GPU check ({meta['device_name']}, torch {meta['torch']}, {meta['seconds']:.0f} s)", ""]
    lines += _table(
        ["part", "status", "seconds"],
        "llr",
        [[k, v.get("status"), _f(v.get("seconds"), "{:.0f}")] for k, v in parts.items()],
    )
    t = parts.get("tests", {})
    if "passed" in t:
        lines += ["", f"Tests: {t['passed']} passed, {t['failed']} failed, {t['error']} errors, {t['skipped']} skipped"]
        lines += [f"- FAILED {n}" for n in t.get("failed_tests", [])]
        if t.get("timed_out"):
            lines += [f"- timed out while running {t.get('running_at_timeout')}"]
    s = parts.get("search", {})
    if s.get("rows"):
        lines += [
            "",
            f"Search (N = {s['rows'][0]['n']:,}); bf16 matmul peak {_f(s.get('bf16_peak_tflops'))} TFLOP/s",
            "",
        ]
        header = ["dtype", "D", "K", "Triton s", "TFLOP/s", "% peak", "re-checked", "torch s", "speed-up", "faiss s"]
        lines += _table([*header, "agree T/t/f"], "lrrrrrrrrrl", [_search_row(r) for r in s["rows"]])
    ts = parts.get("train_step", {})
    if ts.get("rows"):
        lines += ["", "vq training step (forward + backward, EMA)", ""]
        rows = [
            [r["impl"], r["dim"], f"{r['codebook_size']:,}", f"{r['n']:,}", _f(r.get("seconds"))]
            + [_f(r.get("peak_gib", r.get("peak_extra_rss_gib")), "{:.2f}"), r.get("error") or r.get("skipped") or ""]
            for r in ts["rows"]
        ]
        lines += _table(["impl", "D", "K", "tokens", "step s", "peak GiB", "note"], "lrrrrrl", rows)
    d = parts.get("demo", {})
    if d.get("rows"):
        lines += ["", "Demo tokenizer training (bf16 autocast)", ""]
        rows = [
            [r["mode"], r["batch_size"], _f(r.get("images_per_s"), "{:,.0f}"), _f(r.get("step_ms"), "{:.1f}")]
            + [_f(r.get("warmup_s"), "{:.1f}"), r.get("error") or r.get("skipped") or r.get("compile_backend", "")]
            for r in d["rows"]
        ]
        lines += _table(["mode", "batch", "images/s", "step ms", "warm-up s", "note"], "lrrrrl", rows)
    lines += [""] + _table(
        ["target", "measured", "met"], "lrl", [[r["target"], r["shown"], r["met"]] for r in result["targets"]]
    )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU (< 60 s), for the test suite")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--budget-s", type=float, default=None, help="seconds for all parts (420; 50 with --smoke)")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/gpu.json (gpu_smoke.json)")
    parser.add_argument("--markdown", type=Path, default=None, help="default: --out with the suffix .md")
    args = parser.parse_args()
    start = time.perf_counter()
    # Smoke numbers must never be mistaken for (or overwrite) a GPU run's.
    args.out = args.out or ROOT / "benchmarks" / "results" / ("gpu_smoke.json" if args.smoke else "gpu.json")
    budget = args.budget_s if args.budget_s is not None else (50.0 if args.smoke else 420.0)
    device = torch.device("cpu" if args.smoke else "cuda")
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --smoke on a machine without a GPU")
    interpreted = device.type == "cpu"
    if interpreted:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton's first import (vqtok imports it lazily)
    torch.backends.cuda.matmul.allow_tf32 = False  # the torch fp32 path and the reference are true fp32
    sizes = SIZES["smoke" if args.smoke else "gpu"]
    meta = {
        "smoke": args.smoke,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "budget_s": budget,
        "parts": args.parts,
        "sizes": sizes,
        "triton_interpreted": interpreted,
    }
    try:
        import triton

        meta["triton"] = triton.__version__
    except ImportError:
        meta["triton"] = None
    result: dict[str, Any] = {"meta": meta, "parts": {p: {"status": "not selected"} for p in PARTS}, "targets": []}

    def save() -> None:
        meta["seconds"] = time.perf_counter() - start
        write_json(args.out, result)

    deadline = start + budget
    runners = {
        "tests": run_tests,
        "search": run_search,
        "train_step": run_train_step,
        "demo": lambda ctx, out: run_demo(ctx, out, ROOT / "configs" / "fashion_mnist_vq.yaml"),
    }
    todo = [p for p in PARTS if p in args.parts]
    for i, part in enumerate(todo):
        out: dict[str, Any] = {"status": "running"}
        result["parts"][part] = out
        now = time.perf_counter()
        if deadline - now < 1:
            out.update(status="skipped", reason="budget exhausted")
            continue
        weights = WEIGHTS["smoke" if args.smoke else "gpu"]
        share = (deadline - now) * weights[part] / sum(weights[p] for p in todo[i:])
        ctx = Context(device, args.smoke, sizes.get(part, {}), now + share, save, interpreted)
        try:
            runners[part](ctx, out)
            out["status"] = "ok"
        except Exception as err:  # noqa: BLE001 - one broken part must not lose the others' results
            out.update(status="error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc()[-4000:])
        out["seconds"] = time.perf_counter() - now
        out["budget_s"] = share
        print(f"[gpu.py] {part}: {out['status']} in {out['seconds']:.0f} s (share {share:.0f} s)", flush=True)
        free_memory(device)
        save()
    result["targets"] = targets(result["parts"], args.smoke)
    save()
    table = markdown(result)
    atomic_write_bytes(args.markdown or args.out.with_suffix(".md"), table.encode())
    print(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
