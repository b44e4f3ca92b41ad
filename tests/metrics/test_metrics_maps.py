"""Per-gene SSIM of dense maps against scikit-image."""

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from histo2st.metrics import ssim_per_gene


def test_ssim_equals_scikit_image_with_the_truth_range():
    rng = np.random.default_rng(0)
    truth = rng.gamma(2.0, size=(3, 30, 25))
    pred = truth + rng.normal(scale=0.5, size=truth.shape)
    ssim = ssim_per_gene(pred, truth)
    for g in range(3):
        expected = structural_similarity(truth[g], pred[g], data_range=float(np.ptp(truth[g])))
        assert ssim[g] == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(ssim_per_gene(truth, truth), 1.0)


def test_ssim_skips_missing_pixels_and_handles_small_or_constant_maps():
    rng = np.random.default_rng(1)
    truth = rng.gamma(2.0, size=(2, 20, 20))
    pred = truth.copy()
    pred[:, :5, :5] = np.nan
    np.testing.assert_allclose(ssim_per_gene(pred, truth), 1.0)
    small = rng.normal(size=(1, 5, 4))
    assert ssim_per_gene(small, small)[0] == pytest.approx(1.0)  # window shrinks to 3
    assert np.isnan(ssim_per_gene(small[:, :2], small[:, :2])).all()
    flat = np.ones((1, 10, 10))
    assert np.isnan(ssim_per_gene(flat + rng.normal(size=flat.shape), flat)).all()
    with pytest.raises(ValueError, match="same shape"):
        ssim_per_gene(truth, truth[:1])
