"""Tokenizers and a training run small enough for a test: image2d on 8x8 grey images, audio at 8 kHz."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["TINY_AUDIO", "TINY_IMAGE2D", "tiny_image_run", "tiny_image_yaml"]

#: ``create_tokenizer("image2d", **TINY_IMAGE2D)``: 8x8 grey images, 4x4 tokens of a 32-code VQ.
TINY_IMAGE2D: dict[str, Any] = {
    "in_channels": 1,
    "image_size": (8, 8),
    "downsample": 2,
    "channels": (8, 16),
    "quantizer": "vq",
    "quantizer_kwargs": {"dim": 8, "codebook_size": 32},
}

#: ``create_tokenizer("audio", **TINY_AUDIO)``: mono 8 kHz, hop 4, two residual levels of 16 codes.
TINY_AUDIO: dict[str, Any] = {
    "sample_rate": 8000,
    "strides": (2, 2),
    "channels": 4,
    "res_dilations": (1,),
    "fft_sizes": (32, 64),
    "quantizer_kwargs": {"dim": 8, "codebook_size": 16, "num_levels": 2},
}


def tiny_image_run(*overrides: str) -> list[str]:
    """Dotted ``key=value`` overrides (``vqtok train``, :func:`vqtok.train.load_config`) of a training run of
    :data:`TINY_IMAGE2D` on the synthetic data set on CPU, followed by ``overrides`` (which win)."""
    model = [f"model.{key}={json.dumps(value)}" for key, value in TINY_IMAGE2D.items()]
    return ["tokenizer=image2d", *model, "data.name=synthetic", "device=cpu", "optim.warmup_steps=2", *overrides]


def tiny_image_yaml(*overrides: str) -> str:
    """The text of a YAML config file for :func:`tiny_image_run` with ``overrides``."""
    import yaml

    from ..train import load_config

    return yaml.safe_dump(load_config(None, tiny_image_run(*overrides)).to_dict())
