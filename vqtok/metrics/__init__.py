"""Metrics: codebook health and reconstruction fidelity."""

from .codebook import CodebookUsage as CodebookUsage
from .codebook import bits_per_token as bits_per_token
from .codebook import code_counts as code_counts
from .codebook import perplexity as perplexity
from .codebook import usage as usage

__all__ = ["CodebookUsage", "bits_per_token", "code_counts", "perplexity", "usage"]
