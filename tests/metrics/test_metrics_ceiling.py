"""The split-half noise ceiling against the correlation of simulated measurements with the expression behind them."""

import numpy as np
import pytest
import scipy.sparse as sp

from histo2st.metrics import noise_ceiling


def _simulated(n_spots=1500, seed=0):
    """Poisson counts of 6 genes whose spot-to-spot signal grows from none to strong, plus the rest of the library."""
    rng = np.random.default_rng(seed)
    library = rng.integers(1500, 6000, n_spots)
    signal = rng.normal(size=(n_spots, 1))
    strength = np.array([0.0, 0.1, 0.25, 0.5, 1.0, 1.0])
    share = np.array([2e-3, 2e-3, 1e-3, 1e-3, 5e-4, 5e-3]) * np.exp(strength * signal)
    rate = library[:, None] * share
    return rng, library, rate


def _oracle(rng, library, rate, target, n_draws=300):
    """Per gene, the correlation of measured log-normalized values with their mean over new draws at the same rates."""

    def normalized(counts):
        return np.log1p(counts / library[:, None] * target)

    measured = normalized(rng.poisson(rate))
    expected = np.mean([normalized(rng.poisson(rate)) for _ in range(n_draws)], axis=0)
    return [np.corrcoef(measured[:, g], expected[:, g])[0, 1] for g in range(rate.shape[1])]


def test_ceiling_matches_the_correlation_with_the_expression_behind_the_counts():
    rng, library, rate = _simulated()
    target = 1e4
    counts = rng.poisson(rate)
    oracle = _oracle(rng, library, rate, target)
    # the library over all genes, as normalize records it: the genes given plus the others' counts
    ceiling = noise_ceiling(counts, library + counts.sum(axis=1), target_sum=target)
    assert ceiling.shape == (6,)
    # where the signal is clear the estimate is close; where it is weak it is noisy (the docstring's caveat)
    np.testing.assert_allclose(ceiling[3:], np.asarray(oracle[3:]), atol=0.05)
    assert np.all(np.diff(ceiling[2:5]) > 0)  # stronger signal, higher ceiling
    assert ceiling[0] < 0.5


def test_ceiling_is_reproducible_and_takes_sparse_counts_and_per_spot_targets():
    rng, library, rate = _simulated(n_spots=300, seed=1)
    counts = rng.poisson(rate)
    total = library + counts.sum(axis=1)
    dense = noise_ceiling(counts, total, seed=3)
    np.testing.assert_array_equal(dense, noise_ceiling(sp.csr_matrix(counts), total, seed=3))
    np.testing.assert_array_equal(dense, noise_ceiling(counts, total, target_sum=np.full(300, 1e4), seed=3))
    assert not np.array_equal(dense, noise_ceiling(counts, total, seed=4))
    assert np.all((dense[np.isfinite(dense)] >= 0) & (dense[np.isfinite(dense)] <= 1))


def test_ceiling_constant_gene_is_nan():
    counts = np.zeros((50, 2), dtype=int)
    counts[:, 1] = np.arange(50) * 10
    ceiling = noise_ceiling(counts, np.full(50, 1000))
    assert np.isnan(ceiling[0])
    assert ceiling[1] > 0.9


@pytest.mark.parametrize(
    ("counts", "library", "match"),
    [
        (np.full((5, 2), 0.5), None, "raw counts"),
        (-np.ones((5, 2)), None, "raw counts"),
        (np.ones(5), None, r"\(n_spots, n_genes\)"),
        (np.ones((5, 2)), np.ones(4), "one value per spot"),
        (np.full((5, 2), 3), np.full(5, 4), "over all genes"),
    ],
)
def test_ceiling_rejects_what_is_not_raw_counts(counts, library, match):
    with pytest.raises(ValueError, match=match):
        noise_ceiling(counts, library)
    with pytest.raises(ValueError, match="n_splits"):
        noise_ceiling(np.ones((5, 2), dtype=int), n_splits=0)
