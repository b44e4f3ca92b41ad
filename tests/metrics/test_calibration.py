"""Coverage of predicted intervals, their agreement with the error, and the per-gene scale that calibrates them."""

import numpy as np
import pytest

from histo2st.metrics import interval_coverage, std_scale_per_gene, uncertainty_error_spearman, z_of


def _gaussian(n=20_000, genes=3, seed=0, true_std=(0.5, 1.0, 2.0)):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(n, genes))
    std = np.broadcast_to(np.asarray(true_std[:genes]), (n, genes))
    return mean + rng.normal(size=(n, genes)) * std, mean, np.array(std)


def test_z_is_the_central_gaussian_quantile():
    assert z_of(0.8) == pytest.approx(1.2816, abs=1e-4)
    assert z_of(0.5) == pytest.approx(0.6745, abs=1e-4)
    with pytest.raises(ValueError, match="between 0 and 1"):
        z_of(80)


def test_a_right_std_covers_the_nominal_fraction():
    truth, mean, std = _gaussian()
    coverage = interval_coverage(truth, mean, std)
    for level, covered in coverage.items():
        assert covered == pytest.approx(level, abs=0.01)
    narrow = interval_coverage(truth, mean, std / 2, levels=[0.8])
    assert narrow[0.8] < 0.55  # half the std: the 80 % interval holds ~52 %


def test_non_finite_entries_are_left_out():
    truth, mean, std = _gaussian(n=1000)
    truth[:10] = np.nan
    std[10:20] = np.inf
    assert 0.75 < interval_coverage(truth, mean, std, levels=[0.8])[0.8] < 0.85
    assert np.isnan(interval_coverage(np.full((2, 2), np.nan), np.zeros((2, 2)), np.ones((2, 2)))[0.8])
    with pytest.raises(ValueError, match="one shape"):
        interval_coverage(truth, mean, std[:5])


def test_spearman_is_high_when_the_std_ranks_the_errors():
    rng = np.random.default_rng(1)
    std = rng.uniform(0.1, 3, size=(5000, 2))
    truth = rng.normal(size=std.shape) * std
    informative = uncertainty_error_spearman(truth, np.zeros_like(truth), std)
    shuffled = uncertainty_error_spearman(truth, np.zeros_like(truth), rng.permutation(std.ravel()).reshape(std.shape))
    assert informative > 0.3
    assert abs(shuffled) < 0.05
    assert np.isnan(uncertainty_error_spearman(truth, truth, std))  # no error at all: nothing to rank


def test_the_scale_per_gene_restores_coverage_on_new_data():
    truth, mean, std = _gaussian(seed=2)
    reported = std * np.array([0.25, 1.0, 4.0])  # one gene too narrow, one right, one too wide
    factors = std_scale_per_gene(truth, mean, reported, level=0.8)
    np.testing.assert_allclose(factors, [4.0, 1.0, 0.25], rtol=0.05)
    new_truth, new_mean, new_std = _gaussian(seed=3)
    calibrated = new_std * np.array([0.25, 1.0, 4.0]) * factors
    for gene in range(3):
        covered = interval_coverage(new_truth[:, gene], new_mean[:, gene], calibrated[:, gene], levels=[0.8])
        assert covered[0.8] == pytest.approx(0.8, abs=0.02)
    zero = std_scale_per_gene(truth[:, :1], mean[:, :1], np.zeros_like(std[:, :1]))
    assert np.isnan(zero).all()
