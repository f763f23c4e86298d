"""MultimodalVocab: id layout, exact round trips, malformed sequences and checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from vqtok.tokenizers import CheckpointError, create_tokenizer
from vqtok.vocab import MediaSegment, MultimodalVocab, train_bpe

pytest.importorskip("tokenizers")

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "To be or not to be, that is the question.",
    "All that glitters is not gold.",
] * 20
TINY = {"image_size": (8, 8), "downsample": 2, "channels": (8, 16)}


@pytest.fixture(scope="module")
def vocab() -> MultimodalVocab:
    torch.manual_seed(0)
    # An RGB tokenizer with two residual levels and a greyscale one with a single index per token.
    image = create_tokenizer(
        "image2d",
        in_channels=3,
        quantizer="rvq",
        quantizer_kwargs={"dim": 8, "codebook_size": 16, "num_levels": 2},
        **TINY,
    )
    mask = create_tokenizer(
        "image2d", in_channels=1, quantizer="vq", quantizer_kwargs={"dim": 8, "codebook_size": 32}, **TINY
    )
    return MultimodalVocab(train_bpe(CORPUS, vocab_size=300), {"image": image, "mask": mask}, max_grid_size=64)


def _rgb(seed: int = 0) -> torch.Tensor:
    return torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(seed))


def _grey(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_layout_blocks_are_contiguous_and_disjoint(vocab: MultimodalVocab) -> None:
    t = vocab.text_vocab_size
    assert list(vocab.special_tokens) == ["<pad>", "<bos>", "<eos>", "<image>", "</image>", "<mask>", "</mask>"]
    assert vocab.pad_id == t and vocab.size_offset == t + 7 and vocab.media_offset == t + 7 + 64
    image, mask = vocab.layouts["image"], vocab.layouts["mask"]
    assert (image.offset, image.num_ids) == (vocab.media_offset, 2 * 16)
    assert (mask.offset, mask.num_ids) == (image.offset + 32, 32)
    assert len(vocab) == mask.offset + 32 == vocab.vocab_size
    assert vocab.id_to_token(image.offset + 16 + 5) == "<image:1:5>"
    assert vocab.id_to_token(vocab.size_offset + 4) == "<size:4>"
    assert vocab.id_to_token(mask.open_id) == "<mask>"


@pytest.mark.parametrize(
    "text",
    ["hello world", "héllo 🌍 日本語 — ünïcödé\n\ttabs", "   leading and trailing   ", "\n", "x" * 300],
    ids=["ascii", "unicode", "spaces", "newline", "long"],
)
def test_text_round_trip_is_exact(vocab: MultimodalVocab, text: str) -> None:
    ids = vocab.encode([text])
    assert int(ids.max()) < vocab.text_vocab_size
    assert vocab.decode(ids) == [text]


def test_empty_inputs(vocab: MultimodalVocab) -> None:
    assert vocab.encode([]).shape == (0,)
    assert vocab.encode([""]).shape == (0,)
    assert vocab.decode([]) == []
    assert vocab.decode(vocab.encode([""], bos=True, eos=True)) == []
    # Empty strings vanish; the media between them is kept.
    assert [type(p) for p in vocab.split(vocab.encode(["", _grey(), ""]))] == [MediaSegment]


def test_media_segment_layout_and_exact_indices(vocab: MultimodalVocab) -> None:
    x = _rgb()
    ids = vocab.encode([x])
    expected = vocab.tokenizers["image"].encode(x[None])[0]  # (4, 4, 2)
    lay = vocab.layouts["image"]
    sizes = [vocab.size_offset + 4, vocab.size_offset + 4]
    assert ids[0] == lay.open_id and ids[1:3].tolist() == sizes and ids[-1] == lay.close_id
    body = ids[3:-1].reshape(16, 2)
    # Token-major, level-minor: level k of every token lies in block k.
    assert torch.equal(body[:, 0] - lay.offset, expected.reshape(16, 2)[:, 0])
    assert torch.equal(body[:, 1] - lay.offset - 16, expected.reshape(16, 2)[:, 1])
    (segment,) = vocab.split(ids)
    assert segment.modality == "image" and torch.equal(segment.indices, expected)


def test_many_interleaved_segments_round_trip(vocab: MultimodalVocab) -> None:
    parts: list = []
    for i in range(12):
        parts += [f"part {i}: ✓ ", _rgb(i) if i % 2 else _grey(i)]
    parts.append("the end")
    ids = vocab.encode(parts, bos=True, eos=True)
    assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id
    split = vocab.split(ids)
    assert len(split) == len(parts)
    for original, got in zip(parts, split, strict=True):
        if isinstance(original, str):
            assert got == original
        else:
            name = "image" if original.shape[0] == 3 else "mask"
            assert got.modality == name
            assert torch.equal(got.indices, vocab.tokenizers[name].encode(original[None])[0])
    decoded = vocab.decode(ids)
    with torch.no_grad():
        ref = vocab.tokenizers["mask"].decode(vocab.tokenizers["mask"].encode(parts[1][None]))[0]
    assert torch.equal(decoded[1], ref)
    # Adjacent strings merge into one part: the sequence cannot tell them apart.
    assert vocab.decode(vocab.encode(["ab", "cd"])) == ["abcd"]


def test_explicit_parts(vocab: MultimodalVocab) -> None:
    x = _grey()
    by_tuple = vocab.encode([("mask", x)])
    assert torch.equal(by_tuple, vocab.encode([x]))
    indices = vocab.tokenizers["mask"].encode(x[None])[0]
    assert torch.equal(vocab.encode([MediaSegment("mask", indices)]), by_tuple)
    with pytest.raises(ValueError, match="fits no modality"):
        vocab.encode([torch.rand(2, 8, 8)])
    with pytest.raises(ValueError, match="unsupported type"):
        vocab.encode([3])
    with pytest.raises(ValueError, match="list of strings"):
        vocab.encode("text")
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        vocab.encode_indices("mask", torch.full((2, 2), 32))
    with pytest.raises(ValueError, match="max_grid_size"):
        vocab.encode_indices("mask", torch.zeros(64, 1, dtype=torch.long))


def test_fixed_grid_has_no_size_tokens() -> None:
    torch.manual_seed(0)
    # image_size (0, 0): the tokenizer reads any size, so the vocab's fixed grid is what refuses a 16x16 image.
    tiny = {**TINY, "image_size": (0, 0)}
    tok = create_tokenizer("image2d", in_channels=1, quantizer="fsq", quantizer_kwargs={"levels": (3, 3)}, **tiny)
    vocab = MultimodalVocab(train_bpe(CORPUS, 260), {"image": tok}, grid_shapes={"image": (4, 4)}, max_grid_size=0)
    ids = vocab.encode(["a", _grey()])
    assert len(vocab.split(ids)[1].indices.flatten()) == 16 and ids.shape[0] == vocab.encode(["a"]).shape[0] + 18
    with pytest.raises(ValueError, match="fixed grid"):
        vocab.encode([torch.rand(1, 16, 16)])
    with pytest.raises(ValueError, match="max_grid_size must be > 0"):
        MultimodalVocab(vocab.text, {"image": tok}, max_grid_size=0)


def _malformed(vocab: MultimodalVocab) -> dict[str, tuple[list[int], str]]:
    seg = vocab.encode([_grey()]).tolist()  # <mask> 4 4 body(16) </mask>
    img = vocab.encode([_rgb()]).tolist()
    text = vocab.encode(["hi"]).tolist()
    lay = vocab.layouts["image"]
    swapped = img[:3] + [img[4], img[3]] + img[5:]  # level 1 where level 0 belongs
    return {
        "unclosed": (text + seg[:-1], "unclosed <mask>"),
        "unopened": (text + seg[1:], "outside any segment"),
        "stray_close": ([seg[-1]] + text, "never opened"),
        "nested": (seg[:5] + img + seg[5:], "inside the <mask> segment"),
        "text_in_body": (seg[:4] + text[:1] + seg[5:], "not a valid entry"),
        "foreign_media": (seg[:4] + [lay.offset] + seg[5:], "not a valid entry"),
        "wrong_level": (swapped, "not a valid entry 0"),
        "too_short": (seg[:4] + seg[5:], "has 15 body ids"),
        "too_long": (seg[:-1] + [seg[5], seg[-1]], "has 17 body ids"),
        "no_sizes": ([seg[0]] + seg[3:], "lacks its grid size tokens"),
        "size_in_body": (seg[:5] + [vocab.size_offset + 1] + seg[5:], "size token at position 5"),
        "out_of_vocab": (text + [len(vocab)], "outside the vocabulary"),
        "negative": ([-1], "outside the vocabulary"),
        "eos_in_segment": (seg[:5] + [vocab.eos_id] + seg[5:], "inside the <mask> segment"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unclosed",
        "unopened",
        "stray_close",
        "nested",
        "text_in_body",
        "foreign_media",
        "wrong_level",
        "too_short",
        "too_long",
        "no_sizes",
        "size_in_body",
        "out_of_vocab",
        "negative",
        "eos_in_segment",
    ],
)
def test_malformed_sequences_raise(vocab: MultimodalVocab, case: str) -> None:
    ids, message = _malformed(vocab)[case]
    with pytest.raises(ValueError, match=message):
        vocab.decode(ids)


def test_bad_id_containers(vocab: MultimodalVocab) -> None:
    with pytest.raises(ValueError, match="integer"):
        vocab.split(torch.zeros(3))
    with pytest.raises(ValueError, match="one-dimensional"):
        vocab.split(torch.zeros(2, 2, dtype=torch.long))


def test_bad_construction(vocab: MultimodalVocab) -> None:
    tok = vocab.tokenizers["mask"]
    for name in ("Image", "bos", "2d", "size"):
        with pytest.raises(ValueError, match="modality name"):
            MultimodalVocab(vocab.text, {name: tok})
    with pytest.raises(ValueError, match="unknown modalities"):
        MultimodalVocab(vocab.text, {"mask": tok}, grid_shapes={"image": (4, 4)})


def test_save_and_load(vocab: MultimodalVocab, tmp_path) -> None:
    parts = ["caption: ", _rgb(), " and ", _grey(), " ✓"]
    ids = vocab.encode(parts)
    vocab.save_pretrained(tmp_path / "v")
    loaded = MultimodalVocab.from_pretrained(tmp_path / "v")
    assert loaded.config() == vocab.config()
    assert torch.equal(loaded.encode(parts), ids)
    a, b = vocab.decode(ids), loaded.decode(ids)
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and torch.equal(a[3], b[3])
    assert not [p for p in (tmp_path / "v").rglob("*.tmp")]


def test_load_errors(vocab: MultimodalVocab, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="vocab.json"):
        MultimodalVocab.from_pretrained(tmp_path / "nothing")
    good = vocab.save_pretrained(tmp_path / "v")

    (good / "modalities" / "mask" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        MultimodalVocab.from_pretrained(good)

    vocab.save_pretrained(good)
    path = good / "text" / "tokenizer.json"
    path.write_text(path.read_text()[:-20])
    with pytest.raises(CheckpointError, match="corrupt"):
        MultimodalVocab.from_pretrained(good)

    vocab.save_pretrained(good)
    (good / "vocab.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        MultimodalVocab.from_pretrained(good)

    vocab.save_pretrained(good)
    payload = json.loads((good / "vocab.json").read_text())
    payload["layout"]["max_grid_size"] = 32
    (good / "vocab.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="different id layout"):
        MultimodalVocab.from_pretrained(good)
