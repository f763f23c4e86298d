"""``vqtok export-onnx --model DIR -o OUT``: a tokenizer's encoder and/or decoder as ONNX graphs.

With ``--part both`` (the default) ``OUT`` is a folder that receives ``encoder.onnx`` and ``decoder.onnx``;
with one part it is the ``.onnx`` file. The batch dimension is dynamic; the signal shape is fixed to the
example (``--example x.npy``, else one derived from the model's config). ``--check`` runs each graph in ONNX
Runtime against PyTorch and fails when indices differ or decoded signals differ by more than the tolerance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._args import positive_int

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export a tokenizer's encoder/decoder to ONNX",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("--model", required=True, help="tokenizer directory (save_pretrained) or hf:<repo id or folder>")
    p.add_argument("-o", "--output", required=True, help="output folder (--part both) or .onnx file")
    p.add_argument("--part", choices=("both", "encoder", "decoder"), default="both")
    p.add_argument("--example", default=None, help=".npy input (B, ...) that fixes the signal shape")
    p.add_argument(
        "--num-levels", type=positive_int, default=None, help="residual levels frozen into the encoder graph"
    )
    p.add_argument("--opset", type=positive_int, default=17)
    p.add_argument("--check", action="store_true", help="compare with PyTorch in onnxruntime")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..tokenizers import from_pretrained
    from ..tokenizers.onnx import DECODE_ATOL, check_onnx, example_signal

    parts = ("encoder", "decoder") if args.part == "both" else (args.part,)
    out = Path(args.output)
    if args.part == "both":
        targets = {part: out / f"{part}.onnx" for part in parts}
    else:
        if out.suffix != ".onnx":
            raise ValueError(f"output {str(out)!r} must end in .onnx with --part {args.part}")
        targets = {args.part: out}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not args.force:
        raise FileExistsError(f"{existing} exist; pass -f/--force to overwrite")
    model = from_pretrained(args.model).eval()
    if args.example:
        example = _read_example(args.example, model)
    else:
        example = example_signal(model)
    # The check runs another batch size than the export traced, unless the user fixed the example.
    check_example = example if args.example else example_signal(model, batch=3, seed=1)
    options = {} if args.num_levels is None else {"num_levels": args.num_levels}
    failed = False
    for part, path in targets.items():
        model.export_onnx(path, part=part, example=example, opset=args.opset, **options)
        line = f"{part}: {path}"
        if args.check:
            result = check_onnx(model, path, part, check_example, **options)
            if part == "encoder":
                failed |= result["index_mismatch"] > 0
                line += f" (index mismatch {result['index_mismatch']:.2%} vs PyTorch)"
            else:
                failed |= result["max_abs_diff"] > DECODE_ATOL
                line += f" (max |ONNX - PyTorch| {result['max_abs_diff']:.2e}, tolerance {DECODE_ATOL:g})"
        print(line)
    return 1 if failed else 0


def _read_example(path: str, model):  # type: ignore[no-untyped-def]
    """The ``--example`` batch, read by the model's modality rule like ``vqtok encode`` inputs."""
    import torch

    from ..modalities import batch_from_array, find_modality, load_npy
    from ..modalities._arrays import real_array

    arr = load_npy(path)
    descriptor = find_modality(model.modality)
    if descriptor is None:
        return torch.from_numpy(real_array(arr, repr(path)).astype("float32"))
    return batch_from_array(descriptor, arr, repr(path), descriptor.read_options(model.config).channels)
