"""``vqtok demo``: train image2d + VQ on Fashion-MNIST on the CPU, evaluate on the 10k test split, report.

Uses ``configs/fashion_mnist_vq.yaml`` of the source checkout. A finished run in the run directory is reused
(pass ``--force`` to retrain), and an interrupted one is resumed from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ._args import positive_int
from ._clock import TIMING_ROWS, RunClock
from ._demo_train import train_or_reuse

__all__ = ["add_parser", "run", "default_config_path"]


def default_config_path() -> Path:
    return Path(__file__).resolve().parents[2] / "configs" / "fashion_mnist_vq.yaml"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="train and evaluate the default Fashion-MNIST demo (or `demo video`, `demo photos`) on the CPU"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="overrides of the demo config; a leading `video` runs the video demo, `photos` the colour photos demo",
    )
    p.add_argument("--config", default=None, help="config file (default: configs/fashion_mnist_vq.yaml)")
    p.add_argument("-f", "--force", action="store_true", help="retrain even if the run directory has a model")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch intra-op threads (default: torch's, one per core); on a busy machine 1 is much faster than 2",
    )
    p.set_defaults(func=run)


# Metrics shown by the demo, in this order, with their labels; the full set goes to eval/metrics.json.
_TABLE = (
    ("psnr", "test PSNR (dB)"),
    ("ssim", "test SSIM"),
    ("mse", "test MSE"),
    ("usage", "codebook usage"),
    ("perplexity", "code perplexity"),
    ("codebook_size", "codebook size"),
    ("tokens_per_example", "tokens / image"),
    ("bits_per_example", "bits / image"),
    ("compression_ratio", "compression ratio"),
    ("examples", "test images"),
    *TIMING_ROWS,
)


def run(args: argparse.Namespace) -> int:
    if args.overrides[:1] == ["photos"]:
        # `vqtok demo photos [key=value ...]`: the colour demo with JPEG/WebP baselines (configs/photos64_cpu.yaml).
        from .demo_photos import run as run_photos

        return run_photos(args)
    if args.overrides and args.overrides[0] == "video":
        from .demo_video import run_video

        return run_video(args, args.overrides[1:])
    import torch

    from ..data import create_dataset
    from ..metrics.report import format_metrics_table
    from ._args import load_config
    from .evaluate import evaluate_to_report

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = RunClock()
    path = Path(args.config) if args.config else default_config_path()
    cfg = load_config(path, ["device=cpu", *args.overrides])
    # Fail before training if the data is missing: the error names the apt package.
    create_dataset(cfg.data.name, "test")
    run_dir = Path(cfg.run_dir)
    model_dir, train_seconds = train_or_reuse(
        cfg, args, f"on {cfg.data.name} ({torch.get_num_threads()} threads); run directory {run_dir}"
    )
    t0 = time.perf_counter()
    print(f"evaluating on the {cfg.eval_data or cfg.data.name} test split")
    metrics, page = evaluate_to_report(model_dir, cfg.eval_data or cfg.data.name, "test", run_dir / "eval")
    metrics = dict(metrics)
    if train_seconds is not None:
        metrics["train_seconds"] = train_seconds
    metrics["eval_seconds"] = time.perf_counter() - t0
    clock.stamp(metrics)
    with open(run_dir / "eval" / "demo.json", "w") as f:
        json.dump(metrics, f, indent=2)
    shown = {label: metrics[key] for key, label in _TABLE if key in metrics}
    print()
    print(format_metrics_table(shown))
    print(f"\nmetrics: {run_dir / 'eval' / 'demo.json'}\nmodel:   {model_dir}\nreport:  {page}")
    return 0
