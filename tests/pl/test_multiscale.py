import numpy as np
import pytest

import histo2st as st


def _values(image) -> np.ndarray:
    return np.ma.filled(image.get_array(), np.nan)


def test_prediction_and_truth_binned_at_each_size_on_one_scale(predicted, tmp_path):
    path = tmp_path / "multiscale.pdf"
    axes = st.pl.multiscale(predicted, "GENE02", bins_um=(4, 16, 55), save=path, show=False)
    assert path.is_file()
    assert axes.shape == (2, 3)
    assert [a.get_title() for a in axes[:, 0]] == ["GENE02: predicted, 4 µm bins", "GENE02: truth, 4 µm bins"]
    images = [a.get_images()[0] for a in axes.ravel()]
    assert len({im.get_clim() for im in images}) == 1  # one color scale
    pred_4, pred_16, pred_55 = (_values(im) for im in images[:3])
    assert [p.shape for p in (pred_4, pred_16, pred_55)] == [(100, 100), (25, 25), (8, 8)]
    # 4 µm bins are the 4 µm/px map's own pixels; off-tissue NaN stays NaN and is not spread along the rows
    expected = np.asarray(predicted["pred"].sel(c="GENE02").values, dtype=np.float32)
    np.testing.assert_allclose(pred_4, expected, rtol=1e-6)
    # a 16 µm bin is the mean of 4 x 4 map pixels, NaN left out
    np.testing.assert_allclose(pred_16[5, 7], np.nanmean(expected[20:24, 28:32]), rtol=1e-5)
    assert np.isnan(pred_16[:2, :2]).all()
    assert np.isfinite(pred_16[2:, :]).all()
    # 55 µm bins run past the 400 µm field and are drawn where they lie
    assert images[2].get_extent() == pytest.approx((0, 440, 440, 0))
    # the truth on the measurements' scale: log-normalized 2 x 2 pixel sums, i.e. the fabricated prediction
    truth_4 = _values(images[3])
    finite = np.isfinite(expected) & np.isfinite(truth_4)
    np.testing.assert_allclose(truth_4[finite], expected[finite], rtol=2e-3, atol=2e-3)
    colorbars = [a for a in axes[0, 0].figure.axes if a.get_label() == "<colorbar>"]
    assert [c.get_ylabel() for c in colorbars] == ["log1p(CP10k)"]


def test_without_truth_one_row(predicted):
    without_truth = predicted.subset(["pred", "spots", "table", "pred_spots"])
    axes = st.pl.multiscale(without_truth, "GENE00", bins_um=(8, 16), show=False)
    assert axes.shape == (1, 2)
    assert all("predicted" in a.get_title() for a in axes.ravel())


def test_max_px_keeps_every_kth_bin(predicted):
    fig = st.pl.multiscale(predicted, "GENE00", bins_um=(2,), max_px=50, return_fig=True, show=False)
    image = fig.axes[0].get_images()[0]
    assert _values(image).shape == (50, 50)
    assert image.get_extent() == pytest.approx((0, 400, 400, 0))


def test_multiscale_errors(predicted):
    with pytest.raises(KeyError, match="not a channel"):
        st.pl.multiscale(predicted, "NOPE", show=False)
    with pytest.raises(ValueError, match="positive"):
        st.pl.multiscale(predicted, "GENE00", bins_um=(0, 8), show=False)
