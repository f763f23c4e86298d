"""The run directory's config and metrics log, as the trainer leaves them at the start of a run."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from .._io import atomic_open

__all__ = ["CONFIG_NAME", "METRICS_NAME", "prepare_run_dir"]

METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.yaml"


def prepare_run_dir(run_dir: Path, config: dict[str, Any], resumed_step: int | None) -> None:
    """Writes ``config.yaml`` and trims ``metrics.jsonl`` to the steps a resumed run keeps.

    Args:
        run_dir: The run directory (created if needed).
        config: The resolved training config as a dict.
        resumed_step: The checkpoint's step when resuming: lines logged after it are dropped, so the log of a
            resumed run matches an uninterrupted one. ``None`` for a fresh run: the log starts empty.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(run_dir / CONFIG_NAME, "w") as f:
        try:
            import yaml

            yaml.safe_dump(config, f, sort_keys=False)
        except ImportError:
            json.dump(config, f, indent=2)
    log = run_dir / METRICS_NAME
    if not log.exists():
        return
    kept = []
    if resumed_step is not None:
        for line in log.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if json.loads(line).get("step", 0) <= resumed_step:
                    kept.append(line)
    with atomic_open(log, "w") as f:
        f.write("".join(x + "\n" for x in kept))
