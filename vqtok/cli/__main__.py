"""Entry point of the ``vqtok`` console script and of ``python -m vqtok.cli``.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``; they are thin
wrappers over the public API.

Errors: a user mistake (a bad argument, a missing, unreadable or corrupt file, a refused overwrite) ends in one
line ``vqtok COMMAND: error: ...`` naming the file or argument, and exit status 2; ``--debug`` shows the
traceback instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import bench, codec, demo, evaluate, export, export_onnx, listing, train

__all__ = ["main", "build_parser", "USER_ERRORS"]

_COMMANDS = (train, codec, evaluate, demo, bench, listing, export, export_onnx)

#: Exceptions that mean "the input or the arguments are wrong". ``CheckpointError`` is a ``ValueError``;
#: ``OSError`` covers missing, unreadable, folder-instead-of-file and permission problems.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError)


def build_parser() -> argparse.ArgumentParser:
    from ..version import __version__

    parser = argparse.ArgumentParser(prog="vqtok", description="Train, run and evaluate discrete tokenizers.")
    parser.add_argument("--version", action="version", version=f"vqtok {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS:
        module.add_parser(sub)
    return parser


def _one_line(err: BaseException) -> str:
    """The message on one line (multi-line messages are joined), or the exception's type when it has none."""
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Parses ``argv`` (default ``sys.argv[1:]``), runs the subcommand and returns its exit status.

    Bad command-line syntax exits through ``argparse`` (``SystemExit(2)`` after a usage line and one error line).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"vqtok {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
