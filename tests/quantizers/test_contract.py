"""Contract tests generated from the quantizer registry: every registered quantizer gets them all."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vqtok.quantizers import create, example_config, list_quantizers
from vqtok.testing import contract

NAMES = list_quantizers()


def build(name: str):
    torch.manual_seed(0)
    return create(name, **example_config(name))


@pytest.fixture(params=NAMES, ids=NAMES)
def name(request) -> str:
    return request.param


# The checks of vqtok.testing.contract that take one fresh quantizer, by what they assert.
CHECKS = {
    "shapes": contract.check_shapes,
    "dtypes": contract.check_dtypes,
    "eval_round_trip_is_exact": contract.check_round_trip,
    "encode_never_mutates_state": contract.check_encode_is_pure,
    "gradient_reaches_latents": contract.check_gradient,
    "mask_equivalence": contract.check_mask,
    "bad_inputs_raise_value_error": contract.check_bad_inputs,
}


@pytest.mark.parametrize("check", list(CHECKS.values()), ids=list(CHECKS))
def test_contract(name, check):
    check(build(name))


def test_state_dict_round_trip(name):
    contract.check_state_dict(build(name), build(name))


def test_codebook_learns(name):
    q = build(name)
    if not q.has_learned_codebook:
        pytest.skip(f"{name} has no learned codebook")
    contract.check_codebook_learns(q)


def test_registry_rejects_unknown_names_and_kwargs(name):
    with pytest.raises(ValueError, match="unknown quantizer"):
        create(name + "_does_not_exist")
    with pytest.raises(ValueError, match="bad config"):
        create(name, **example_config(name), not_an_option=1)


_shapes = st.lists(st.integers(min_value=0, max_value=4), min_size=0, max_size=3)


@pytest.mark.parametrize("qname", NAMES, ids=NAMES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lead=_shapes, train=st.booleans())
def test_any_leading_shape(qname, lead, train):
    q = _cached(qname).train(train)
    x = contract.make_latents(q, *lead, seed=len(lead))
    out = q(x)
    assert out.quantized.shape == x.shape
    assert out.indices.shape == (*lead, *q.index_shape)
    q.eval()
    assert torch.equal(q.decode(q.encode(x)), q(x).quantized)


_CACHE: dict = {}


def _cached(name: str):
    if name not in _CACHE:
        _CACHE[name] = build(name)
    return copy.deepcopy(_CACHE[name])
