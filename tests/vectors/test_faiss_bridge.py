"""to_faiss / from_faiss: same codes, ids and search results as faiss-cpu, both ways."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqtok.vectors.index import from_faiss, index_factory, to_faiss

faiss = pytest.importorskip("faiss")
DIM = 16


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(30, DIM, generator=g) * 3

    def draw(n: int) -> torch.Tensor:
        return centres[torch.randint(30, (n,), generator=g)] + torch.randn(n, DIM, generator=g)

    return draw(2000), draw(400), draw(25)


def _same_up_to_ties(d0: torch.Tensor, i0: torch.Tensor, d1: torch.Tensor, i1: torch.Tensor) -> None:
    torch.testing.assert_close(d1, d0, rtol=1e-5, atol=1e-4)
    for row in range(d0.shape[0]):
        for j in torch.nonzero(i0[row] != i1[row]).flatten().tolist():
            # Only vectors at exactly the same distance (identical codes) may swap places.
            tied = (d0[row] - d0[row, j]).abs() < 1e-4
            assert int(tied.sum()) > 1 or j == d0.shape[1] - 1, (row, j)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize(
    "desc",
    ["Flat", "PQ4", "PQ8x4", "OPQ4,PQ4", "RQ2x6", "LSQ2x6", "IVF8,Flat", "IVF8,PQ4", "OPQ4,IVF8,PQ8x4", "IVF8,RQ2x6",
     "IVF8,LSQ3x5"],
)  # fmt: skip
def test_round_trip_through_faiss_keeps_codes_and_results(data, desc: str, metric: str) -> None:
    train, db, q = data
    options = {"codec_options": {"kmeans_iters": 5}} if "PQ" in desc else {}
    index = index_factory(DIM, desc, metric=metric, nprobe=3, opq_iters=3, **options).train(train)
    index.add_with_ids(db, torch.arange(len(db)) * 7 + 1)
    d0, i0 = index.search(q, 8)
    theirs = to_faiss(index)
    assert theirs.ntotal == len(db)
    d1, i1 = theirs.search(q.numpy(), 8)
    _same_up_to_ties(d0, i0, torch.from_numpy(d1), torch.from_numpy(i1))
    back = from_faiss(theirs)
    assert torch.equal(back.lists.ids, index.lists.ids)
    assert torch.equal(back.lists.payloads["codes"], index.lists.payloads["codes"])
    d2, i2 = back.search(q, 8)
    assert torch.equal(i2, i0) and torch.equal(d2, d0)


def test_faiss_encodes_like_vqtok_with_vqtok_codebooks(data) -> None:
    train, db, _ = data
    index = index_factory(DIM, "PQ4", codec_options={"kmeans_iters": 5}).train(train)
    index.add(db)
    theirs = to_faiss(index)
    assert np.array_equal(theirs.sa_encode(db.numpy()), index.lists.payloads["codes"].numpy())


def test_indexes_faiss_built_are_imported(data) -> None:
    train, db, q = data
    theirs = faiss.index_factory(DIM, "OPQ4,IVF8,PQ4")
    theirs.train(train.numpy())
    theirs.add(db.numpy())
    faiss.extract_index_ivf(theirs).nprobe = 4
    ours = from_faiss(theirs)
    assert ours.nprobe == 4 and ours.rotation is not None and ours.ntotal == len(db)
    d0, i0 = theirs.search(q.numpy(), 5)
    d1, i1 = ours.search(q, 5)
    _same_up_to_ties(torch.from_numpy(d0), torch.from_numpy(i0), d1, i1)


def test_unsupported_kinds_fail_clearly(data) -> None:
    train, db, _ = data
    with pytest.raises(ValueError, match="does not convert"):
        from_faiss(faiss.IndexHNSWFlat(DIM, 8))
    refined = index_factory(DIM, "PQ4,Refine(SQ8)", codec_options={"kmeans_iters": 2}).train(train)
    with pytest.raises(ValueError, match="Refine"):
        to_faiss(refined)
