"""Wall, CPU and load readings of a demo command, so its timings can be read on a shared machine."""

from __future__ import annotations

import os
import time

__all__ = ["TIMING_ROWS", "RunClock"]

# (metric key, table label) of the timings a demo reports, in table order.
TIMING_ROWS = (
    ("train_seconds", "train wall (s)"),
    ("eval_seconds", "eval wall (s)"),
    ("total_seconds", "total wall (s)"),
    ("cpu_seconds", "process CPU (s)"),
    ("threads", "torch threads"),
    ("load_start", "load avg 1 min, start"),
    ("load_end", "load avg 1 min, end"),
)


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on every platform
        return float("nan")


class RunClock:
    """Started at construction; :meth:`stamp` adds the readings since then to a metrics dict."""

    def __init__(self) -> None:
        self.wall0, self.cpu0, self.load0 = time.perf_counter(), time.process_time(), _load_average()

    def stamp(self, metrics: dict[str, float]) -> None:
        """Sets ``total_seconds``, ``cpu_seconds``, ``threads``, ``load_start`` and ``load_end`` in ``metrics``.

        Wall and CPU time of the whole command (data loading and start-up included, interpreter start excluded);
        CPU seconds over the core count estimate the uncontended wall time on a shared machine.
        """
        import torch

        metrics["total_seconds"] = time.perf_counter() - self.wall0
        metrics["cpu_seconds"] = time.process_time() - self.cpu0
        metrics["threads"] = float(torch.get_num_threads())
        metrics["load_start"], metrics["load_end"] = self.load0, _load_average()
