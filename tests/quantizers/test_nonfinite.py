"""The shared numerical rule of the quantizers (module docstring of :mod:`vqtok.quantizers.base`).

Generated from the registry: every registered quantizer rejects latents that are not finite in fp32
(float64 1e300 included), rejects its own non-finite parameters and buffers, gives finite and
self-consistent output (or a clear error) at the edge of the fp32 range, and refuses unknown
``encode`` options with a ``TypeError``.
"""

from __future__ import annotations

import pytest
import torch

from vqtok.quantizers import create, example_config, list_quantizers
from vqtok.quantizers.base import EncodeOptionError, NonFiniteError
from vqtok.testing.contract import make_latents

NAMES = list_quantizers()
# Configs that the issue reported, beside the registry examples.
EXTRA = {
    "lfq_projected": ("lfq", {"codebook_size": 64, "dim": 8}),
    "lfq_plain": ("lfq", {"codebook_size": 64}),
    "bsq_plain": ("bsq", {"codebook_size": 64}),
    "vq_rotation": ("vq", {"dim": 8, "codebook_size": 32, "ema_decay": None, "gradient": "rotation"}),
    "vq_projected": ("vq", {"dim": 8, "codebook_size": 32, "codebook_dim": 4}),
    "fsq_projected": ("fsq", {"levels": (8, 5, 5), "dim": 6}),
    "group_lfq_projected": ("group_lfq", {"codebook_size": 8, "num_codebooks": 2, "dim": 8}),
}
CASES = {name: (name, example_config(name)) for name in NAMES} | EXTRA


def _build(case: str):
    name, cfg = CASES[case]
    torch.manual_seed(0)
    q = create(name, **cfg)
    x = make_latents(q, 4, 8)
    q.train()(x)  # first training forward: k-means init and statistics, as in real use
    return q.eval(), x


@pytest.mark.parametrize("case", sorted(CASES))
def test_values_overflowing_fp32_are_rejected_after_the_cast(case):
    q, x = _build(case)
    y = x.double()
    y[1, 2, 0] = 1e300  # finite in float64, Inf once cast to the fp32 compute dtype
    for call in (lambda: q(y), lambda: q.encode(y), lambda: q.train()(y)):
        with pytest.raises(NonFiniteError, match=type(q).__name__) as err:
            call()
        assert "1e+300" in str(err.value)
        q.eval()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("value", [3e38, -3e38, 1e30])
def test_fp32_extremes_give_consistent_finite_output_or_a_clear_error(case, value):
    q, x = _build(case)
    y = x.clone()
    y[1, 2, :] = value
    y[2, 3, 0] = -value
    try:
        with torch.enable_grad():  # the rotation trick only runs with grad enabled
            out = q(y)
    except NonFiniteError as err:
        assert type(q).__name__ in str(err) and "overflowed float32" in str(err)
        with pytest.raises(NonFiniteError):
            q.encode(y)
        return
    assert torch.isfinite(out.quantized).all(), "finite latents gave non-finite quantized values"
    indices = q.encode(y)
    assert torch.equal(indices, out.indices)
    upper = q._index_upper_bounds()
    assert int(indices.min()) >= 0 and bool((indices < upper).all())
    assert torch.equal(q.decode(indices), out.quantized), "decode(encode(x)) != eval forward(x)"


def _float_tensors(q) -> list[str]:
    named = list(q.named_parameters()) + list(q.named_buffers())
    return [n for n, t in named if t.is_floating_point() and t.numel()]


def _poison_cases() -> list[tuple[str, str]]:
    out = []
    for case in sorted(CASES):
        out += [(case, n) for n in _float_tensors(_build(case)[0])]
    # A quantizer whose configs here have no float tensor would go untested: add one with a projection.
    covered = {CASES[case][0] for case, _ in out}
    assert covered == set(NAMES), f"no config with a float parameter or buffer for {set(NAMES) - covered}"
    return out


@pytest.mark.parametrize(("case", "tensor"), _poison_cases())
def test_non_finite_parameters_and_buffers_are_detected(case, tensor):
    q, x = _build(case)
    before = q.encode(x)
    target = dict(list(q.named_parameters()) + list(q.named_buffers()))[tensor]
    for bad in (float("nan"), float("inf")):
        with torch.no_grad():
            saved = target.view(-1)[0].clone()
            target.view(-1)[0] = bad
        for call in (lambda: q.eval()(x), lambda: q.encode(x), lambda: q.decode(before), lambda: q.train()(x)):
            with pytest.raises(NonFiniteError, match=tensor.replace(".", r"\.")):
                call()
        with torch.no_grad():
            target.view(-1)[0] = saved
    assert torch.equal(q.eval().encode(x), before), "a refused call changed the quantizer"


def test_fsq_nan_projection_reported_case():
    q = create("fsq", levels=(8, 5, 5), dim=6)
    with torch.no_grad():
        q.project_in.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="project_in.weight"):
        q.encode(torch.randn(4, 6))


@pytest.mark.parametrize("name", NAMES)
def test_unknown_encode_options_are_a_type_error(name):
    q, x = _build(name)
    with pytest.raises(TypeError, match="bogus"):
        q.encode(x, bogus=1)
    with pytest.raises(EncodeOptionError, match=type(q).__name__):
        q.encode(x[:0], bogus=1)  # also on an empty batch, which skips the search
    for option in q.encode_options:
        with pytest.raises(TypeError):
            q.encode(x, **{option + "s": 1})


def test_lfq_reported_case_fp64_1e300():
    q = create("lfq", codebook_size=64, dim=8).eval()
    x = torch.randn(5, 8, dtype=torch.float64)
    x[2, 3] = 1e300
    with pytest.raises(NonFiniteError, match=r"LFQ got latents .* 1e\+300"):
        q(x)


def test_power_of_two_row_scaling_keeps_values_and_gradients():
    """The overflow-safe rotation trick (VQ) and sphere projection (BSQ) equal the plain ones at normal scale."""
    from vqtok.quantizers import _codebook as cb
    from vqtok.quantizers.vq import _scaled_rotation_trick

    g = torch.Generator().manual_seed(0)
    z = (torch.randn(64, 8, generator=g) * torch.logspace(-3, 3, 64)[:, None]).requires_grad_(True)
    q = torch.randn(64, 8, generator=g)
    up = torch.randn(64, 8, generator=g)
    plain = cb.rotation_trick(z, q)
    (g_plain,) = torch.autograd.grad(plain, z, up)
    scaled = _scaled_rotation_trick(z, q)
    (g_scaled,) = torch.autograd.grad(scaled, z, up)
    torch.testing.assert_close(scaled, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_scaled, g_plain, rtol=1e-4, atol=1e-6)

    bsq = create("bsq", codebook_size=2**8)
    u = bsq._prepare(z)
    (g_bsq,) = torch.autograd.grad(u, z, up)
    ref = torch.nn.functional.normalize(z, dim=-1)
    (g_ref,) = torch.autograd.grad(ref, z, up)
    assert torch.equal(u, ref)
    torch.testing.assert_close(g_bsq, g_ref, rtol=1e-5, atol=1e-8)
    # At 3e38 the plain forms overflow (Inf, or a zero vector for BSQ); the scaled ones do not.
    huge = torch.full((1, 8), 3e38)
    assert torch.isfinite(_scaled_rotation_trick(huge, -huge)).all()
    torch.testing.assert_close(bsq._prepare(huge), torch.full((1, 8), 8**-0.5))
