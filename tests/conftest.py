"""Shared test fixtures."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The team's real RGB-D samples (../shared/data); a user's clone may not have them."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data samples not present at {SHARED_DATA} (only in the team's checkout)")
    return SHARED_DATA
