"""``vqtok bench [NAME ...]``: runs the benchmark scripts in the repository's ``benchmarks/`` folder."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

__all__ = ["add_parser", "run", "benchmarks_dir"]


def benchmarks_dir() -> Path:
    """``benchmarks/`` of the source checkout (benchmarks are not shipped in the wheel)."""
    return Path(__file__).resolve().parents[2] / "benchmarks"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run benchmark scripts from benchmarks/ (source checkout only)")
    p.add_argument("names", nargs="*", help="script names without .py (default: all); --list to see them")
    p.add_argument("--list", action="store_true", help="list the available benchmarks")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = benchmarks_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"no benchmarks folder at {str(root)!r}; `vqtok bench` needs a source checkout")
    scripts = {p.stem: p for p in sorted(root.glob("*.py")) if not p.name.startswith("_")}
    if args.list:
        print("\n".join(scripts))
        return 0
    unknown = [n for n in args.names if n not in scripts]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; available: {', '.join(scripts)}")
    status = 0
    for name in args.names or list(scripts):
        print(f"== {name}", flush=True)
        status |= subprocess.call([sys.executable, str(scripts[name])], cwd=root.parent)
    return status
