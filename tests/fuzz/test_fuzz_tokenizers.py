"""Fuzz every registered tokenizer family with hostile signals and indices (issue 17).

Signals are drawn in the family's modality layout ``(B, C, *sizes)`` (sizes from a small menu, so some fit
the model and some do not) with any dtype and hostile values; indices are the model's own, shifted, cast or
reshaped. Families registered later get default configs unless listed in ``TINY``.
"""

from __future__ import annotations

import pytest
import torch
from fuzz_helpers import assert_documented, hostile_tensors
from hypothesis import given
from hypothesis import strategies as st

from vqtok.modalities import find_modality
from vqtok.tokenizers import BaseTokenizer, Tokenizer, create_tokenizer, list_tokenizers, tokenizer_class

TINY = {
    "image2d": {"in_channels": 1, "image_size": (8, 8), "downsample": 2, "channels": (8, 16)},
    "image1d": {
        "in_channels": 1,
        "image_size": (8, 8),
        "patch_size": 4,
        "num_tokens": 4,
        "width": 16,
        "encoder_depth": 1,
        "decoder_depth": 1,
        "heads": 2,
    },
    "audio": {"sample_rate": 8000, "strides": (2, 2), "channels": 4},
    "action": {"channels": 2, "chunk_size": 4, "tokens_per_chunk": 2, "width": 8},
    "video": {"in_channels": 1, "channels": (4, 8, 8), "frame_padding": "repeat_last"},
}
QUANTIZER = {"quantizer": "vq", "quantizer_kwargs": {"dim": 8, "codebook_size": 16}}


def _chunks(n: int = 200, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(n, 2, 8, generator=g)).cumsum(-1)


def _nodepiece() -> BaseTokenizer:
    from vqtok.testing.graphs import karate
    from vqtok.tokenizers import NodePieceTokenizer

    types = torch.tensor([i % 2 for i in range(78)])
    return NodePieceTokenizer.fit(karate(), 34, types, num_anchors=6, anchors_per_node=3, relations_per_node=2)


def _fast() -> BaseTokenizer:
    from vqtok.tokenizers import FASTTokenizer

    return FASTTokenizer(2, 8, scale=8.0, vocab_size=300).fit(_chunks())


# Fitted tokenizers are built by fitting, with a valid probe batch each.
FITTED = {
    "fast": (_fast, lambda: _chunks(2, seed=1)),
    "nodepiece": (_nodepiece, lambda: torch.tensor([0, 5, 33])),
}


try:  # registers the hf_* adapter families, so the parametrization does not depend on which tests ran first
    import vqtok.adapters  # noqa: F401
except ImportError:
    pass


def _families() -> list[str]:
    names = []
    for name in list_tokenizers():
        try:
            tokenizer_class(name)
        except ValueError:  # a preset variant of a family, not a family
            continue
        names.append(name)
    return names


FAMILIES = _families()
_CACHE: dict[str, BaseTokenizer] = {}


def _build(name: str) -> BaseTokenizer:
    if name not in _CACHE:
        torch.manual_seed(0)
        if name in FITTED:
            _CACHE[name] = FITTED[name][0]().eval()
        else:
            cfg = {**QUANTIZER, **TINY[name]} if name in TINY else {}
            try:
                _CACHE[name] = create_tokenizer(name, **cfg).eval()
            except ValueError as err:
                # Adapters of external models (hf_*) need that model's config; tests/adapters covers them.
                pytest.skip(f"{name} cannot be built from its defaults: {err}")
    return _CACHE[name]


def _probe(name: str, tok: BaseTokenizer) -> torch.Tensor:
    """A batch of two valid signals."""
    if name in FITTED:
        return FITTED[name][1]()
    modality = find_modality(tok.modality)
    channels = modality.read_options(tok.config).channels if modality is not None else 1
    return torch.rand(2, channels, *([8] * ((modality.example_ndim if modality else 2) - 1)))


