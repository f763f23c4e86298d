"""vqtok: turn continuous signals into discrete tokens and back."""

from . import kernels as kernels
from . import metrics as metrics
from . import quantizers as quantizers
from . import tokenizers as tokenizers
from . import vectors as vectors
from . import vocab as vocab
from . import weights as weights
from .quantizers import AQ as AQ
from .quantizers import BSQ as BSQ
from .quantizers import FSQ as FSQ
from .quantizers import LFQ as LFQ
from .quantizers import PVQ as PVQ
from .quantizers import VQ as VQ
from .quantizers import AnchorQuantizer as AnchorQuantizer
from .quantizers import GroupedResidualQuantizer as GroupedResidualQuantizer
from .quantizers import GroupLFQ as GroupLFQ
from .quantizers import Quantizer as Quantizer
from .quantizers import QuantizerOutput as QuantizerOutput
from .quantizers import ResidualQuantizer as ResidualQuantizer
from .quantizers import create as create_quantizer
from .quantizers import list_quantizers as list_quantizers
from .tokenizers import BaseTokenizer as BaseTokenizer
from .tokenizers import NodePieceTokenizer as AnchorTokenizer  # the name before NodePiece moved to tokenizers
from .tokenizers import NodePieceTokenizer as NodePieceTokenizer
from .tokenizers import Tokenizer as Tokenizer
from .tokenizers import TokenizerOutput as TokenizerOutput
from .tokenizers import create_tokenizer as create_tokenizer
from .tokenizers import list_tokenizers as list_tokenizers
from .version import __version__ as __version__
from .vocab import MultimodalVocab as MultimodalVocab

__all__ = [
    "AQ",
    "AnchorQuantizer",
    "AnchorTokenizer",
    "BSQ",
    "BaseTokenizer",
    "NodePieceTokenizer",
    "FSQ",
    "GroupLFQ",
    "LFQ",
    "PVQ",
    "GroupedResidualQuantizer",
    "Quantizer",
    "QuantizerOutput",
    "ResidualQuantizer",
    "VQ",
    "MultimodalVocab",
    "Tokenizer",
    "TokenizerOutput",
    "__version__",
    "create_quantizer",
    "create_tokenizer",
    "kernels",
    "list_quantizers",
    "list_tokenizers",
    "metrics",
    "quantizers",
    "tokenizers",
    "vectors",
    "vocab",
    "weights",
]
