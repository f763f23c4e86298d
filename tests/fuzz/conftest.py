"""Hypothesis profiles of the fuzz suite and what its tests share.

* ``ci`` (default): fixed, derandomized examples, few per test, so the suite is reproducible and stays under
  two minutes on two cores;
* ``long``: many random examples, for local runs: ``pytest tests/fuzz --hypothesis-profile=long``.

Every fuzz test asserts the same contract (helpers in ``fuzz_helpers.py``): bad input raises an exception from
a documented set whose message names the problem, and any input that is accepted gives finite output that
satisfies the contract.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, Phase, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
# No shrinking in CI: a failure is reported as found (shrinking known xfail cases would cost minutes).
settings.register_profile(
    "ci",
    max_examples=12,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=_SLOW_OK,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
settings.register_profile("long", max_examples=400, deadline=None, suppress_health_check=_SLOW_OK)
if settings.get_current_profile_name() == "default":
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
