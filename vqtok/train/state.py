"""What the trainer passes around and restores: step and run results, seeding and RNG state, the schedule, logs."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._dist import DistInfo, all_reduce_mean
from ..metrics import CodebookUsage
from .config import TrainConfig

__all__ = [
    "StepResult",
    "TrainResult",
    "collate",
    "lr_lambda",
    "reduce_logs",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]


@dataclass
class TrainResult:
    """Summary of a finished (or stopped) run."""

    run_dir: Path
    step: int
    last_metrics: dict[str, float]
    model_dir: Path | None
    seconds: float


@dataclass
class StepResult:
    """What one optimizer step reports.

    Attributes:
        logs: Scalar terms to average and log (``loss``, ``grad_norm``, the model's losses and metrics, ...).
        indices: The step's int64 token indices (detached), for the codebook usage meter.
    """

    logs: dict[str, float]
    indices: Tensor


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def collate(items: Any) -> Any:
    """Stacks a list of tensors (or of dicts of tensors); passes through an already batched tensor/dict."""
    if isinstance(items, (Tensor, dict)):
        return items
    first = items[0]
    if isinstance(first, dict):
        return {k: torch.stack([it[k] for it in items]) for k in first}
    return torch.stack(list(items))


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_lambda(cfg: TrainConfig) -> Any:
    warm, total, floor = cfg.optim.warmup_steps, max(cfg.steps, 1), cfg.optim.min_lr_ratio

    def fn(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.optim.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


def reduce_logs(info: DistInfo, sums: dict[str, float], count: int, meter: CodebookUsage | None) -> dict[str, float]:
    """Averages the logged sums over steps and ranks and adds the codebook usage of the window."""
    keys = sorted(sums)
    values = torch.tensor([sums[k] / max(count, 1) for k in keys], dtype=torch.float64)
    values = all_reduce_mean(values)  # a no-op in one process; moves to the NCCL device when needed
    out = {k: float(v) for k, v in zip(keys, values.tolist(), strict=True)}
    if meter is not None:
        stats = meter.compute()
        out.update(usage=stats["usage"], perplexity=stats["perplexity"], dead_codes=float(stats["dead_codes"]))
    return out
