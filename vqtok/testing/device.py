"""Device selection for tests: ``VQTOK_TEST_DEVICE`` picks the device, CUDA tests skip cleanly."""

from __future__ import annotations

import os

import torch

__all__ = ["skip_if_no_cuda", "test_device"]


def test_device() -> torch.device:
    """The device named by ``VQTOK_TEST_DEVICE`` (default ``cpu``)."""
    return torch.device(os.environ.get("VQTOK_TEST_DEVICE", "cpu"))


test_device.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


def skip_if_no_cuda():  # type: ignore[no-untyped-def]
    """A ``pytest.mark.skipif`` marker for tests that need a CUDA device."""
    import pytest

    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
