"""``vqtok export INPUT -o OUT --model DIR``: tokenize a data set into Parquet shards (also under ``torchrun``).

``INPUT`` is a folder of images/``.wav`` files, a ``.npy`` array ``(N, ...)``, a ``.parquet`` file or a
built-in data set name. With ``--vocab`` (a :class:`~vqtok.vocab.MultimodalVocab` directory) the ids are
complete media segments of the vocabulary instead of raw tokenizer indices. Launch with
``torchrun --nproc_per_node N -m vqtok.cli export ...`` to split the shards over N processes; the output is
byte-identical to a single-process run. Rerunning a killed export resumes it.
"""

from __future__ import annotations

import argparse
import logging

from ._args import positive_int

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="tokenize a data set into Parquet shards with a checksummed manifest",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("input", help="folder, .npy, .parquet or built-in data set name")
    p.add_argument("-o", "--output", required=True, help="output directory")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="tokenizer directory written by save_pretrained")
    model.add_argument("--vocab", help="MultimodalVocab directory: write vocabulary ids of whole media segments")
    p.add_argument("--modality", default=None, help="with --vocab: the modality of the input (e.g. image)")
    p.add_argument("--split", default="train", help="data set split, also used in shard names (default train)")
    p.add_argument("--column", default="signal", help="with a .parquet input: the column holding the signals")
    p.add_argument("--shard-size", type=positive_int, default=4096, help="items per shard (default 4096)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--row-group-size", type=positive_int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument("-f", "--force", action="store_true", help="replace an export made with other settings")
    p.add_argument("--max-shards", type=positive_int, default=None, help="stop after this many shards per rank")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch intra-op threads per process (default: torch's choice)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from .._dist import setup_distributed, teardown_distributed
    from ..data.export import export_tokens, open_source
    from ..modalities import get_modality
    from ..tokenizers import BaseTokenizer
    from ..vocab import MultimodalVocab

    if args.threads:
        # On shared or small machines, oversubscribed intra-op threads make convolutions many times slower.
        torch.set_num_threads(args.threads)
    info = setup_distributed("cuda" if args.device.startswith("cuda") else "cpu")
    device = info.device if args.device.startswith("cuda") else args.device
    try:
        if args.vocab:
            model = MultimodalVocab.from_pretrained(args.vocab, map_location=device)
            names = list(model.tokenizers)
            name = args.modality or (names[0] if len(names) == 1 else None)
            if name not in model.tokenizers:
                raise ValueError(
                    f"--modality {args.modality!r} is not in the vocabulary (it has {names})"
                    if args.modality
                    else f"the vocabulary has modalities {names}; say which one the input holds with --modality"
                )
            tok = model.tokenizers[name]
        else:
            model = tok = BaseTokenizer.from_pretrained(args.model, map_location=device)
        descriptor = get_modality(tok.modality)
        options = descriptor.read_options(tok.config)
        source = open_source(
            args.input,
            split=args.split,
            channels=options.channels,
            sample_rate=options.sample_rate,
            column=args.column,
            modality=descriptor,
        )
        result = export_tokens(
            source,
            model,
            args.output,
            modality=name if args.vocab else None,
            split=args.split,
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            row_group_size=args.row_group_size,
            device=device,
            force=args.force,
            max_shards=args.max_shards,
            progress=not args.no_progress,
        )
    finally:
        teardown_distributed(info)
    if info.is_main:
        state = "complete" if result.complete else "incomplete (rerun to resume)"
        rate = result.items / result.seconds if result.seconds else 0.0
        logger.info(
            "export %s: %d shard(s) written, %d skipped on rank 0; %d items, %d tokens, %.1f items/s -> %s",
            state,
            len(result.written),
            len(result.skipped),
            result.items,
            result.tokens,
            rate,
            result.out_dir,
        )
    return 0
