"""``vqtok list``: registered tokenizers, quantizers and data sets."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered tokenizers, quantizers and data sets")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import list_datasets
    from ..quantizers import list_quantizers
    from ..tokenizers import list_tokenizers

    print("tokenizers:", ", ".join(list_tokenizers()))
    print("quantizers:", ", ".join(list_quantizers()))
    print("datasets:  ", ", ".join(list_datasets()))
    return 0
