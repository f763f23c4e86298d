"""vector-quantize-pytorch modules converted to vqtok quantizers: eval codes identical, outputs equal
(within 1e-6 where vqtok re-normalises cosine codebooks or permutes LFQ projections), against the installed
package on random inputs."""

from __future__ import annotations

import pytest
import torch

vqp = pytest.importorskip("vector_quantize_pytorch")

from vqtok.compat import from_vector_quantize_pytorch, reverse_bits  # noqa: E402
from vqtok.quantizers import Quantizer  # noqa: E402

DIM = 16


def _latents(seed: int = 0, dim: int = DIM) -> torch.Tensor:
    return torch.randn(4, 40, dim, generator=torch.Generator().manual_seed(seed))


def _train_a_little(module: torch.nn.Module, steps: int = 3, dim: int = DIM) -> None:
    """A few training forwards, so EMA statistics, k-means and dead-code state are not at their init."""
    module.train()
    for s in range(steps):
        module(_latents(100 + s, dim))


def _check(module: torch.nn.Module, indices_of, output_of, dim: int = DIM, atol: float = 0.0) -> Quantizer:
    module.eval()
    x = _latents(1, dim)
    with torch.no_grad():
        ref = module(x)
    q = from_vector_quantize_pytorch(module)
    assert isinstance(q, Quantizer) and not q.training
    indices = q.encode(x)
    assert torch.equal(indices, indices_of(ref).long())
    out = q(x).quantized
    torch.testing.assert_close(out, output_of(ref), atol=atol, rtol=0)
    assert torch.equal(q.decode(indices), out)
    return q


VQ_OPTIONS = {
    "l2": {},
    "cosine": {"use_cosine_sim": True},
    "projected": {"codebook_dim": 8},
    "projected_cosine": {"codebook_dim": 8, "use_cosine_sim": True},
    "learnable": {"learnable_codebook": True, "ema_update": False},
    "kmeans_dead_codes": {"kmeans_init": True, "threshold_ema_dead_code": 1, "decay": 0.9},
    "no_rotation": {"rotation_trick": False, "commitment_weight": 0.5},
}


@pytest.mark.parametrize("name", sorted(VQ_OPTIONS))
def test_vector_quantize(name) -> None:
    torch.manual_seed(0)
    kwargs = VQ_OPTIONS[name]
    module = vqp.VectorQuantize(dim=DIM, codebook_size=64, **kwargs)
    _train_a_little(module)
    atol = 1e-6 if kwargs.get("use_cosine_sim") else 0.0
    q = _check(module, lambda r: r[1], lambda r: r[0], atol=atol)
    assert q.metric == ("cosine" if kwargs.get("use_cosine_sim") else "l2")
    assert q.codebook_dim == kwargs.get("codebook_dim", DIM)
    assert q.ema_decay == (None if kwargs.get("learnable_codebook") else module._codebook.decay)
    assert q.gradient == ("ste" if kwargs.get("rotation_trick") is False else "rotation")
    assert bool(q.initialized)


def test_untrained_kmeans_module_keeps_kmeans_pending() -> None:
    module = vqp.VectorQuantize(dim=DIM, codebook_size=16, kmeans_init=True)
    q = from_vector_quantize_pytorch(module)
    assert q.kmeans_init and not bool(q.initialized)
    q.train()
    q(_latents(5))
    assert bool(q.initialized) and q.codebook.abs().sum() > 0


@pytest.mark.parametrize("cosine", [False, True])
def test_residual_vq(cosine) -> None:
    torch.manual_seed(0)
    module = vqp.ResidualVQ(dim=DIM, num_quantizers=3, codebook_size=32, use_cosine_sim=cosine)
    _train_a_little(module)
    q = _check(module, lambda r: r[1], lambda r: r[0], atol=1e-6 if cosine else 0.0)
    assert q.index_shape == (3,)


