"""Argument types shared by the subcommands: numbers are checked when parsed, so the error names the flag."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["load_config", "positive_int"]


def positive_int(text: str) -> int:
    """``argparse`` type of counts and sizes (``--batch-size``, ``--max-examples`` ...): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {value}")
    return value


def load_config(path: str | os.PathLike[str], overrides: list[str]) -> Any:
    """:func:`vqtok.train.load_config` with YAML syntax errors reported as ``ValueError`` naming the file."""
    import yaml

    from ..train import load_config as load

    if Path(path).is_dir():
        raise ValueError(f"config {str(path)!r} is a folder, not a YAML or JSON file")
    try:
        return load(path, overrides)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ValueError(f"config {str(path)!r} is not valid YAML{at}: {getattr(err, 'problem', None) or err}") from err
