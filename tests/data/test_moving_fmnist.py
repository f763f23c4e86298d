"""Moving Fashion-MNIST: deterministic, in range, garments from the right split, bouncing inside the canvas."""

from __future__ import annotations

import pytest
import torch

from vqtok.data import MovingFashionMNIST, create_dataset, list_datasets

try:
    create_dataset("fashion_mnist", "test")
    HAVE_FMNIST = True
except FileNotFoundError:
    HAVE_FMNIST = False


def _bank(n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8)


def test_clips_are_deterministic_and_well_formed() -> None:
    ds = MovingFashionMNIST(_bank(), num_clips=4, frames=12, size=48, seed=3)
    a, b = ds[2], MovingFashionMNIST(_bank(), num_clips=4, frames=12, size=48, seed=3)[2]
    assert a.shape == (1, 12, 48, 48) and a.dtype == torch.float32
    assert torch.equal(a, b), "the same (seed, index) must give the same clip"
    assert not torch.equal(ds[1], ds[2])
    assert not torch.equal(a, MovingFashionMNIST(_bank(), num_clips=4, frames=12, size=48, seed=4)[2])
    assert 0 <= a.min() and a.max() <= 1
    batch = ds.__getitems__([0, 2])
    assert batch.shape == (2, 1, 12, 48, 48) and torch.equal(batch[1], a)


def test_garments_move_and_stay_on_the_canvas() -> None:
    bank = torch.full((1, 1, 28, 28), 255, dtype=torch.uint8)  # a solid square shows the garment's footprint
    ds = MovingFashionMNIST(bank, num_clips=20, frames=40, size=40, num_garments=1, max_speed=3, seed=0)
    for i in range(len(ds)):
        clip = ds.clip(i)
        # Every frame shows the whole 28x28 garment: never clipped at a border, even after bounces.
        assert all(int((f > 0).sum()) == 28 * 28 for f in clip), i
        assert any((clip[t] != clip[t + 1]).any() for t in range(len(clip) - 1)), "the garment must move"


def test_bad_arguments_fail_clearly() -> None:
    with pytest.raises(ValueError, match="canvas size 28 must exceed"):
        MovingFashionMNIST(_bank(), num_clips=1, size=28)
    with pytest.raises(ValueError, match="uint8"):
        MovingFashionMNIST(_bank().float(), num_clips=1)
    with pytest.raises(IndexError, match="out of range"):
        MovingFashionMNIST(_bank(), num_clips=2).clip(2)


@pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST (apt dataset-fashion-mnist) not installed")
def test_registered_data_set_uses_the_split() -> None:
    assert "moving_fashion_mnist" in list_datasets()
    test = create_dataset("moving_fashion_mnist", "test")
    train = create_dataset("moving_fashion_mnist", "train", num_clips=3)
    assert len(test) == 1000 and len(train) == 3
    assert test[0].shape == (1, 16, 64, 64)
    assert torch.equal(test[5], create_dataset("moving_fashion_mnist", "test")[5])
    assert not torch.equal(test[0], train[0])
    # Test clips are built from Fashion-MNIST's test garments only.
    assert test.garments.shape[0] == 10_000 and train.garments.shape[0] == 60_000
