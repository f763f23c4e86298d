"""FAST (DCT + BPE) action tokenizer: exact integer round trip, compression, malformed input, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vqtok.tokenizers import FASTTokenizer
from vqtok.tokenizers.fast import dct_matrix


def _chunks(n: int = 300, channels: int = 3, h: int = 10, seed: int = 0) -> torch.Tensor:
    # Smooth random walks: most energy in the low DCT frequencies, like real action chunks.
    g = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(n, channels, h, generator=g)).cumsum(-1)


@pytest.fixture(scope="module")
def fitted() -> FASTTokenizer:
    return FASTTokenizer(3, 10, scale=10.0, vocab_size=400).fit(_chunks())


def test_dct_is_orthonormal() -> None:
    d = dct_matrix(7)
    np.testing.assert_allclose(d @ d.T, np.eye(7), atol=1e-12)


def test_integer_codes_round_trip_exactly(fitted: FASTTokenizer) -> None:
    codes = fitted.to_integers(_chunks(50, seed=1))
    assert codes.shape == (50, 30) and codes.dtype == np.int64
    np.testing.assert_array_equal(fitted.decode_integers(fitted.encode_integers(codes)), codes)
    # Any in-range integers, not just those of smooth chunks, survive BPE.
    rng = np.random.default_rng(0)
    random_codes = rng.integers(-fitted.clip, fitted.clip + 1, size=(20, 30))
    np.testing.assert_array_equal(fitted.decode_integers(fitted.encode_integers(random_codes)), random_codes)


def test_reconstruction_error_is_the_rounding_error(fitted: FASTTokenizer) -> None:
    x = _chunks(50, seed=2)
    tokens = fitted.encode_lists(x)
    recon = fitted.decode(tokens)
    assert recon.shape == x.shape
    mse = float((recon - x).pow(2).mean())
    assert mse < 2 * 1 / (12 * fitted.scale**2)
    # BPE compresses: fewer tokens than coefficients.
    assert np.mean([len(t) for t in tokens]) < fitted.values_per_chunk


@pytest.mark.parametrize(
    "bad",
    [
        "unknown-id",
        "huge-id",
        "negative-id",
        "dropped-token",
        "extra-token",
        "float-id",
        "bool-id",
        "string-id",
        "none-id",
        "empty",
        "float-array",
        "not-a-sequence",
    ],
)
def test_malformed_sequences_raise(fitted: FASTTokenizer, bad: str) -> None:
    tokens = fitted.encode_lists(_chunks(2, seed=3))
    seq = list(tokens[0])
    vocab = fitted.vocab_len
    mutated = {
        "unknown-id": seq[:-1] + [vocab],
        "huge-id": seq[:-1] + [2**40],
        "negative-id": [-1] + seq[1:],
        "dropped-token": seq[:-1],
        "extra-token": seq + [seq[0]],
        "float-id": [float(seq[0])] + seq[1:],
        "bool-id": [True] + seq[1:],
        "string-id": [str(seq[0])] + seq[1:],
        "none-id": [None] + seq[1:],
        "empty": [],
        "float-array": np.asarray(seq, dtype=np.float64),
        "not-a-sequence": seq[0],
    }[bad]
    with pytest.raises(ValueError):
        fitted.decode([mutated, tokens[1]])


@pytest.mark.parametrize(
    "bad",
    [5, "abc", np.zeros((2, 3, 4), dtype=np.int64), torch.zeros(2, 30), None],
    ids=["int", "str", "3d-array", "float-tensor", "none"],
)
def test_malformed_containers_raise(fitted: FASTTokenizer, bad) -> None:
    with pytest.raises(ValueError):
        fitted.decode(bad)


def test_array_and_tensor_tokens_decode_like_lists(fitted: FASTTokenizer) -> None:
    x = _chunks(4, seed=5)
    tokens = fitted.encode_lists(x)
    expected = fitted.decode(tokens)
    torch.testing.assert_close(fitted.decode([torch.tensor(t) for t in tokens]), expected)
    torch.testing.assert_close(fitted.decode([np.asarray(t) for t in tokens]), expected)
    same_length = [t for t in tokens if len(t) == len(tokens[0])]
    torch.testing.assert_close(fitted.decode(torch.tensor(same_length)), fitted.decode(same_length))
    # An empty batch is a batch of zero chunks, not a malformed sequence.
    assert fitted.decode([]).shape == (0, 3, 10)


def test_bad_chunks_raise(fitted: FASTTokenizer) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, 10\)"):
        fitted.encode(torch.zeros(2, 3, 11))
    with pytest.raises(ValueError):
        fitted.encode(torch.full((1, 3, 10), float("nan")))
    with pytest.raises(ValueError):
        fitted.encode_integers(np.zeros((2, 29), dtype=np.int64))
    with pytest.raises(RuntimeError, match="not fitted"):
        FASTTokenizer(3, 10).encode(torch.zeros(1, 3, 10))


def test_out_of_range_coefficients_clip_with_warning(fitted: FASTTokenizer) -> None:
    big = torch.full((1, 3, 10), 1e3)
    with pytest.warns(UserWarning, match="clipping"):
        tokens = fitted.encode_lists(big)
    assert fitted.decode(tokens).shape == (1, 3, 10)


def test_encode_pads_the_batch_and_decode_strips_the_padding(fitted: FASTTokenizer) -> None:
    x = _chunks(30, seed=6)
    lists = fitted.encode_lists(x)
    padded = fitted.encode(x)
    assert padded.dtype == torch.int64 and padded.shape == (30, max(map(len, lists)))
    assert len({len(t) for t in lists}) > 1, "the test needs chunks of different token counts"
    for row, seq in zip(padded.tolist(), lists, strict=True):
        assert row == seq + [fitted.pad_index] * (padded.shape[1] - len(seq))
    torch.testing.assert_close(fitted.decode(padded), fitted.decode(lists))
    assert [t.tolist() for t in fitted.unbatch(padded)] == lists
    # Padding is only trailing: a -1 inside a row is a malformed id, not padding.
    bad = padded.clone()
    bad[0, 0] = fitted.pad_index
    with pytest.raises(ValueError):
        fitted.decode(bad)


def test_legacy_folder_still_loads(fitted: FASTTokenizer, tmp_path: Path) -> None:
    # The two-file layout written by FASTTokenizer.save in vqtok <= 0.1.
    import json

    folder = tmp_path / "old"
    folder.mkdir()
    fitted._bpe.save(str(folder / "tokenizer.json"))
    config = {"format": "vqtok-fast", "format_version": 1, "channels": 3, "chunk_size": 10, "scale": 10.0}
    config |= {"vocab_size": 400, "min_frequency": 2, "clip": fitted.clip}
    (folder / "fast_config.json").write_text(json.dumps(config))
    loaded = FASTTokenizer.load(folder)
    x = _chunks(20, seed=4)
    assert torch.equal(loaded.encode(x), fitted.encode(x))
    (folder / "fast_config.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="vqtok-fast"):
        FASTTokenizer.load(folder)
