import os

import pytest
import torch

# One torch process at a time on the 2 CI cores; keep the tests themselves single-threaded
# so a notebook kernel or a parallel job does not fight them for cores.
torch.set_num_threads(int(os.environ.get("SEATBELT_TEST_THREADS", "1")))


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)
