import os

import pytest
import torch

# One torch process at a time on the 2 CI cores; keep the tests themselves single-threaded
# so a notebook kernel or a parallel job does not fight them for cores.
torch.set_num_threads(int(os.environ.get("SEATBELT_TEST_THREADS", "1")))
# nbval starts the notebooks' kernels in book/: a relative or ~ cache path must mean the same there.
for _name in ("SEATBELT_CACHE", "SEATBELT_DATA", "SEATBELT_PARAMS"):
    if os.environ.get(_name):
        os.environ[_name] = os.path.abspath(os.path.expanduser(os.environ[_name]))
# Tests never reach the network: a dataset that is not on disk is missing, not downloaded.
os.environ.setdefault("SEATBELT_DOWNLOAD", "0")


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)
