"""Peak-memory measurement for tests that run a workload in a fresh subprocess (Linux ``/proc`` only).

``getrusage``'s ``ru_maxrss`` would carry the parent's (pytest's) peak across fork+exec; ``VmHWM`` is
the process's own high-water mark, and writing ``5`` to ``/proc/self/clear_refs`` resets it to the
current RSS, so a workload's peak can be measured against a baseline taken just before it.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["peak_extra_mib", "status_mib"]


def status_mib(field: str) -> float:
    """A ``kB`` field of ``/proc/self/status`` (e.g. ``"VmRSS"``, ``"VmHWM"``) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field!r} field")


def peak_extra_mib(workload: Callable[[], object]) -> float:
    """Peak resident memory of ``workload()`` above the RSS just before it, in MiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_mib("VmRSS")
    workload()
    return status_mib("VmHWM") - base
