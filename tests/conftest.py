import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = Path(os.environ.get("MDFLD_DATA_ROOT", REPO.parent / "shared" / "data"))


def pytest_configure(config):
    config.addinivalue_line("markers", "real_data: needs the real data root (../shared/data or $MDFLD_DATA_ROOT)")


def pytest_collection_modifyitems(config, items):
    if (DATA_ROOT / "300w").is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data root not found at {DATA_ROOT} (set MDFLD_DATA_ROOT)")
    for item in items:
        if "real_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shape():
    """A procedural photo face's exact landmarks (a realistic 68-point shape)."""
    from lib.data.procedural import render_face
    return render_face(3, "photo", 128).landmarks


@pytest.fixture
def rng():
    return np.random.default_rng(0)
