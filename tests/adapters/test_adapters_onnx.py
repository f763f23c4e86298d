"""Adapters exported to ONNX and run in ONNX Runtime against PyTorch (the same checks as the built-ins)."""

from __future__ import annotations

import pytest
import torch
from _hf_references import REFERENCES

pytest.importorskip("onnxruntime")

from vqtok.adapters import from_hf_model  # noqa: E402
from vqtok.testing.onnx import export_cases  # noqa: E402
from vqtok.tokenizers.onnx import DECODE_ATOL, check_onnx, example_signal  # noqa: E402

#: Adapters whose reference model cannot be traced to ONNX, with the reason.
UNEXPORTABLE = {"mimi": "MimiModel's attention masks use aten::diff, which has no ONNX opset-17 export"}


@pytest.mark.parametrize("name", export_cases(sorted(REFERENCES), UNEXPORTABLE))
def test_adapter_onnx_matches_pytorch(name, tmp_path) -> None:
    torch.manual_seed(0)
    tok = from_hf_model(REFERENCES[name][0]())
    example = example_signal(tok, batch=3, seed=1)
    encoder = tok.export_onnx(tmp_path / "encoder.onnx", part="encoder")
    assert check_onnx(tok, encoder, "encoder", example)["index_mismatch"] == 0.0
    decoder = tok.export_onnx(tmp_path / "decoder.onnx", part="decoder")
    assert check_onnx(tok, decoder, "decoder", example)["max_abs_diff"] <= DECODE_ATOL
