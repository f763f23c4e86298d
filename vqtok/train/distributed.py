"""Process-group setup for ``torchrun`` (gloo on CPU, NCCL on CUDA; a no-op in a single process).

The implementation lives in :mod:`vqtok._dist`, shared by every package; these names stay importable from here.
"""

from __future__ import annotations

from .._dist import DistInfo, all_gather_objects, setup_distributed, teardown_distributed

__all__ = ["DistInfo", "setup_distributed", "teardown_distributed", "all_gather_objects"]
