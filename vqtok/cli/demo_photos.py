"""``vqtok demo photos``: a colour tokenizer on 64x64 crops of photos that ship offline, next to JPEG and WebP.

Trains ``configs/photos64_cpu.yaml`` on the CPU (a finished run is reused, an interrupted one resumed), evaluates
on crops of the held-out test photos, then codes the same crops with JPEG and WebP at the tokenizer's bits per
crop (quality bisected per crop; headers counted, and separately excluded). Writes ``eval/demo.json``,
``eval/codecs.json`` and the HTML report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._clock import RunClock
from ._demo_train import train_or_reuse

__all__ = ["run", "default_config_path"]


def default_config_path() -> Path:
    return Path(__file__).resolve().parents[2] / "configs" / "photos64_cpu.yaml"


def _format_rows(rows: list[dict]) -> str:
    cols = ("codec", "headers", "bits", "fits", "quality", "psnr", "ssim")
    lines = ["  ".join(f"{c:>9}" for c in cols)]
    for r in rows:
        lines.append(
            "  ".join(
                f"{r[c]:>9}" if isinstance(r[c], str) else f"{r[c]:>9.{1 if c in ('bits', 'quality') else 3}f}"
                for c in cols
            )  # fmt: skip
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Runs the photos demo; ``args`` are those of ``vqtok demo`` with ``photos`` as the first override."""
    import torch

    from .._io import write_json
    from ..data import create_dataset
    from ..metrics.codecs import codec_rows
    from ..metrics.report import format_metrics_table
    from ..modalities import find_modality
    from ..tokenizers import BaseTokenizer
    from ..train import evaluate, load_config

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = RunClock()
    cfg = load_config(Path(args.config) if args.config else default_config_path(), ["device=cpu", *args.overrides[1:]])
    crop = int(cfg.data.kwargs.get("crop", 64))
    test = create_dataset("photos", "test", num_examples=int(getattr(args, "test_crops", 0) or 256), crop=crop)
    run_dir = Path(cfg.run_dir)
    metrics: dict[str, float] = {}
    model_dir, train_seconds = train_or_reuse(
        cfg, args, f"{crop}x{crop} photo crops ({torch.get_num_threads()} threads); run directory {run_dir}"
    )
    if train_seconds is not None:
        metrics["train_seconds"] = train_seconds
    t0 = time.perf_counter()
    print(f"evaluating on {len(test)} test crops, then bisecting JPEG and WebP quality per crop")
    model = BaseTokenizer.from_pretrained(model_dir)
    result = evaluate(model, test, batch_size=64)
    metrics.update(result.metrics)
    budget = metrics["bits_per_example"]
    rows = codec_rows(test.images.permute(0, 2, 3, 1).numpy(), budget)
    metrics["eval_seconds"] = time.perf_counter() - t0
    clock.stamp(metrics)
    out = run_dir / "eval"
    title = f"{model.architecture} on {crop}x{crop} photo crops (test photos)"
    page = find_modality("image").write_report(
        out / "report", metrics, result.originals, result.recons, result.counts, title
    )
    write_json(out / "demo.json", metrics)
    write_json(out / "codecs.json", {"budget_bits": budget, "rows": rows})
    keys = ("psnr", "ssim", "usage", "perplexity", "codebook_size", "tokens_per_example", "bits_per_example",
            "bits_per_pixel", "examples", "train_seconds", "eval_seconds", "total_seconds", "cpu_seconds", "threads",
            "load_start", "load_end")  # fmt: skip
    print()
    print(format_metrics_table({k: metrics[k] for k in keys if k in metrics}))
    print(f"\nJPEG / WebP at {budget:.0f} bits per crop (quality bisected per crop; 'fits' = share within budget):")
    print(_format_rows(rows))
    print(f"\nmetrics: {out / 'demo.json'}\ncodecs:  {out / 'codecs.json'}\nreport:  {page}")
    train = f"training {metrics['train_seconds']:.0f} s wall, " if "train_seconds" in metrics else ""
    print(
        f"time: {train}total {metrics['total_seconds']:.0f} s wall, {metrics['cpu_seconds']:.0f} s CPU "
        f"(process time, all {metrics['threads']:.0f} threads; load average {metrics['load_start']:.1f} at the "
        f"start, {metrics['load_end']:.1f} at the end)"
    )
    return 0
