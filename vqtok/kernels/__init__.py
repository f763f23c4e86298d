"""Fast exact kernels: nearest-code search, entropy terms, beam search."""

from .beam import beam_search as beam_search
from .nearest import nearest as nearest

__all__ = ["beam_search", "nearest"]
