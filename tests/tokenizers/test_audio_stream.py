"""Causal audio codec: streaming with any chunking is bit-identical to whole-signal encode/decode."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vqtok.layers.conv1d import PaddedConv1d, PaddedConvTranspose1d
from vqtok.tokenizers import AudioTokenizer, Tokenizer, create_tokenizer

TINY = {
    "sample_rate": 8000,
    "strides": (2, 3),
    "channels": 4,
    "res_dilations": (1, 3),
    "fft_sizes": (32, 64),
    "quantizer_kwargs": {"dim": 8, "codebook_size": 16, "num_levels": 3, "quantizer_dropout": 0.5},
}
HOP = 6


def _model(causal: bool = True, activation: str = "elu") -> AudioTokenizer:
    torch.manual_seed(0)
    model = create_tokenizer("audio", **TINY, causal=causal, activation=activation)
    model.train()
    model(_speechy(4, 300, seed=3))  # k-means init of the codebooks, so indices are not all alike
    return model.eval()  # type: ignore[return-value]


def _speechy(batch: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 8000
    tone = torch.sin(2 * math.pi * (150 + 900 * torch.rand(batch, 1, 1, generator=g)) * t)
    return 0.4 * tone + 0.1 * torch.randn(batch, 1, length, generator=g)


def _split(x: torch.Tensor, sizes: list[int], dim: int = -1) -> list[torch.Tensor]:
    """Cuts ``x`` along ``dim`` into pieces of ``sizes`` (cycled until the end)."""
    pieces, start, i = [], 0, 0
    while start < x.shape[dim]:
        pieces.append(x.narrow(dim, start, min(sizes[i % len(sizes)], x.shape[dim] - start)))
        start += sizes[i % len(sizes)]
        i += 1
    return pieces


MODEL = _model()
SNAKE = _model(activation="snake")  # learned per-channel activation (DAC); element-wise, so it must stream too


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    length=st.integers(1, 200),
    sizes=st.lists(st.integers(1, 3 * HOP), min_size=1, max_size=60),
    levels=st.sampled_from([None, 1, 2]),
    snake=st.booleans(),
)
def test_any_chunking_gives_identical_tokens(length: int, sizes: list[int], levels: int | None, snake: bool) -> None:
    model = SNAKE if snake else MODEL
    x = _speechy(2, length, seed=length)
    opts = {} if levels is None else {"num_levels": levels}
    whole = model.encode(x, **opts)
    streamed = torch.cat(list(model.encode_stream(_split(x, sizes), **opts)), dim=1)
    assert torch.equal(streamed, whole)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(length=st.integers(1, 200), sizes=st.lists(st.integers(1, 7), min_size=1, max_size=60), snake=st.booleans())
def test_any_chunking_gives_identical_samples(length: int, sizes: list[int], snake: bool) -> None:
    model = SNAKE if snake else MODEL
    x = _speechy(2, length, seed=length + 1)
    indices = model.encode(x)
    whole = model.decode(indices)
    streamed = torch.cat(list(model.decode_stream(_split(indices, sizes, dim=1))), dim=-1)
    assert streamed.shape == whole.shape == (2, 1, indices.shape[1] * HOP)
    assert torch.equal(streamed, whole)


def test_one_hop_chunks_emit_one_frame_each() -> None:
    # Algorithmic latency of one hop: every complete hop of input yields its frame at once.
    x = _speechy(1, 10 * HOP, seed=5)
    outs = list(MODEL.encode_stream(x.split(HOP, dim=-1)))
    assert [o.shape[1] for o in outs] == [1] * 10
    assert MODEL.algorithmic_latency_ms == pytest.approx(1000 * HOP / 8000)
    decoded = list(MODEL.decode_stream(outs))
    assert all(d.shape[-1] == HOP for d in decoded)


def test_causal_output_ignores_the_future() -> None:
    x = _speechy(1, 120, seed=7)
    y = x.clone()
    y[..., 60:] = torch.randn(1, 1, 60)
    torch.testing.assert_close(MODEL.encode(x)[:, :10], MODEL.encode(y)[:, :10], rtol=0, atol=0)
    recon_x, recon_y = MODEL.decode(MODEL.encode(x)), MODEL.decode(MODEL.encode(y))
    assert torch.equal(recon_x[..., :60], recon_y[..., :60])


def test_noncausal_refuses_to_stream_and_keeps_its_keys(tmp_path) -> None:
    model = _model(causal=False)
    with pytest.raises(ValueError, match="causal"):
        next(model.encode_stream([torch.zeros(1, 1, 12)]))
    assert model.algorithmic_latency_ms is None
    # Parameter names are those of the plain nn.Conv1d layers older checkpoints were saved with.
    keys = set(model.state_dict())
    assert {"encoder.net.0.weight", "encoder.net.1.conv.weight", "encoder.net.1.proj.weight"} <= keys
    assert "decoder.net.1.conv.weight" in keys
    model.save_pretrained(tmp_path / "m")
    loaded = Tokenizer.from_pretrained(tmp_path / "m")
    x = _speechy(2, 50, seed=1)
    assert torch.equal(loaded.encode(x), model.encode(x))


def test_other_float_dtypes_are_cast() -> None:
    x = _speechy(1, 50, seed=9)
    assert torch.equal(MODEL.encode(x.double()), MODEL.encode(x))
    assert torch.equal(torch.cat(list(MODEL.encode_stream(x.double().split(7, dim=-1))), dim=1), MODEL.encode(x))
    assert MODEL(x.double()).recon.dtype == torch.float32


def test_empty_stream_and_empty_chunks() -> None:
    with pytest.raises(ValueError, match="empty stream"):
        list(MODEL.encode_stream([]))
    x = _speechy(1, 30, seed=2)
    empty = x[..., :0]
    outs = list(MODEL.encode_stream([empty, x[..., :4], empty, x[..., 4:]]))
    assert torch.equal(torch.cat(outs, dim=1), MODEL.encode(x))
    with pytest.raises(ValueError, match="NaN"):
        list(MODEL.encode_stream([torch.full((1, 1, 8), float("nan"))]))
    with pytest.raises(ValueError, match=r"keep \(B, C\)"):
        list(MODEL.encode_stream([x, torch.cat([x, x])]))


@pytest.mark.parametrize("stride", [1, 2, 5])
def test_padded_conv_step_matches_forward(stride: int) -> None:
    torch.manual_seed(0)
    conv = PaddedConv1d(3, 4, 2 * stride + 1, stride=stride, dilation=2, causal=True)
    x = torch.randn(2, 3, 20 * stride)
    cache: dict = {}
    streamed = torch.cat([conv.step(p, cache) for p in x.split(3, dim=-1)], dim=-1)
    assert torch.equal(streamed, conv(x))
    up = PaddedConvTranspose1d(3, 2, stride, causal=True)
    cache = {}
    assert torch.equal(torch.cat([up.step(p, cache) for p in x.split(4, dim=-1)], dim=-1), up(x))
