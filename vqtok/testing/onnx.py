"""Parametrizing ONNX export tests over models, some of which the exporter is known to refuse."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["export_cases"]


def export_cases(names: Iterable[str], unexportable: Mapping[str, str]) -> list[Any]:
    """``names`` as ``pytest.mark.parametrize`` values; those in ``unexportable`` (name -> reason) are strict
    xfails that must raise ``torch.onnx.OnnxExporterError``, so a fixed exporter shows up as an unexpected pass."""
    import pytest
    from torch.onnx import OnnxExporterError

    def case(name: str) -> Any:
        if name not in unexportable:
            return name
        return pytest.param(
            name, marks=pytest.mark.xfail(reason=unexportable[name], raises=OnnxExporterError, strict=True)
        )

    return [case(n) for n in names]
