"""Vector codecs on a small real set: the 1,797 8x8 handwritten digits bundled with scikit-learn (64-d).

Each codec uses 8 codebooks of 6 bits (6 bytes per vector), fits on 1,400 digits and is scored on the 397
held-out ones. Thresholds sit ~15% above the measured relative MSE (held-out PQ 0.100, OPQ 0.142 from its
default random rotation, RQ 0.092, LSQ 0.093), so a regression in k-means, the rotation, the beam, the
least-squares updates or the local search fails here on real data, not only on synthetic blobs.
"""

from __future__ import annotations

import pytest
import torch

from vqtok.vectors import LSQ, OPQ, PQ, RQ

load_digits = pytest.importorskip("sklearn.datasets").load_digits

CODECS = {
    "pq": (lambda: PQ(64, 8, 6, device="cpu", progress=False), 0.115),
    "opq": (lambda: OPQ(64, 8, 6, device="cpu", progress=False), 0.163),
    "rq": (lambda: RQ(64, 8, 6, device="cpu", progress=False), 0.106),
    "lsq": (lambda: LSQ(64, 8, 6, device="cpu", progress=False), 0.107),
}


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor(load_digits().data, dtype=torch.float32)
    x = x - x.mean(0)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order[:1400]], x[order[1400:]]


def _rel_mse(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x - y).square().sum() / x.square().sum())


@pytest.mark.parametrize("name", sorted(CODECS))
def test_fit_on_real_digits_reaches_stated_mse(name: str, digits) -> None:
    make, bound = CODECS[name]
    train, test = digits
    codec = make().fit(train)
    indices = codec.encode(test)
    assert indices.shape == (len(test), 8) and int(indices.min()) >= 0 and int(indices.max()) < 64
    assert _rel_mse(test, codec.decode(indices)) < bound