@pytest.mark.parametrize("cosine", [False, True])
def test_residual_vq_with_one_projection_around_the_stack(cosine) -> None:
    torch.manual_seed(0)
    module = vqp.ResidualVQ(dim=DIM, num_quantizers=3, codebook_size=32, codebook_dim=6, use_cosine_sim=cosine)
    assert module.has_projections
    _train_a_little(module)
    q = _check(module, lambda r: r[1], lambda r: r[0], atol=1e-6)
    assert q.index_shape == (3,) and q.dim == DIM
    assert q.project_in.weight.shape == (6, DIM) and q.project_out.weight.shape == (DIM, 6)
    assert torch.equal(q.project_in.weight, module.project_in.weight)
    assert torch.equal(q.project_out.bias, module.project_out.bias)
    # The levels work in the projected width, each with its own (unprojected) codebook.
    assert all(level.dim == 6 and level.codebook_dim == 6 for level in q.levels)


@pytest.mark.parametrize("dim", [None, DIM])
def test_fsq(dim) -> None:
    torch.manual_seed(0)
    module = vqp.FSQ(levels=[8, 5, 5, 5], dim=dim)
    q = _check(module, lambda r: r[1], lambda r: r[0], dim=dim or 4)
    assert q.codebook_size == 1000


def test_lfq_with_projections_has_identical_codes() -> None:
    torch.manual_seed(0)
    module = vqp.LFQ(codebook_size=256, dim=DIM, entropy_loss_weight=0.2, diversity_gamma=0.5)
    q = _check(module, lambda r: r.indices, lambda r: r.quantized, atol=1e-6)
    assert q.codebook_size == 256 and q.entropy_weight == 0.2


def test_lfq_without_projections_needs_the_bit_order_opt_in() -> None:
    module = vqp.LFQ(codebook_size=256, dim=8).eval()
    with pytest.raises(ValueError, match="bit-reversed"):
        from_vector_quantize_pytorch(module)
    q = from_vector_quantize_pytorch(module, allow_bit_reversed_codes=True)
    x = _latents(2, 8)
    with torch.no_grad():
        ref = module(x)
    assert torch.equal(reverse_bits(q.encode(x), 8), ref.indices)
    assert torch.equal(q(x).quantized, ref.quantized)
    assert torch.equal(reverse_bits(reverse_bits(ref.indices, 8), 8), ref.indices)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: vqp.VectorQuantize(dim=DIM, codebook_size=8, heads=2), "heads=2"),
        (lambda: vqp.VectorQuantize(dim=DIM, codebook_size=8, orthogonal_reg_weight=1.0), "orthogonal_reg_weight"),
        (lambda: vqp.VectorQuantize(dim=DIM, codebook_size=8, channel_last=False), "channel_last=False"),
        (lambda: vqp.VectorQuantize(dim=DIM, codebook_size=8, stochastic_sample_codes=True), "stochastic_sample"),
        (
            lambda: vqp.VectorQuantize(dim=DIM, codebook_size=8, codebook_dim=4, layernorm_after_project_in=True),
            "LayerNorm",
        ),
        (lambda: vqp.VectorQuantize(dim=DIM, codebook_size=8, codebook_dim=32), "codebook_dim=32 > dim=16"),
        (lambda: vqp.ResidualVQ(dim=DIM, num_quantizers=2, codebook_size=8, quantize_dropout=True), "quantize_dropout"),
        (lambda: vqp.ResidualVQ(dim=DIM, num_quantizers=2, codebook_size=(8, 16)), "per-level"),
        (lambda: vqp.FSQ(levels=[3, 3], preserve_symmetry=True), "preserve_symmetry"),
        (lambda: vqp.FSQ(levels=[5, 5], num_codebooks=2), "num_codebooks=2"),
        (lambda: vqp.LFQ(codebook_size=16, dim=8, spherical=True), "spherical"),
        (lambda: vqp.LFQ(codebook_size=16, dim=8, projection_has_bias=False), "projection_has_bias=False"),
    ],
)
def test_options_without_equivalent_are_named(build, message) -> None:
    with pytest.raises(ValueError, match=message):
        from_vector_quantize_pytorch(build())


def test_other_modules_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot convert torch.nn.modules.linear.Linear"):
        from_vector_quantize_pytorch(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="ResidualFSQ"):
        from_vector_quantize_pytorch(vqp.ResidualFSQ(dim=4, levels=[5, 5], num_quantizers=2))
