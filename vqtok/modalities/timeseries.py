"""Time series (robot actions, sensor channels): ``(C, T)`` float, values in the units they were recorded in.

Files: ``.npy`` only (through :func:`~vqtok.modalities.base.batch_from_array`).

Value rule: integers and floats are cast to float32 unchanged (no scaling: the values are measurements, not
quantised intensities); bool, complex, strings, NaN/Inf and values beyond the float32 range are errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ..metrics.report import Panel
from ..metrics.timeseries import timeseries_metrics
from ._arrays import scale_integers_and_check_floats
from ._registry import register_modality
from .base import Modality, ReadOptions

__all__ = ["TIMESERIES", "timeseries_from_array"]

_INTEGER_SCALES = {
    name: (0.0, 1.0) for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
}


def timeseries_from_array(arr: np.ndarray, source: str) -> Tensor:
    """The time-series value rule (module docstring) applied to raw values; the layout is left as it is."""
    return scale_integers_and_check_floats(arr, source, _INTEGER_SCALES, None)


def _report(directory: Path, originals: Tensor, recons: Tensor, context: Mapping[str, Any]) -> list[Panel]:
    from ..metrics.report import save_series_plot

    if originals.ndim != 3:
        return []
    name = save_series_plot(originals, recons, directory / "recon_series.png").name
    return [Panel("Reconstructions", images=(name,))]


TIMESERIES = register_modality(
    Modality(
        name="timeseries",
        example_ndim=2,
        readers={},
        from_array=timeseries_from_array,
        metrics=timeseries_metrics,
        # float32 sensor/action values.
        raw_bits_per_value=32.0,
        report=_report,
        read_options=lambda config: ReadOptions(channels=getattr(config, "channels", None)),
    )
)
