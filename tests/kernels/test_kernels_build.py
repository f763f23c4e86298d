"""With a C++ compiler present, every compiled kernel must build: their tests skip when one is unavailable, so a
kernel that silently failed to build would otherwise only show up as skips."""

from __future__ import annotations

import os

import pytest

from vqtok.kernels import _cpu_ext, adc_scan, ivf_prepare

pytestmark = pytest.mark.skipif(
    os.environ.get("VQTOK_DISABLE_CPU_EXT") == "1" or _cpu_ext._compiler() is None,
    reason="no C++ compiler, or the kernels are disabled",
)


def test_every_compiled_kernel_builds_and_loads():
    assert _cpu_ext.available(), _cpu_ext.unavailable_reason()
    for which, lib in adc_scan._LIBS.items():
        assert lib.get() is not None, (which, lib.reason)
    assert ivf_prepare.prepare_available(), ivf_prepare._LIB.reason
