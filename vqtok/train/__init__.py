"""Training: one loop for every tokenizer, single process or DDP, with exact resume."""

from .config import DataConfig as DataConfig
from .config import OptimConfig as OptimConfig
from .config import TrainConfig as TrainConfig
from .config import load_config as load_config
from .evaluate import evaluate as evaluate
from .trainer import Trainer as Trainer
from .trainer import TrainResult as TrainResult
from .trainer import seed_everything as seed_everything

__all__ = [
    "DataConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "load_config",
    "seed_everything",
]
