"""Training configs: one dataclass tree that YAML/JSON files and ``key=value`` overrides map onto.

Every value is converted to its field's type (:func:`vqtok._config.config_from_dict`): ``optim.lr=1e-3`` is a float
whether it comes from YAML (which reads ``1e-3`` as a string) or the command line, and ``steps=abc`` is refused
with a message naming ``steps`` and ``int``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._config import apply_overrides, config_from_dict, config_to_dict
from ..tokenizers import tokenizer_class

__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "load_config"]


@dataclass
class DataConfig:
    """Which data set to train on: a built-in one by ``name``, or your own by ``path`` (see docs/data.md).

    Attributes:
        name: Registered data set (see :func:`vqtok.data.list_datasets`); ignored when ``path`` is set.
        split: ``"train"`` or ``"test"`` (also the split of a saved Hugging Face ``DatasetDict``).
        kwargs: Extra arguments of the data set factory.
        num_workers: ``DataLoader`` worker processes; 0 loads in the training process.
        path: Your own data: a folder of images or audio files, ``.npy``/``.npz``, Parquet, a folder saved by
            Hugging Face ``datasets``, or ``.tar`` shards (local or any ``fsspec`` URL, ``{000..099}`` ranges).
        column: Parquet/HF column, ``.npz`` array or tar member extension holding the signal (``None``: guessed).
        transform: Images: ``random_resized_crop``, ``center_crop``, ``resize`` or ``none`` (same size only).
        crop_scale: Area fraction range of the random resized crop.
        segment_seconds: Audio crop length (``None``: ``kwargs.segment_seconds``, else 1 s).
        channel: Audio: keep this file channel instead of mixing down to the model's channels.
        max_bad_fraction: Unreadable examples are skipped with a warning; more than this fraction stops the run.
        shuffle_buffer: Samples each shard reader shuffles over.
    """

    name: str = "fashion_mnist"
    split: str = "train"
    kwargs: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 0
    path: str | None = None
    column: str | None = None
    transform: str = "random_resized_crop"
    crop_scale: tuple[float, float] = (0.35, 1.0)
    segment_seconds: float | None = None
    channel: int | None = None
    max_bad_fraction: float = 0.01
    shuffle_buffer: int = 1000

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"data.max_bad_fraction must lie in [0, 1], got {self.max_bad_fraction}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine (or constant) decay.

    Attributes:
        lr: Peak learning rate.
        betas: Adam betas.
        weight_decay: Decoupled weight decay.
        warmup_steps: Linear warm-up length.
        schedule: ``"cosine"`` or ``"constant"`` after warm-up.
        min_lr_ratio: Final learning rate of the cosine schedule, as a fraction of ``lr``.
        grad_clip: Max global gradient norm; 0 disables clipping.
        disc_lr: Learning rate of the discriminator (``None``: same as ``lr``).
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    disc_lr: float | None = None


@dataclass
class TrainConfig:
    """Everything one training run needs; saved resolved as ``config.yaml`` in the run directory.

    Attributes:
        version: Schema version of this config.
        tokenizer: Registered tokenizer name.
        model: Config fields of that tokenizer (validated against its config dataclass).
        data: Training data.
        optim: Optimizer and schedule.
        steps: Total optimizer steps.
        batch_size: Global batch size (split evenly over ranks).
        seed: Seed of model init, data order and every random choice.
        precision: ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"bf16"`` or ``"fp32"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        run_dir: Output directory (checkpoint, logs, final model).
        log_every: Steps between JSONL log lines.
        ckpt_every: Steps between atomic checkpoints (0: only at the end).
        find_unused_parameters: Passed to DDP, for tokenizers whose forward skips some parameters.
        eval_data: Data set evaluated after training by ``vqtok demo`` (``None``: the training set's test split).
        max_nonfinite_steps: Consecutive non-finite steps (loss or gradient NaN/Inf) after which the run stops
            with ``FloatingPointError``; each such step is skipped (see :class:`vqtok.train.Trainer`).
    """

    version: int = 1
    tokenizer: str = "image2d"
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1000
    batch_size: int = 128
    seed: int = 0
    precision: str = "auto"
    device: str = "auto"
    run_dir: str = "runs/default"
    log_every: int = 50
    ckpt_every: int = 500
    find_unused_parameters: bool = False
    eval_data: str | None = None
    max_nonfinite_steps: int = 10

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be >= 0 and batch_size >= 1")
        if not isinstance(self.max_nonfinite_steps, int) or self.max_nonfinite_steps < 1:
            raise ValueError(f"max_nonfinite_steps must be an integer >= 1, got {self.max_nonfinite_steps!r}")

    def validate_model(self) -> None:
        """Checks ``model`` against the tokenizer's config dataclass (unknown keys raise ``ValueError``)."""
        config_from_dict(tokenizer_class(self.tokenizer).config_class, self.model, prefix="model.")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


def _read_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"config file {str(path)!r} is not valid YAML: {err}") from err
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"config file {str(path)!r} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must hold a mapping at the top level")
    return data


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Reads a YAML/JSON config file (or the defaults), applies dotted ``key=value`` overrides, validates.

    Raises:
        ValueError: On unknown keys at any level (including the tokenizer's own fields).
    """
    data = _read_mapping(path) if path is not None else {}
    cfg = config_from_dict(TrainConfig, data)
    if overrides:
        merged = apply_overrides(cfg.to_dict(), overrides, schema=cfg)
        cfg = config_from_dict(TrainConfig, merged)
    # Keys under `model` are the tokenizer config's fields, so they get their own unknown-key check.
    cfg.validate_model()
    return cfg
