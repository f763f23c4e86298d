"""``vqtok export-onnx``: both halves written and checked in ONNX Runtime; refuses to overwrite."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from vqtok.cli.__main__ import main  # noqa: E402
from vqtok.tokenizers import create_tokenizer  # noqa: E402


def test_export_onnx_command(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    tok = create_tokenizer("image2d", in_channels=1, channels=(8, 8, 8))
    tok.save_pretrained(tmp_path / "model")
    out = tmp_path / "onnx"
    assert main(["export-onnx", "--model", str(tmp_path / "model"), "-o", str(out), "--check"]) == 0
    text = capsys.readouterr().out
    assert "index mismatch 0.00%" in text and (out / "encoder.onnx").is_file() and (out / "decoder.onnx").is_file()
    assert main(["export-onnx", "--model", str(tmp_path / "model"), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32))
    single = tmp_path / "enc.onnx"
    model, example = str(tmp_path / "model"), str(tmp_path / "x.npy")
    args = ["export-onnx", "--model", model, "--part", "encoder", "--example", example]
    assert main([*args, "-o", str(single)]) == 0 and single.is_file()
    assert main([*args, "-o", str(tmp_path / "enc.bin")]) == 2
