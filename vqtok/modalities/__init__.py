"""Modality descriptors: file readers, value rules, fidelity metrics and report panels per kind of signal.

``get_modality(tokenizer.modality)`` gives the :class:`Modality` of a tokenizer; ``register_modality`` adds
one. Importing this package registers ``image``, ``audio``, ``timeseries``, ``graph`` and ``video``.
"""

from ._arrays import load_npy as load_npy
from ._registry import find_modality as find_modality
from ._registry import get_modality as get_modality
from ._registry import list_modalities as list_modalities
from ._registry import modality_for_suffix as modality_for_suffix
from ._registry import register_modality as register_modality
from .base import Modality as Modality
from .base import Panel as Panel
from .base import ReadOptions as ReadOptions
from .base import batch_from_array as batch_from_array

# isort: split
# Importing each module registers its descriptor.
from .audio import AUDIO as AUDIO
from .audio import read_wav as read_wav
from .graph import GRAPH as GRAPH
from .image import IMAGE as IMAGE
from .image import read_image as read_image
from .timeseries import TIMESERIES as TIMESERIES
from .video import VIDEO as VIDEO
from .video import read_video as read_video

__all__ = [
    "AUDIO",
    "GRAPH",
    "IMAGE",
    "Modality",
    "Panel",
    "ReadOptions",
    "TIMESERIES",
    "VIDEO",
    "batch_from_array",
    "find_modality",
    "get_modality",
    "list_modalities",
    "load_npy",
    "modality_for_suffix",
    "read_image",
    "read_video",
    "read_wav",
    "register_modality",
]
