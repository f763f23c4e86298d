"""Tokenizers behind one contract (`BaseTokenizer`): neural encoder -> quantizer -> decoder models and fitted ones."""

from .._io import CheckpointError as CheckpointError
from ._config import TokenizerConfig as TokenizerConfig
from ._config import config_from_dict as config_from_dict
from ._config import config_to_dict as config_to_dict
from ._registry import create_tokenizer as create_tokenizer
from ._registry import list_tokenizers as list_tokenizers
from ._registry import register_tokenizer as register_tokenizer
from ._registry import tokenizer_class as tokenizer_class
from .base import Tokenizer as Tokenizer
from .base import TokenizerOutput as TokenizerOutput
from .contract import BaseTokenizer as BaseTokenizer

# isort: split
# Importing each family registers it.
from .action import ActionConfig as ActionConfig
from .action import ActionTokenizer as ActionTokenizer
from .audio import AudioConfig as AudioConfig
from .audio import AudioTokenizer as AudioTokenizer
from .fast import FASTConfig as FASTConfig
from .fast import FASTTokenizer as FASTTokenizer
from .image1d import Image1dConfig as Image1dConfig
from .image1d import Image1dTokenizer as Image1dTokenizer
from .image2d import Image2dConfig as Image2dConfig
from .image2d import Image2dTokenizer as Image2dTokenizer
from .nodepiece import NodePieceConfig as NodePieceConfig
from .nodepiece import NodePieceTokenizer as NodePieceTokenizer
from .video import VideoConfig as VideoConfig
from .video import VideoTokenizer as VideoTokenizer


def from_pretrained(source: str, map_location: str = "cpu") -> Tokenizer:
    """Loads a vqtok checkpoint folder, or ``"hf:<repo id or folder>"`` behind its adapter (:mod:`vqtok.adapters`)."""
    return Tokenizer.from_pretrained(source, map_location=map_location)


__all__ = [
    "ActionConfig",
    "ActionTokenizer",
    "AudioConfig",
    "AudioTokenizer",
    "BaseTokenizer",
    "CheckpointError",
    "FASTConfig",
    "FASTTokenizer",
    "Image1dConfig",
    "Image1dTokenizer",
    "Image2dConfig",
    "Image2dTokenizer",
    "NodePieceConfig",
    "NodePieceTokenizer",
    "Tokenizer",
    "TokenizerConfig",
    "TokenizerOutput",
    "config_from_dict",
    "config_to_dict",
    "create_tokenizer",
    "from_pretrained",
    "list_tokenizers",
    "register_tokenizer",
    "tokenizer_class",
    "VideoConfig",
    "VideoTokenizer",
]
