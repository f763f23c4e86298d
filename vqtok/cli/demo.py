"""``vqtok demo``: train image2d + VQ on Fashion-MNIST on the CPU, evaluate on the 10k test split, report.

Uses ``configs/fashion_mnist_vq.yaml`` of the source checkout. A finished run in the run directory is reused
(pass ``--force`` to retrain), and an interrupted one is resumed from its last checkpoint.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_parser", "run", "default_config_path"]


def default_config_path() -> Path:
    return Path(__file__).resolve().parents[2] / "configs" / "fashion_mnist_vq.yaml"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train and evaluate the default Fashion-MNIST demo on the CPU")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the demo config")
    p.add_argument("--config", default=None, help="config file (default: configs/fashion_mnist_vq.yaml)")
    p.add_argument("-f", "--force", action="store_true", help="retrain even if the run directory has a model")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import create_dataset
    from ..metrics.report import format_metrics_table
    from ..train import Trainer, load_config
    from .evaluate import evaluate_to_report

    path = Path(args.config) if args.config else default_config_path()
    cfg = load_config(path, ["device=cpu", *args.overrides])
    # Fail before training if the data is missing: the error names the apt package.
    create_dataset(cfg.data.name, "test")
    run_dir = Path(cfg.run_dir)
    model_dir = run_dir / "model"
    train_seconds = None
    if args.force or not (model_dir / "config.json").is_file():
        t0 = time.perf_counter()
        trainer = Trainer(cfg, resume=not args.force, force=args.force, progress=not args.no_progress)
        result = trainer.fit()
        train_seconds = time.perf_counter() - t0
        model_dir = result.model_dir or model_dir
    else:
        print(f"reusing the trained model in {model_dir} (pass --force to retrain)")
    t0 = time.perf_counter()
    metrics, page = evaluate_to_report(model_dir, cfg.eval_data or cfg.data.name, "test", run_dir / "eval")
    metrics = dict(metrics)
    if train_seconds is not None:
        metrics["train_seconds"] = train_seconds
    metrics["eval_seconds"] = time.perf_counter() - t0
    print(format_metrics_table(metrics))
    print(f"model:   {model_dir}\nreport:  {page}")
    return 0
