"""Quantizers: one method per module, all behind the :class:`Quantizer` contract.

Importing a family module registers it, so every family is imported here.
"""

from typing import Any as _Any

from ._registry import create as create
from ._registry import example_config as example_config
from ._registry import list_quantizers as list_quantizers
from ._registry import register_quantizer as register_quantizer
from .anchor import AnchorQuantizer as AnchorQuantizer
from .aq import AQ as AQ
from .base import Quantizer as Quantizer
from .base import QuantizerOutput as QuantizerOutput
from .base import skip_input_checks as skip_input_checks
from .bsq import BSQ as BSQ
from .fsq import FSQ as FSQ
from .lfq import LFQ as LFQ
from .lfq import GroupLFQ as GroupLFQ
from .pq import PQ as PQ
from .pvq import PVQ as PVQ
from .rvq import GroupedResidualQuantizer as GroupedResidualQuantizer
from .rvq import ResidualQuantizer as ResidualQuantizer
from .vq import VQ as VQ

__all__ = [
    "AnchorQuantizer",
    "AQ",
    "BSQ",
    "FSQ",
    "GroupLFQ",
    "LFQ",
    "GroupedResidualQuantizer",
    "PQ",
    "PVQ",
    "Quantizer",
    "QuantizerOutput",
    "ResidualQuantizer",
    "VQ",
    "create",
    "example_config",
    "list_quantizers",
    "register_quantizer",
    "skip_input_checks",
]


def __getattr__(name: str) -> _Any:
    # ``AnchorTokenizer`` (the NodePiece graph tokenizer) moved up to the tokenizers layer.
    if name == "AnchorTokenizer":
        from . import anchor

        return anchor.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
