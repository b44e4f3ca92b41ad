import os
import sys
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get("HISTO2ST_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the figures a test leaves open: xdist runs many tests in one process, and a test that counts the figures
    it shows must not see another test's."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real data beside the repository (``../shared/data``); skips the test when it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (set HISTO2ST_DATA to its location to run this test)")
    return SHARED_DATA


@pytest.fixture
def tiny_sample():
    """A 4-spot sample built from arrays: 300 x 400 px random image, 5 genes, 1 µm per pixel."""
    import histo2st as st

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    xy = np.array([[50, 50], [150, 50], [50, 150], [150, 150.0]])
    counts = rng.poisson(3, (4, 5))
    return st.io.from_arrays(image, xy, counts, list("abcde"), spot_diameter_um=55, spot_pitch_um=100, sample="tiny")


@pytest.fixture(scope="session")
def small_tissue():
    """A normalized 600 µm synthetic tissue at 2 µm/px (about 40 spots, 8 genes), built once per session."""
    import histo2st as st

    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=8, seed=1)
    st.pp.normalize(sdata)
    return sdata


@pytest.fixture(scope="session")
def tiny_pixnet() -> dict:
    """PixNet hyperparameters small enough for a CPU test to train in seconds."""
    return {"hidden_dim": 8, "pyramid_levels": 3, "crop_px": 96, "batch_size": 2, "tile_px": 128}
