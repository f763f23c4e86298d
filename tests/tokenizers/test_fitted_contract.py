"""The fitted tokenizers (FAST, NodePiece) under the one tokenizer contract: registry, checkpoint folder,
MultimodalVocab and ``vqtok encode|decode``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vqtok.cli.__main__ import main
from vqtok.testing.graphs import karate
from vqtok.tokenizers import (
    BaseTokenizer,
    CheckpointError,
    FASTTokenizer,
    NodePieceTokenizer,
    Tokenizer,
    list_tokenizers,
    tokenizer_class,
)
from vqtok.vocab import MultimodalVocab, train_bpe

pytest.importorskip("tokenizers")


def _chunks(n: int = 200, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(n, 2, 8, generator=g)).cumsum(-1)


def _fast() -> FASTTokenizer:
    return FASTTokenizer(2, 8, scale=8.0, vocab_size=300).fit(_chunks())


def _nodepiece() -> NodePieceTokenizer:
    types = torch.tensor([i % 2 for i in range(78)])
    return NodePieceTokenizer.fit(karate(), 34, types, num_anchors=6, anchors_per_node=3, relations_per_node=2)


# name -> (build, sample signals (B, ...))
FAMILIES = {
    "fast": (_fast, lambda: _chunks(12, seed=1)),
    "nodepiece": (_nodepiece, lambda: torch.tensor([0, 5, 33, 12, 7])),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    build, sample = FAMILIES[request.param]
    return request.param, build(), sample()


def test_registered_with_a_modality(family) -> None:
    name, tok, _ = family
    assert name in list_tokenizers() and tokenizer_class(name) is type(tok) and tok.architecture == name
    assert isinstance(tok, BaseTokenizer) and not isinstance(tok, Tokenizer)
    assert tok.modality in ("timeseries", "graph") and tok.codebook_size > 1


def test_round_trips_through_the_checkpoint_folder(family, tmp_path: Path) -> None:
    name, tok, x = family
    tok.save_pretrained(tmp_path / name)
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["config.json", "model.safetensors"]
    loaded = BaseTokenizer.from_pretrained(tmp_path / name)
    assert type(loaded) is type(tok) and loaded.config == tok.config
    indices = tok.encode(x)
    assert indices.dtype == torch.int64 and torch.equal(loaded.encode(x), indices)
    torch.testing.assert_close(loaded.decode(indices), tok.decode(indices))
    # A neural-only load refuses it with a clear message instead of building the wrong class.
    with pytest.raises(CheckpointError, match=f"holds a '{name}' tokenizer, not a Tokenizer"):
        Tokenizer.from_pretrained(tmp_path / name)
    # Weights that do not belong to the config are caught.
    other = tmp_path / "other"
    (FAMILIES["nodepiece" if name == "fast" else "fast"][0])().save_pretrained(other)
    (other / "model.safetensors").replace(tmp_path / name / "model.safetensors")
    with pytest.raises(CheckpointError):
        BaseTokenizer.from_pretrained(tmp_path / name)


def test_decode_inverts_encode(family) -> None:
    name, tok, x = family
    indices = tok.encode(x)
    if name == "fast":
        # Lossy only by the rounding of the DCT coefficients.
        assert float((tok.decode(indices) - x).abs().max()) < 2 / tok.scale
    else:
        nodes = tok.decode(indices)
        # Nodes sharing a hash decode to the smallest such node, so encoding again gives the same tokens.
        assert torch.equal(tok.encode(nodes), indices)
        unique = [v for v in range(34) if (tok.tokens() == tok.tokens()[v]).all(1).sum() == 1]
        assert torch.equal(tok.decode(tok.encode(torch.tensor(unique))), torch.tensor(unique))
        with pytest.raises(ValueError, match="not the hash"):
            tok.decode(torch.zeros(1, tok.tokens_per_node, dtype=torch.long))
        with pytest.raises(ValueError, match="node ids"):
            tok.encode(torch.tensor([34]))


def test_multimodal_vocab_encodes_and_decodes_them(family, tmp_path: Path) -> None:
    name, tok, x = family
    corpus = ["a robot moves its arm", "a graph of friends"] * 10
    modality = "action" if name == "fast" else "graph"
    vocab = MultimodalVocab(train_bpe(corpus, vocab_size=260), {modality: tok}, max_grid_size=64)
    ids = vocab.encode(["before ", (modality, x[0]), " after"], bos=True, eos=True)
    parts = vocab.decode(ids)
    assert parts[0] == "before " and parts[2] == " after"
    assert torch.equal(vocab.split(ids)[1].indices, tok.encode(x[:1])[0])
    torch.testing.assert_close(parts[1], tok.decode(tok.encode(x[:1]))[0])
    vocab.save_pretrained(tmp_path / "vocab")
    again = MultimodalVocab.from_pretrained(tmp_path / "vocab")
    assert torch.equal(again.encode(["before ", (modality, x[0]), " after"], bos=True, eos=True), ids)


def test_cli_encode_decode_on_a_small_file(family, tmp_path: Path) -> None:
    name, tok, x = family
    tok.save_pretrained(tmp_path / "model")
    np.save(tmp_path / "in.npy", x.numpy())
    model, idx, out = str(tmp_path / "model"), str(tmp_path / "idx.npy"), str(tmp_path / "out.npy")
    # A batch size that splits the input, so batches of different padded lengths are joined.
    assert main(["encode", "--model", model, str(tmp_path / "in.npy"), "-o", idx, "--batch-size", "4"]) == 0
    indices = torch.from_numpy(np.load(idx))
    expected = tok.encode(x)
    assert indices.shape[0] == x.shape[0]
    assert [r.tolist() for r in tok.unbatch(indices)] == [r.tolist() for r in tok.unbatch(expected)]
    assert main(["decode", "--model", model, idx, "-o", out]) == 0
    recon = torch.from_numpy(np.load(out))
    assert recon.dtype == tok.decode(expected).dtype
    torch.testing.assert_close(recon, tok.decode(expected))


def test_export_writes_fast_rows_without_padding(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vqtok.data.export import ArraySource, export_tokens

    tok, x = _fast(), _chunks(11, seed=2)
    np.save(tmp_path / "chunks.npy", x.numpy())
    result = export_tokens(ArraySource(tmp_path / "chunks.npy"), tok, tmp_path / "out", shard_size=4, batch_size=3,
                           progress=False)  # fmt: skip
    assert result.complete and result.items == 11
    table = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "out").rglob("*.parquet"))])
    assert table.column("ids").to_pylist() == tok.encode_lists(x)
    assert [s[0] for s in table.column("shape").to_pylist()] == [len(t) for t in tok.encode_lists(x)]


def test_cli_eval_scores_fast_like_any_tokenizer(tmp_path: Path) -> None:
    import json
    import math

    from vqtok.data import create_dataset

    train = create_dataset("synthetic_motions", "train")
    chunks = torch.stack([train[i] for i in range(len(train))]).float()
    tok = FASTTokenizer(chunks.shape[1], chunks.shape[2], scale=20.0, vocab_size=512).fit(chunks)
    tok.save_pretrained(tmp_path / "model")
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tmp_path / "model"), "--data", "synthetic_motions", "-o", str(out)]
    assert main([*args, "--batch-size", "16"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    test = torch.stack([t for t in (create_dataset("synthetic_motions", "test")[i] for i in range(64))]).float()
    lengths = [len(t) for t in tok.encode_lists(test)]
    # Real tokens only (padding excluded), averaged over examples; bits of the BPE vocabulary per token.
    assert metrics["tokens_per_example"] == pytest.approx(sum(lengths) / len(lengths))
    assert metrics["bits_per_token"] == pytest.approx(math.log2(tok.vocab_len))
    assert metrics["mse"] < 1 / tok.scale**2 and metrics["examples"] == 64.0
    assert (out / "report" / "index.html").is_file()