def _shape(tok: BaseTokenizer, data: st.DataObject) -> tuple[int, ...]:
    modality = find_modality(tok.modality)
    ndim = modality.example_ndim if modality is not None else 2
    channels = modality.read_options(tok.config).channels if modality is not None else None
    batch = data.draw(st.integers(0, 3), label="batch")
    if ndim == 0:
        return (batch, *data.draw(st.sampled_from([(), (), (2,)]), label="extra"))
    c = data.draw(st.sampled_from([channels or 1, channels or 1, 1, 3]), label="channels")
    sizes = [data.draw(st.sampled_from([8, 8, 16, 4, 7, 1, 0]), label="size") for _ in range(ndim - 1)]
    return (batch, c, *sizes)


def _check_output(tok: BaseTokenizer, x: torch.Tensor, indices: torch.Tensor) -> None:
    if isinstance(tok, Tokenizer):
        assert x.is_floating_point(), f"accepted a {x.dtype} signal"
    assert not x.is_complex() and torch.isfinite(x.float()).all(), "accepted a non-finite or complex signal"
    assert indices.dtype == torch.int64 and indices.shape[0] == x.shape[0]
    if tok.pad_index is None and indices.numel():
        assert int(indices.min()) >= 0 and int(indices.max()) < tok.codebook_size
    recon = tok.decode(indices)
    assert recon.shape[0] == x.shape[0], f"recon {tuple(recon.shape)} for input {tuple(x.shape)}"
    assert not recon.is_floating_point() or torch.isfinite(recon).all(), "decode of valid indices is not finite"


@pytest.mark.parametrize("name", FAMILIES)
@given(data=st.data())
def test_signals(name: str, data: st.DataObject) -> None:
    tok = _build(name)
    x = data.draw(hostile_tensors(_shape(tok, data)), label="signal")
    try:
        indices = tok.encode(x)
    except Exception as err:  # noqa: BLE001 - the assertion is the point
        assert_documented(err)
        return
    _check_output(tok, x, indices)


@pytest.mark.parametrize("name", FAMILIES)
@given(data=st.data())
def test_decode_indices(name: str, data: st.DataObject) -> None:
    tok = _build(name)
    valid = tok.encode(_probe(name, tok))
    kind = data.draw(st.sampled_from(["valid", "shifted", "float", "drop_axis", "add_axis", "empty"]), label="kind")
    indices = {
        "valid": lambda: valid,
        "shifted": lambda: valid + data.draw(st.sampled_from([-(10**6), 10**6, -(2**40)])),
        "float": lambda: valid.double(),
        "drop_axis": lambda: valid[..., 0],
        "add_axis": lambda: valid[..., None],
        "empty": lambda: valid[:0],
    }[kind]()
    try:
        recon = tok.decode(indices)
    except Exception as err:  # noqa: BLE001
        assert_documented(err)
        return
    # A video tokenizer also decodes image grids, one axis fewer (a 1-frame clip is an image).
    image_grid = kind == "drop_axis" and getattr(tok, "decodes_image_grids", False)
    assert kind in ("valid", "empty") or image_grid, (
        f"decode accepted {kind} indices {tuple(indices.shape)} {indices.dtype}"
    )
    assert torch.isfinite(recon).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_float_dtypes_are_cast_to_the_model(name: str) -> None:
    """Issue 17: fp64/fp16/bf16 signals are accepted (cast to the model's dtype), like the quantizers."""
    tok = _build(name)
    if not isinstance(tok, Tokenizer):
        pytest.skip(f"{name} is a fitted tokenizer without parameters to cast to")
    x = _probe(name, tok)
    ref = tok.encode(x)
    assert torch.equal(tok.encode(x.double()), ref)
    for dtype in (torch.float16, torch.bfloat16):
        # Rounding the input to 16 bits may move a few borderline tokens; most must agree.
        assert (tok.encode(x.to(dtype)) == ref).float().mean() > 0.5
    with pytest.raises(ValueError, match="floating point"):
        tok.encode((x * 255).to(torch.uint8))
