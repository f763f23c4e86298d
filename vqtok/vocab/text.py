"""Byte-level BPE text tokenizers (Hugging Face ``tokenizers``) for :class:`~vqtok.vocab.MultimodalVocab`.

Byte-level BPE (Radford et al., "Language Models are Unsupervised Multitask Learners", 2019; BPE from
Sennrich et al., arXiv:1508.07909) maps every string to bytes before merging, so decoding the ids of any
text gives the text back exactly, whatever its script. Any ``tokenizer.json`` can be loaded instead; its
round trip is then only as exact as its normalizer and decoder allow.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer as TextTokenizer

__all__ = ["load_text_tokenizer", "text_vocab_size", "train_bpe"]


def _require_tokenizers() -> None:
    try:
        import tokenizers  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("MultimodalVocab needs the `tokenizers` package: pip install 'vqtok[data]'") from err


def train_bpe(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2) -> TextTokenizer:
    """Trains a byte-level BPE on ``texts``.

    Args:
        texts: Training strings.
        vocab_size: Target vocabulary size, including the 256 byte tokens.
        min_frequency: Pairs seen fewer times are never merged.

    Returns:
        A ``tokenizers.Tokenizer`` without special tokens (the multimodal vocabulary adds its own).

    Raises:
        ValueError: When ``vocab_size`` is below 256 (the byte alphabet would not fit).
    """
    _require_tokenizers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 256:
        raise ValueError(f"a byte-level BPE needs vocab_size >= 256, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    # No prefix space: it would add a character that decoding cannot tell from a real one.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_text_tokenizer(source: TextTokenizer | str | os.PathLike[str]) -> TextTokenizer:
    """Returns ``source`` itself, or loads a ``tokenizer.json`` file (or a directory holding one).

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the file is not a valid ``tokenizers`` JSON.
    """
    _require_tokenizers()
    from tokenizers import Tokenizer

    if isinstance(source, Tokenizer):
        return source
    path = os.fspath(source)
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"text tokenizer file {path!r} not found")
    try:
        return Tokenizer.from_file(path)
    except Exception as err:  # the Rust side raises a bare Exception on bad JSON
        raise ValueError(f"{path!r} is not a valid tokenizers JSON file: {err}") from err


def text_vocab_size(tok: TextTokenizer) -> int:
    """One past the largest id the text tokenizer can emit (added tokens included)."""
    ids = list(tok.get_vocab(with_added_tokens=True).values())
    return max(ids) + 1 if ids else 0
