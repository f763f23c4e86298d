"""Compatibility with other quantization libraries: convert their modules to vqtok quantizers."""

from .vqp import VQTOK_NAMES as VQTOK_NAMES
from .vqp import from_vector_quantize_pytorch as from_vector_quantize_pytorch
from .vqp import reverse_bits as reverse_bits

__all__ = ["VQTOK_NAMES", "from_vector_quantize_pytorch", "reverse_bits"]
