"""Process-group setup for ``torchrun`` (gloo on CPU, NCCL on CUDA; a no-op in a single process).

The implementation lives in :mod:`vqtok._dist`, shared by every package; these names stay importable from here.
"""

from __future__ import annotations

from typing import Any

from .. import _dist
from .._dist import DistInfo, setup_distributed, teardown_distributed

__all__ = ["DistInfo", "setup_distributed", "teardown_distributed", "all_gather_objects"]


def all_gather_objects(obj: Any, info: DistInfo | None = None) -> list[Any]:
    """Every rank's ``obj`` in rank order; ``info`` is accepted for older callers and not needed."""
    return _dist.all_gather_objects(obj)
