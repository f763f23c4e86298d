"""ONNX export checked in ONNX Runtime against PyTorch: every built-in tokenizer (both halves) and every
quantizer family (a tiny module calling encode then decode). Indices must be identical except near-ties
(tokens whose reconstruction error is the same within fp32 rounding); decoded outputs within DECODE_ATOL."""

from __future__ import annotations

import pytest
import torch
from torch import nn

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from vqtok.quantizers import create, example_config, list_quantizers, skip_input_checks  # noqa: E402
from vqtok.testing.onnx import export_cases  # noqa: E402
from vqtok.tokenizers import Tokenizer, create_tokenizer, list_tokenizers, tokenizer_class  # noqa: E402
from vqtok.tokenizers.onnx import DECODE_ATOL, check_onnx, example_signal  # noqa: E402

#: Tiny configs of the built-in families (the registry's own classes, not adapters).
TINY = {
    "image2d": {"in_channels": 1, "channels": (8, 8, 8), "quantizer": "vq",
                "quantizer_kwargs": {"dim": 4, "codebook_size": 32}},
    "image1d": {"in_channels": 1, "image_size": (8, 8), "patch_size": 4, "num_tokens": 4, "width": 16,
                "encoder_depth": 1, "decoder_depth": 1},
    "audio": {"channels": 4, "strides": (2, 4), "res_dilations": (1,),
              "quantizer_kwargs": {"dim": 8, "codebook_size": 16, "num_levels": 3}},
    "action": {"channels": 3, "chunk_size": 8, "tokens_per_chunk": 2, "width": 16},
    "video": {"in_channels": 1, "channels": (4, 8, 8), "quantizer_kwargs": {"levels": (5, 5, 5)}},
}  # fmt: skip
# Fitted families (FAST's BPE, NodePiece's tables) are not neural networks and have no export_onnx.
BUILTIN = sorted(
    n
    for n in list_tokenizers()
    if tokenizer_class(n).__module__.startswith("vqtok.tokenizers.") and issubclass(tokenizer_class(n), Tokenizer)
)


def test_every_builtin_family_has_a_tiny_config() -> None:
    # Every registered neural (nn.Module) family must be covered here.
    assert sorted(TINY) == BUILTIN


@pytest.fixture(scope="module", params=BUILTIN)
def tokenizer(request):
    torch.manual_seed(0)
    tok = create_tokenizer(request.param, **TINY[request.param]).eval()
    if tok.quantizer.has_learned_codebook:
        tok.train()
        tok(example_signal(tok, batch=8, seed=9))  # k-means initialisation from data, as after training
        tok.eval()
    return tok


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_tokenizer_onnx_matches_pytorch(tokenizer, part, tmp_path) -> None:
    path = tokenizer.export_onnx(tmp_path / f"{part}.onnx", part=part)
    assert path.is_file()
    # Another batch size than the traced example: the batch dimension is dynamic.
    example = example_signal(tokenizer, batch=3, seed=1)
    result = check_onnx(tokenizer, path, part, example)
    if part == "encoder":
        assert result["index_mismatch"] == 0.0
    else:
        assert result["max_abs_diff"] <= DECODE_ATOL


def test_encode_options_are_frozen_into_the_graph(tmp_path) -> None:
    torch.manual_seed(0)
    tok = create_tokenizer("audio", **TINY["audio"]).eval()
    path = tok.export_onnx(tmp_path / "enc.onnx", num_levels=2)
    x = example_signal(tok, batch=2, seed=4)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"signal": x.numpy()})[0])
    assert got.shape[-1] == 2 and torch.equal(got, tok.encode(x, num_levels=2))


def test_bad_part_and_example(tmp_path) -> None:
    tok = create_tokenizer("image2d", **TINY["image2d"])
    with pytest.raises(ValueError, match="part must be one of"):
        tok.export_onnx(tmp_path / "x.onnx", part="both")
    with pytest.raises(ValueError, match="expects images"):
        tok.export_onnx(tmp_path / "x.onnx", example=torch.rand(2, 3, 8))
    assert not (tmp_path / "x.onnx").exists()


class _QuantizerGraph(nn.Module):
    def __init__(self, quantizer: nn.Module) -> None:
        super().__init__()
        self.quantizer = quantizer

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        indices = self.quantizer.encode(latents)
        return indices, self.quantizer.decode(indices)


#: Families whose encode cannot be exported by the TorchScript exporter, with the reason.
UNEXPORTABLE = {"pvq": "its encode uses a stable argsort (aten::sort.stable), which has no ONNX export"}


@pytest.mark.parametrize("name", export_cases(list_quantizers(), UNEXPORTABLE))
def test_quantizer_onnx_matches_pytorch(name, tmp_path) -> None:
    torch.manual_seed(0)
    q = create(name, **example_config(name))
    latents = torch.randn(64, q.dim)
    if q.has_learned_codebook:
        q.train()
        q(latents)  # data-dependent initialisation
    q.eval()
    import warnings

    with skip_input_checks(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _QuantizerGraph(q), (latents[:8],), str(tmp_path / "q.onnx"), dynamo=False,
            input_names=["latents"], output_names=["indices", "quantized"],
            dynamic_axes={"latents": {0: "n"}, "indices": {0: "n"}, "quantized": {0: "n"}},
        )  # fmt: skip
    session = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    test = torch.randn(50, q.dim, generator=torch.Generator().manual_seed(3))
    got_i, got_q = (torch.from_numpy(a) for a in session.run(None, {"latents": test.numpy()}))
    with torch.no_grad():
        indices = q.encode(test)
        quantized = q.decode(indices)
    differ = (got_i.long() != indices).reshape(indices.shape[0], -1).any(-1)
    if differ.any():
        # Near-ties only: the ONNX choice reconstructs the latent as well as PyTorch's, within fp32 rounding.
        err_t = (q.decode(indices[differ]) - test[differ]).pow(2).sum(-1)
        err_o = (q.decode(got_i.long()[differ]) - test[differ]).pow(2).sum(-1)
        torch.testing.assert_close(err_o, err_t, rtol=1e-4, atol=1e-5)
    assert differ.float().mean() <= 0.02
    same = ~differ
    torch.testing.assert_close(got_q[same], quantized[same], atol=DECODE_ATOL, rtol=0)
