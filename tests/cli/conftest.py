import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # These tests run tiny convs: on a shared 2-core runner, two spinning OpenMP threads per process cost far more
    # than they gain, so each test uses one intra-op thread and restores the setting afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
