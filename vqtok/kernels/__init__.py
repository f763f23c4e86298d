"""Fast exact kernels: nearest-code search, entropy terms, beam search."""

from .nearest import nearest as nearest

__all__ = ["nearest"]
