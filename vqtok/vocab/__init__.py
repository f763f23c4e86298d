"""One vocabulary for text and media tokens (:class:`MultimodalVocab`) and byte-level BPE helpers."""

from .multimodal import MediaSegment as MediaSegment
from .multimodal import ModalityLayout as ModalityLayout
from .multimodal import MultimodalVocab as MultimodalVocab
from .text import load_text_tokenizer as load_text_tokenizer
from .text import train_bpe as train_bpe

__all__ = ["MediaSegment", "ModalityLayout", "MultimodalVocab", "load_text_tokenizer", "train_bpe"]
