"""Shared test fixtures."""
from pathlib import Path

import pytest
import torch

# Tests use tiny tensors, and `make test` runs one pytest worker per core (-n 2): one torch thread
# per process is fastest and avoids oversubscription (measured: a model test file took 31 s with
# 2 threads per worker on a busy machine, 4.5 s with 1).
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The team's real RGB-D samples (../shared/data); a user's clone may not have them."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data samples not present at {SHARED_DATA} (only in the team's checkout)")
    return SHARED_DATA
