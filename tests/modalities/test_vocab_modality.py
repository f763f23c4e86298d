"""MultimodalVocab uses the modality the caller names and never matches shapes against the other modalities."""

from __future__ import annotations

import pytest
import torch

from vqtok.tokenizers import create_tokenizer
from vqtok.vocab import MultimodalVocab, train_bpe

pytest.importorskip("tokenizers")
TINY = {"image_size": (8, 8), "downsample": 2, "channels": (8, 16), "quantizer": "vq"}


@pytest.fixture(scope="module")
def vocab() -> MultimodalVocab:
    torch.manual_seed(0)
    # Two modalities that accept exactly the same shapes: only the caller can say which one a tensor is.
    a = create_tokenizer("image2d", in_channels=1, quantizer_kwargs={"dim": 8, "codebook_size": 16}, **TINY)
    b = create_tokenizer("image2d", in_channels=1, quantizer_kwargs={"dim": 8, "codebook_size": 32}, **TINY)
    return MultimodalVocab(train_bpe(["a b c d e"] * 10, vocab_size=260), {"depth": a, "mask": b}, max_grid_size=16)


def test_named_modality_is_used_as_given(vocab: MultimodalVocab, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.rand(1, 8, 8)
    calls: list[str] = []
    for name, tok in vocab.tokenizers.items():
        original = tok.check_signal

        def spy(signal, _name=name, _original=original):  # type: ignore[no-untyped-def]
            calls.append(_name)
            return _original(signal)

        monkeypatch.setattr(tok, "check_signal", spy)
    for name in ("depth", "mask"):
        calls.clear()
        ids = vocab.encode([(name, x)])
        assert calls == [name], f"encoding a named {name!r} part consulted {calls}"
        assert vocab.split(ids)[0].modality == name
    # A bare tensor that fits both is refused rather than guessed.
    with pytest.raises(ValueError, match="several modalities"):
        vocab.encode([x])


def test_named_modality_errors_name_it(vocab: MultimodalVocab) -> None:
    with pytest.raises(ValueError, match="modality 'mask'.*expects images"):
        vocab.encode([("mask", torch.rand(3, 8, 8))])
    with pytest.raises(ValueError, match="unknown modality 'video'"):
        vocab.encode([("video", torch.rand(1, 8, 8))])
