"""Fast exact kernels: nearest-code search, entropy terms, beam search."""

from .beam import beam_search as beam_search
from .entropy import exact_codebook_entropy as exact_codebook_entropy
from .entropy import factorized_codebook_entropy as factorized_codebook_entropy
from .nearest import nearest as nearest

__all__ = ["beam_search", "exact_codebook_entropy", "factorized_codebook_entropy", "nearest"]
