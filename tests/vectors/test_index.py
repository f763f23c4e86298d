"""vqtok.vectors.index: search against brute force, ids, metrics, factory strings, one-file storage, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vqtok._io import CheckpointError
from vqtok.vectors.index import Index, index_factory, load_index, save_index

DIM = 16
FAST = {"codec_options": {"kmeans_iters": 5}, "opq_iters": 3}


def _blobs(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100)
    centres = torch.randn(40, DIM, generator=g) * 3
    g.manual_seed(seed)
    return centres[torch.randint(40, (n,), generator=g)] + torch.randn(n, DIM, generator=g)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _blobs(2000, 0), _blobs(1000, 1), _blobs(40, 2)


def _truth(q: torch.Tensor, db: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "l2":
        return torch.cdist(q, db).square()
    if metric == "cosine":
        q, db = F.normalize(q, dim=-1), F.normalize(db, dim=-1)
    return -(q @ db.T)


def _recall(ids: torch.Tensor, q: torch.Tensor, db: torch.Tensor, metric: str) -> float:
    return float((ids == _truth(q, db, metric).argmin(1)[:, None]).any(1).float().mean())


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_flat_and_ivf_flat_are_exact_with_all_lists_probed(data, metric: str) -> None:
    train, db, q = data
    ref_d, ref_i = _truth(q, db, metric).topk(5, dim=1, largest=False)
    for desc in ("Flat", "IVF8,Flat"):
        index = index_factory(DIM, desc, metric=metric, nprobe=8).train(train)
        index.add(db)
        d, i = index.search(q, 5)
        assert torch.equal(i, ref_i), desc
        torch.testing.assert_close(d, ref_d if metric == "l2" else -ref_d, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    ("desc", "metric", "floor"),
    [
        ("PQ4", "l2", 0.6),
        ("OPQ4,PQ4", "l2", 0.6),
        ("IVF16,PQ4", "l2", 0.6),
        ("IVF16,PQ8x4,Refine(SQ8)", "l2", 0.95),
        ("OPQ4,IVF16,PQ4,Refine(Flat)", "l2", 0.95),
        ("IVF16,RQ2x6", "ip", 0.4),
        ("IVF16,PQ4", "cosine", 0.5),
    ],
)
def test_compressed_indexes_find_neighbours(data, desc: str, metric: str, floor: float) -> None:
    train, db, q = data
    index = index_factory(DIM, desc, metric=metric, nprobe=16, **FAST).train(train)
    index.add(db)
    d, i = index.search(q, 10)
    assert _recall(i, q, db, metric) >= floor, (desc, _recall(i, q, db, metric))
    # Sorted best first, and every id is a stored one.
    assert bool((d[:, 1:] >= d[:, :-1]).all()) if metric == "l2" else bool((d[:, 1:] <= d[:, :-1]).all())
    assert bool(((i >= 0) & (i < len(db))).all())


def test_more_probes_never_lose_recall_on_average(data) -> None:
    train, db, q = data
    index = index_factory(DIM, "IVF32,PQ4", **FAST).train(train)
    index.add(db)
    recalls = [_recall(index.search(q, 10, nprobe=p)[1], q, db, "l2") for p in (1, 4, 32)]
    assert recalls[0] <= recalls[1] <= recalls[2], recalls


def test_ids_add_remove_and_padding(data) -> None:
    train, db, q = data
    index = index_factory(DIM, "IVF8,PQ4", nprobe=8, **FAST).train(train)
    index.add_with_ids(db[:10], torch.arange(100, 110))
    assert index.ntotal == 10
    d, i = index.search(q[:3], 15)
    assert bool((i[:, :10] >= 100).all()) and bool((i[:, 10:] == -1).all()) and bool(torch.isinf(d[:, 10:]).all())
    with pytest.raises(ValueError, match="already in the index"):
        index.add_with_ids(db[:2], torch.tensor([100, 5]))
    with pytest.raises(ValueError, match="duplicates"):
        index.add_with_ids(db[:2], torch.tensor([7, 7]))
    with pytest.raises(ValueError, match="not in the index"):
        index.remove_ids(torch.tensor([100, 999]))
    assert index.ntotal == 10  # nothing removed on error
    assert index.remove_ids(torch.tensor([100, 101])) == 2 and index.ntotal == 8
    assert not bool(torch.isin(index.search(q, 10)[1], torch.tensor([100, 101])).any())
    assert index.add(db[:2]).tolist() == [110, 111]


def test_bad_input_fails_clearly(data) -> None:
    train, db, q = data
    index = index_factory(DIM, "IVF8,PQ4", **FAST)
    with pytest.raises(RuntimeError, match="not trained"):
        index.add(db)
    index.train(train)
    with pytest.raises(ValueError, match="empty"):
        index.search(q, 3)
    d, i = index.search(q[:0], 3)
    assert d.shape == i.shape == (0, 3)
    index.add(db)
    with pytest.raises(ValueError, match=r"\(N, 16\)"):
        index.search(torch.randn(3, DIM + 1), 3)
    bad = db[:4].clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        index.add(bad)
    with pytest.raises(ValueError, match="k must"):
        index.search(q, 0)
    with pytest.raises(ValueError, match="IVF8 needs at least 8"):
        index_factory(DIM, "IVF8,Flat").train(train[:3])
    for desc, match in [
        ("IVF8", "no payload"),
        ("PQ4,IVF8", "only Refine"),
        ("IVF8,OPQ4,PQ4", "OPQ must come first"),
        ("HNSW32", "not understood"),
        ("RQ4", "RQ<codebooks>x<bits>"),
        ("PQ5", "divisible"),
        ("", "non-empty"),
    ]:
        with pytest.raises(ValueError, match=match):
            index_factory(DIM, desc)
    with pytest.raises(ValueError, match="metric"):
        Index(DIM, metric="hamming")


@pytest.mark.parametrize("desc", ["Flat", "OPQ4,IVF8,PQ8x4,Refine(SQ8)", "IVF8,RQ2x6"])
def test_save_load_round_trip_is_memory_mapped_and_checked(data, tmp_path, desc: str) -> None:
    train, db, q = data
    index = index_factory(DIM, desc, nprobe=4, **FAST).train(train)
    index.add_with_ids(db, torch.arange(len(db)) * 3)
    index.remove_ids(torch.tensor([0, 3]))
    path = tmp_path / "a.vqindex"
    save_index(path, index)
    loaded = load_index(path)
    d0, i0 = index.search(q, 10)
    d1, i1 = loaded.search(q, 10)
    assert torch.equal(i0, i1) and torch.equal(d0, d1)
    assert loaded.lists.payloads["ids"].numpy().base is not None  # a view of the mapped file
    loaded.add_with_ids(db[:2], torch.tensor([1, 4]))  # still writable (copy on write), file untouched
    assert load_index(path).ntotal == index.ntotal
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # flip bits in the last tensor's data
    (tmp_path / "flip.vqindex").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_index(tmp_path / "flip.vqindex")
    (tmp_path / "cut.vqindex").write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match="truncated"):
        load_index(tmp_path / "cut.vqindex")
    (tmp_path / "junk.vqindex").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match="not a vqtok index"):
        load_index(tmp_path / "junk.vqindex")


def test_a_codec_file_is_not_an_index(data, tmp_path) -> None:
    from vqtok.vectors import PQ, save

    save(tmp_path / "codec.safetensors", PQ(DIM, 4, 4, device="cpu", progress=False).fit(data[0]))
    with pytest.raises(CheckpointError, match="not a vqtok.vectors.index file"):
        load_index(tmp_path / "codec.safetensors")
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "missing")
