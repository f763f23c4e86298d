"""``vqtok train CONFIG [key=value ...]``: train a tokenizer (also under ``torchrun``)."""

from __future__ import annotations

import argparse
import logging

from ._args import positive_int

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a tokenizer from a YAML/JSON config",
        description="Train a tokenizer. Overrides use dotted keys, e.g. steps=2000 model.quantizer_kwargs.dim=32; "
        "unknown keys are rejected. Your own data: data.path=FOLDER (images or audio), a .npy/.npz/.parquet file, a "
        "saved Hugging Face data set or tar shards such as 'shard-{000..099}.tar' (see docs/data.md). Launch with "
        "`torchrun --nproc_per_node N -m vqtok.cli train ...` for DDP.",
    )
    p.add_argument("config", help="YAML or JSON config file (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.add_argument("--resume", action="store_true", help="continue from run_dir/checkpoint.pt")
    p.add_argument("-f", "--force", action="store_true", help="restart even if run_dir holds a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--until-step", type=positive_int, default=None, help="stop after this step (time-boxed runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import Trainer
    from ._args import load_config

    cfg = load_config(args.config, args.overrides)
    result = Trainer(cfg, resume=args.resume, force=args.force, progress=not args.no_progress).fit(args.until_step)
    logger.info("stopped at step %d after %.1f s; run dir %s", result.step, result.seconds, result.run_dir)
    if result.model_dir is not None:
        logger.info("model saved to %s", result.model_dir)
    return 0
