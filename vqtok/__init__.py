"""vqtok: turn continuous signals into discrete tokens and back."""

from . import kernels as kernels
from . import metrics as metrics
from . import quantizers as quantizers
from .quantizers import FSQ as FSQ
from .quantizers import Quantizer as Quantizer
from .quantizers import QuantizerOutput as QuantizerOutput
from .quantizers import create as create_quantizer
from .quantizers import list_quantizers as list_quantizers
from .version import __version__ as __version__

__all__ = [
    "FSQ",
    "Quantizer",
    "QuantizerOutput",
    "__version__",
    "create_quantizer",
    "kernels",
    "list_quantizers",
    "metrics",
    "quantizers",
]
