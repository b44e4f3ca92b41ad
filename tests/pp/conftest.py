import numpy as np
import pytest


@pytest.fixture
def make_sample():
    """Factory of small synthetic samples built with ``from_arrays``: ``make_sample(name, genes, n_spots=30, ...)``."""
    import histo2st as st

    def make(name, genes, *, n_spots=30, zero_spots=(), seed=0):
        rng = np.random.default_rng(seed)
        image = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
        xy = np.column_stack([np.arange(n_spots) % 10 * 25 + 20, np.arange(n_spots) // 10 * 25 + 20]).astype(float)
        rates = rng.uniform(0.2, 30, len(genes))
        counts = rng.poisson(rates, (n_spots, len(genes)))
        counts[list(zero_spots)] = 0
        return st.io.from_arrays(
            image, xy, counts, list(genes), microns_per_pixel=1.0, spot_diameter_um=20, sample=name
        )

    return make
