"""Per-gene Pearson correlation and its summary against scipy.stats.pearsonr and brute force."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_
from hypothesis.extra.numpy import arrays
from scipy import stats

from histo2st.metrics import PCC_SUMMARY, mae, mse, pcc_per_gene, pcc_summary, pearson_per_gene

finite = st_.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st_.composite
def paired(draw):
    n_spots = draw(st_.integers(3, 25))
    n_genes = draw(st_.integers(1, 6))
    pred = draw(arrays(np.float64, (n_spots, n_genes), elements=finite))
    truth = draw(arrays(np.float64, (n_spots, n_genes), elements=finite))
    return pred, truth


def _brute_r(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


@settings(max_examples=60, deadline=None)
@given(paired())
def test_pearson_matches_scipy_gene_by_gene(pair):
    pred, truth = pair
    r, p = pearson_per_gene(pred, truth)
    assert r.shape == p.shape == (pred.shape[1],)
    for g in range(pred.shape[1]):
        if np.ptp(pred[:, g]) == 0 or np.ptp(truth[:, g]) == 0:
            assert np.isnan(r[g])
            assert np.isnan(p[g])
            continue
        expected = stats.pearsonr(pred[:, g], truth[:, g])
        assert r[g] == pytest.approx(expected.statistic, abs=1e-9)
        assert p[g] == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)
    np.testing.assert_array_equal(pcc_per_gene(pred, truth), r)


def test_pearson_against_brute_force_and_constant_genes():
    rng = np.random.default_rng(0)
    pred, truth = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
    truth[:, 3] += 2 * pred[:, 3]
    pred[:, 1] = 7.0
    truth[:, 4] = 0.0
    r, p = pearson_per_gene(pred.astype(np.float32), truth)
    for g in (0, 2, 3):
        assert r[g] == pytest.approx(_brute_r(pred[:, g].astype(np.float32), truth[:, g]), abs=1e-6)
    assert r[3] > 0.8
    assert p[3] < 1e-8
    assert np.isnan(r[[1, 4]]).all()
    assert np.isnan(p[[1, 4]]).all()


def test_pearson_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        pearson_per_gene(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="at least 2 spots"):
        pearson_per_gene(np.zeros((1, 2)), np.zeros((1, 2)))


def test_summary_is_mean_median_first_quartile_without_nan():
    pcc = np.array([0.1, np.nan, 0.5, 0.3, 0.9])
    summary = pcc_summary(pcc)
    assert list(summary) == list(PCC_SUMMARY)
    assert summary["PCC@M"] == pytest.approx(0.45)
    assert summary["PCC@S"] == pytest.approx(0.4)
    assert summary["PCC@F"] == pytest.approx(np.quantile([0.1, 0.3, 0.5, 0.9], 0.25))
    assert all(np.isnan(v) for v in pcc_summary([np.nan, np.nan]).values())


def test_errors():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    truth = np.array([[0.0, 2.0], [5.0, 4.0]])
    assert mse(pred, truth) == pytest.approx((1 + 0 + 4 + 0) / 4)
    assert mae(pred, truth) == pytest.approx((1 + 0 + 2 + 0) / 4)
    with pytest.raises(ValueError, match="same shape"):
        mse(pred, truth[:1])
