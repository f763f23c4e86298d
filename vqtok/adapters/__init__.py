"""Adapters: tokenizers the field already has (Hugging Face ``transformers`` models) behind vqtok's contract.

One file per model family; each registers itself under its ``transformers`` ``model_type`` and as the vqtok
tokenizer family ``hf_<model_type>``. :func:`load_hf` (also reached through
``vqtok.tokenizers.from_pretrained("hf:...")`` and the CLI's ``--model hf:...``) picks the adapter from a
folder's ``config.json``; :func:`from_hf_model` wraps an in-memory model. Needs the ``interop`` extra
(``pip install vqtok[interop]``).
"""

from .base import AdapterConfig as AdapterConfig
from .base import ExternalCodes as ExternalCodes
from .base import HFAdapter as HFAdapter
from .base import adapter_classes as adapter_classes
from .base import register_adapter as register_adapter
from .dac import DacAdapter as DacAdapter
from .encodec import EncodecAdapter as EncodecAdapter
from .hub import adapter_for_model as adapter_for_model
from .hub import from_hf_model as from_hf_model
from .hub import load_hf as load_hf
from .hub import resolve_hf as resolve_hf
from .janus import JanusVQAdapter as JanusVQAdapter
from .mimi import MimiAdapter as MimiAdapter

__all__ = [
    "AdapterConfig",
    "DacAdapter",
    "EncodecAdapter",
    "ExternalCodes",
    "HFAdapter",
    "JanusVQAdapter",
    "MimiAdapter",
    "adapter_classes",
    "adapter_for_model",
    "from_hf_model",
    "load_hf",
    "resolve_hf",
]
