"""The demos' first step: train the configured model, or reuse the one a previous run left."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = ["train_or_reuse"]


def train_or_reuse(cfg: Any, args: argparse.Namespace, what: str) -> tuple[Path, float | None]:
    """Trains ``cfg`` unless ``run_dir/model`` holds a trained model (``--force`` retrains).

    Args:
        cfg: The loaded training config.
        args: The demo's arguments (``force``, ``no_progress``).
        what: End of the "training ... for S steps of B <what>" line, e.g. ``"clips"``.

    Returns:
        ``(model folder, training wall seconds or None when the model was reused)``.
    """
    from ..train import Trainer

    run_dir = Path(cfg.run_dir)
    model_dir = run_dir / "model"
    if not args.force and (model_dir / "config.json").is_file():
        print(f"reusing the trained model in {model_dir} (pass --force to retrain)")
        return model_dir, None
    print(f"training {cfg.tokenizer} + {cfg.model.get('quantizer')} for {cfg.steps} steps of {cfg.batch_size} {what}")
    t0 = time.perf_counter()
    # Resume an interrupted run; a fresh one has no checkpoint (asking to resume it would only log a warning).
    resume = not args.force and (run_dir / "checkpoint.pt").is_file()
    result = Trainer(cfg, resume=resume, force=args.force, progress=not args.no_progress).fit()
    return result.model_dir or model_dir, time.perf_counter() - t0
