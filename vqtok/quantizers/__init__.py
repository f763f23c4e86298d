"""Quantizers: one method per module, all behind the :class:`Quantizer` contract.

Importing a family module registers it, so every family is imported here. :class:`Residual` and
:class:`Grouped` compose any quantizer through its public methods; ``rvq``, ``grouped_rvq``, ``pq``,
``group_lfq``, ``residual_*`` and ``grouped_fsq`` are registrations over them (docs/quantizers.md).
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
from .grouped import Grouped as Grouped
from .grouped_scalar import GroupedFSQ as GroupedFSQ
from .grouped_scalar import GroupLFQ as GroupLFQ
from .ibq import IBQ as IBQ
from .latent import LatentQuantize as LatentQuantize
from .lfq import LFQ as LFQ
from .multiscale import MultiScaleResidual as MultiScaleResidual
from .pq import PQ as PQ
from .pvq import PVQ as PVQ
from .random_projection import RandomProjectionQuantizer as RandomProjectionQuantizer
from .residual import Residual as Residual
from .residual_scalar import ResidualBSQ as ResidualBSQ
from .residual_scalar import ResidualFSQ as ResidualFSQ
from .residual_scalar import ResidualLFQ as ResidualLFQ
from .rvq import GroupedResidualQuantizer as GroupedResidualQuantizer
from .rvq import ResidualQuantizer as ResidualQuantizer
from .vq import VQ as VQ

__all__ = [
    "AnchorQuantizer",
    "AQ",
    "BSQ",
    "FSQ",
    "GroupLFQ",
    "Grouped",
    "GroupedFSQ",
    "GroupedResidualQuantizer",
    "IBQ",
    "LatentQuantize",
    "LFQ",
    "MultiScaleResidual",
    "PQ",
    "PVQ",
    "Quantizer",
    "QuantizerOutput",
    "RandomProjectionQuantizer",
    "Residual",
    "ResidualBSQ",
    "ResidualFSQ",
    "ResidualLFQ",
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
