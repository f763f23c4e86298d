"""Built-in image data sets: both splits cover every class."""

import pytest
import torch

from vqtok.data import images


@pytest.mark.parametrize("name,n_train", [("mnist", 4000), ("digits", 1500)])
def test_splits_cover_every_class(name, n_train):
    pytest.importorskip("sklearn")
    train, test = getattr(images, name)("train"), getattr(images, name)("test")
    assert len(train) == n_train
    for split in (train, test):
        counts = torch.bincount(split.labels, minlength=10)
        assert (counts > 0).all(), f"{name}: a split misses a class: {counts.tolist()}"
