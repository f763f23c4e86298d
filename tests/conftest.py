import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    # The tests run tiny tensors: on a 2-core runner, OpenMP hand-offs between two threads cost more than they
    # save (measured 3-10x slower under load), so the whole session uses one intra-op thread (module fixtures included).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
