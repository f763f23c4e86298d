"""Executable form of the quantizer contract (see ``vqtok/quantizers/base.py``).

``assert_quantizer_contract(q)`` runs every check on one instance; the test-suite calls the
individual ``check_*`` functions so that each property is reported separately.
"""

from __future__ import annotations

import copy
import io

import torch
from torch import Tensor

from ..quantizers.base import Quantizer

__all__ = [
    "assert_quantizer_contract",
    "check_bad_inputs",
    "check_codebook_learns",
    "check_dtypes",
    "check_encode_is_pure",
    "check_gradient",
    "check_mask",
    "check_round_trip",
    "check_shapes",
    "check_state_dict",
    "make_latents",
]


def make_latents(q: Quantizer, *lead: int, seed: int = 0, scale: float = 1.0) -> Tensor:
    """Clustered random latents ``(*lead, D)``: a few centres plus noise, like encoder outputs."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(8, q.dim, generator=g) * scale
    n = 1
    for s in lead:
        n *= s
    pick = torch.randint(0, 8, (n,), generator=g)
    x = centres[pick] + 0.3 * scale * torch.randn(n, q.dim, generator=g)
    return x.reshape(*lead, q.dim)


def _assert_indices_valid(q: Quantizer, indices: Tensor, lead: tuple[int, ...]) -> None:
    assert indices.dtype == torch.int64, f"indices dtype {indices.dtype}, expected int64"
    expected = (*lead, *q.index_shape)
    assert tuple(indices.shape) == expected, f"indices shape {tuple(indices.shape)}, expected {expected}"
    if indices.numel():
        upper = q._index_upper_bounds()
        assert int(indices.min()) >= 0
        assert bool((indices < upper).all()), "indices out of range"


def check_shapes(q: Quantizer, lead: tuple[int, ...] = (2, 3, 5)) -> None:
    x = make_latents(q, *lead)
    for mode in (True, False):
        q.train(mode)
        out = q(x)
        assert out.quantized.shape == x.shape
        assert out.quantized.dtype == x.dtype
        _assert_indices_valid(q, out.indices, lead)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        _assert_indices_valid(q, q.encode(x), lead)
        assert q.decode(q.encode(x)).shape == x.shape
    assert q.bits_per_token > 0


def check_dtypes(q: Quantizer) -> None:
    q.eval()
    x32 = make_latents(q, 4, 16)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = x32.to(dtype)
        out = q(x)
        assert out.quantized.dtype == dtype, f"quantized dtype {out.quantized.dtype} for {dtype} input"
        assert torch.isfinite(out.quantized.float()).all()
        _assert_indices_valid(q, out.indices, (4, 16))
    # Under autocast the quantizer must still compute in fp32 and return the input dtype.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(x32)
    assert out.quantized.dtype == torch.float32
    torch.testing.assert_close(out.indices, q.encode(x32), rtol=0, atol=0)


def check_round_trip(q: Quantizer) -> None:
    q.eval()
    x = make_latents(q, 3, 50, seed=1)
    out = q(x)
    indices = q.encode(x)
    assert torch.equal(indices, out.indices), "eval forward and encode disagree on indices"
    decoded = q.decode(indices)
    assert torch.equal(decoded, out.quantized), "decode(encode(x)) differs from forward(x).quantized"
    # Decoding must not depend on how indices are batched.
    assert torch.equal(q.decode(indices[:1]), decoded[:1])


def _snapshot(q: Quantizer) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in q.state_dict().items()}


def _same_state(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def check_encode_is_pure(q: Quantizer) -> None:
    x = make_latents(q, 64, seed=2)
    for mode in (True, False):
        q.train(mode)
        before = _snapshot(q)
        q.encode(x)
        q.decode(q.encode(x))
        assert _same_state(before, _snapshot(q)), f"encode/decode changed state (train={mode})"


def check_gradient(q: Quantizer) -> None:
    q.train()
    x = make_latents(q, 4, 32, seed=3).requires_grad_(True)
    out = q(x)
    (out.quantized.square().sum() + out.loss).backward()
    assert x.grad is not None, "no gradient reached the latents"
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0, "gradient to the latents is all zero"


def _quantization_error(q: Quantizer, x: Tensor) -> float:
    with torch.no_grad():
        return float((q.decode(q.encode(x)) - x).square().mean())


def check_codebook_learns(q: Quantizer, steps: int = 30, lr: float = 1e-2) -> None:
    """Training on a fixed batch changes the codebook and lowers the quantization error."""
    x = make_latents(q, 256, seed=4)
    q.train()
    q(x[:8])  # lets data-dependent initialisation (k-means) happen before the baseline
    before_state = _snapshot(q)
    before = _quantization_error(q, x)
    params = [p for p in q.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if params else None
    for _ in range(steps):
        out = q(x)
        if opt is not None:
            opt.zero_grad()
            loss = out.loss + (out.quantized - x).square().mean()
            loss.backward()
            opt.step()
    after = _quantization_error(q, x)
    assert not _same_state(before_state, _snapshot(q)), "training did not change the codebook state"
    assert after < before, f"quantization error did not fall: {before:.4f} -> {after:.4f}"


def check_state_dict(q: Quantizer, fresh: Quantizer) -> None:
    """A freshly built instance that loads ``q``'s saved state encodes identically."""
    x = make_latents(q, 128, seed=5)
    q.train()
    for _ in range(3):
        q(x)
    q.eval()
    buffer = io.BytesIO()
    torch.save(q.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    fresh.eval()
    assert torch.equal(q.encode(x), fresh.encode(x)), "reloaded quantizer encodes differently"
    assert torch.equal(q(x).quantized, fresh(x).quantized)


def check_mask(q: Quantizer) -> None:
    """Masked tokens take no part: the valid tokens' outputs equal those of forward(x[mask]).

    Quantizers whose tokens interact (``token_wise = False``, e.g. multi-scale pooling) cannot be run on
    ``x[mask]``; for them, changing the masked tokens must change no valid output, loss or state.
    """
    x = make_latents(q, 2, 40, seed=6)
    mask = torch.rand(2, 40, generator=torch.Generator().manual_seed(0)) > 0.3
    if not q.token_wise:
        _check_mask_isolates(q, x, mask)
        return
    for mode in (False, True):
        a, b = copy.deepcopy(q).train(mode), copy.deepcopy(q).train(mode)
        torch.manual_seed(0)
        masked = a(x, mask=mask)
        torch.manual_seed(0)
        plain = b(x[mask])
        torch.testing.assert_close(masked.quantized[mask], plain.quantized)
        assert torch.equal(masked.indices[mask], plain.indices)
        torch.testing.assert_close(masked.loss, plain.loss)
        _assert_indices_valid(q, masked.indices, (2, 40))
        assert _same_state(_snapshot(a), _snapshot(b)), "masked tokens changed the codebook state"


def _check_mask_isolates(q: Quantizer, x: Tensor, mask: Tensor) -> None:
    other = x.clone()
    other[~mask] = 5.0 * torch.randn(int((~mask).sum()), q.dim, generator=torch.Generator().manual_seed(1))
    for mode in (False, True):
        a, b = copy.deepcopy(q).train(mode), copy.deepcopy(q).train(mode)
        torch.manual_seed(0)
        first = a(x, mask=mask)
        torch.manual_seed(0)
        second = b(other, mask=mask)
        torch.testing.assert_close(first.quantized[mask], second.quantized[mask])
        assert torch.equal(first.indices[mask], second.indices[mask])
        torch.testing.assert_close(first.loss, second.loss)
        _assert_indices_valid(q, first.indices, tuple(mask.shape))
        assert _same_state(_snapshot(a), _snapshot(b)), "masked tokens changed the codebook state"


def _raises_value_error(fn, match: str | None = None) -> str:  # type: ignore[no-untyped-def]
    try:
        fn()
    except ValueError as err:
        msg = str(err)
        if match is not None:
            assert match.lower() in msg.lower(), f"error {msg!r} does not mention {match!r}"
        return msg
    raise AssertionError("expected a ValueError")


def check_bad_inputs(q: Quantizer) -> None:
    q.eval()
    x = make_latents(q, 2, 8)
    wrong_dim = torch.randn(2, 8, q.dim + 1)
    _raises_value_error(lambda: q(wrong_dim), str(q.dim))
    _raises_value_error(lambda: q.encode(wrong_dim), str(q.dim))
    for bad in (float("nan"), float("inf")):
        y = x.clone()
        y[1, 3, 0] = bad
        _raises_value_error(lambda y=y: q(y), "nan")
        _raises_value_error(lambda y=y: q.encode(y), "nan")
    _raises_value_error(lambda: q(x.long()), "floating")
    _raises_value_error(lambda: q(x, mask=torch.ones(2, 7, dtype=torch.bool)), "mask")
    _raises_value_error(lambda: q(x, mask=torch.ones(2, 8)), "mask")

    indices = q.encode(x)
    too_big = indices.clone()
    too_big.view(-1)[0] = 10**12 if q.codebook_size < 10**12 else torch.iinfo(torch.int64).max
    _raises_value_error(lambda: q.decode(too_big), "range")
    negative = indices.clone()
    negative.view(-1)[-1] = -1
    _raises_value_error(lambda: q.decode(negative), "range")
    _raises_value_error(lambda: q.decode(indices.float()), "integer")
    if q.index_shape:
        _raises_value_error(lambda: q.decode(indices[..., :0]), "shape")
        _raises_value_error(lambda: q.decode(torch.cat([indices, indices], -1)), "shape")


def assert_quantizer_contract(q: Quantizer, fresh: Quantizer) -> None:
    """Runs every contract check; ``fresh`` is a second instance built with the same config."""
    check_shapes(copy.deepcopy(q))
    check_dtypes(copy.deepcopy(q))
    check_round_trip(copy.deepcopy(q))
    check_encode_is_pure(copy.deepcopy(q))
    check_gradient(copy.deepcopy(q))
    check_mask(copy.deepcopy(q))
    check_bad_inputs(copy.deepcopy(q))
    check_state_dict(copy.deepcopy(q), fresh)
    if q.has_learned_codebook:
        check_codebook_learns(copy.deepcopy(q))
