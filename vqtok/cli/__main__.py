"""Entry point of the ``vqtok`` console script and of ``python -m vqtok.cli``.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``; they are thin
wrappers over the public API.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import bench, codec, demo, evaluate, export, export_onnx, listing, train

__all__ = ["main", "build_parser"]

_COMMANDS = (train, codec, evaluate, demo, bench, listing, export, export_onnx)


def build_parser() -> argparse.ArgumentParser:
    from ..version import __version__

    parser = argparse.ArgumentParser(prog="vqtok", description="Train, run and evaluate discrete tokenizers.")
    parser.add_argument("--version", action="version", version=f"vqtok {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses ``argv`` (default ``sys.argv[1:]``), runs the subcommand and returns its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        # User errors (bad config key, missing data, refusing to overwrite) get one line, not a traceback.
        print(f"vqtok {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
