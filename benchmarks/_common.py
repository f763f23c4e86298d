"""What the benchmark scripts share: wall-clock timing, the console table header and the results JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``(fn(*args), wall seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def print_header(header: str) -> None:
    """Prints a console table's header line and a rule under it."""
    print(header)
    print("-" * len(header))


def write_results(path: str | os.PathLike[str], rows: list[dict], **meta: Any) -> None:
    """Writes ``{"meta": ..., "rows": rows}`` as JSON to ``path`` (folders created).

    ``meta`` gets the library versions (faiss when it is loaded), the machine, its CPU count and the load average
    at the end of the run: timings are only comparable on an equally loaded machine.
    """
    meta |= {"torch": torch.__version__, "numpy": np.__version__}
    if "faiss" in sys.modules:
        meta["faiss"] = sys.modules["faiss"].__version__
    meta |= {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    meta["load_average"] = os.getloadavg()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
