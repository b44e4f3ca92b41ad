import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import EllipseCollection
from matplotlib.figure import Figure

import histo2st as st


def _colorbar_labels(fig) -> list[str]:
    return [a.get_ylabel() for a in fig.axes if a.get_label() == "<colorbar>"]


def test_both_draws_prediction_over_he_and_measured_spots(predicted, tmp_path):
    genes = ["GENE00", "GENE03"]
    path = tmp_path / "figs" / "spatial.png"
    axes = st.pl.spatial_gene(predicted, genes, source="both", save=path, show=False)
    assert path.is_file()
    assert path.stat().st_size > 0
    assert axes.shape == (2, 2)
    for row, gene in zip(axes, genes, strict=True):
        pred_ax, spots_ax = row
        assert gene in pred_ax.get_title()
        assert "predicted" in pred_ax.get_title()
        assert gene in spots_ax.get_title()
        assert "measured spots" in spots_ax.get_title()
        he, pred = pred_ax.get_images()
        assert he.get_array().shape == (200, 200, 3)
        # the 4 µm/px map and the 2 µm/px H&E cover the same 400 µm field
        assert he.get_extent() == pytest.approx((0, 400, 400, 0))
        assert pred.get_extent() == pytest.approx((0, 400, 400, 0))
        values = np.ma.filled(pred.get_array(), np.nan)
        assert values.shape == (100, 100)
        assert np.isnan(values[:10, :10]).all()
        assert np.isfinite(values[10:, 10:]).all()
        assert pred.cmap.get_bad()[3] == 0  # off tissue is transparent
        (spots,) = [c for c in spots_ax.collections if isinstance(c, EllipseCollection)]
        measured = predicted["table"][:, gene].X
        np.testing.assert_allclose(spots.get_array(), np.asarray(measured.todense()).ravel(), rtol=1e-6)
        # prediction and measurement share one color scale in a row
        assert pred.get_clim() == spots.get_clim()
    fig = axes[0, 0].figure
    assert _colorbar_labels(fig) == ["log1p(CP10k)"] * 4


def test_truth_is_log_normalized_like_the_measurements(predicted):
    fig = st.pl.spatial_gene(predicted, "GENE01", source="truth", max_px=100, return_fig=True, show=False)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "GENE01: truth"
    he, truth = ax.get_images()
    assert he.get_array().shape[:2] == truth.get_array().shape == (100, 100)
    raw = np.asarray(predicted["truth"].data[:, 1::2, 1::2].compute(), dtype=np.float64)
    totals = raw.sum(0)
    expected = np.where(totals > 0, np.log1p(raw[1] / np.where(totals > 0, totals, 1) * 1e4), np.nan)
    np.testing.assert_allclose(np.ma.filled(truth.get_array(), np.nan), expected, rtol=1e-5)
    assert _colorbar_labels(fig) == ["log1p(CP10k)"]


def test_truth_falls_back_to_measured_spots(predicted):
    without_truth = predicted.subset(["he", "pred", "spots", "table", "pred_spots"])
    ax = st.pl.spatial_gene(without_truth, "GENE02", source="truth", show=False)
    assert ax.get_title() == "GENE02: measured spots"
    assert any(isinstance(c, EllipseCollection) for c in ax.collections)


def test_spot_um_plots_the_bins_table(predicted):
    ax = st.pl.spatial_gene(predicted, "GENE00", source="pred", spot_um=8, show=False)
    assert ax.get_title() == "GENE00: predicted, 8 µm bins"
    _, bins = ax.get_images()
    grid = np.ma.filled(bins.get_array(), np.nan)
    assert grid.shape == (50, 50)
    table = predicted["pred_square_8um"]
    col, row = ((table.obsm["spatial"] * 2 - 4) / 8).round().astype(int).T  # centers in H&E px -> bin index
    np.testing.assert_allclose(grid[row, col], table[:, "GENE00"].X.ravel(), rtol=1e-6)
    assert bins.get_extent() == pytest.approx((0, 400, 400, 0))
    # no 16 µm table: the dense map, with a warning
    ax = st.pl.spatial_gene(predicted, "GENE00", source="pred", spot_um=16, show=False)
    assert ax.get_title() == "GENE00: predicted"


def test_grid_of_sources_and_pixel_coordinates(predicted):
    axes = st.pl.spatial_gene(
        predicted, ["GENE04"], source=("pred", "truth", "spots"), coordinate_system="global", show=False
    )
    assert [a.get_title() for a in axes[0]] == ["GENE04: predicted", "GENE04: truth", "GENE04: measured spots"]
    # H&E pixels: the 400 µm field is 200 px
    assert axes[0, 0].get_images()[1].get_extent() == pytest.approx((0, 200, 200, 0))
    assert axes[0, 2].get_xlim() == pytest.approx((0, 200))


def test_bad_input_errors(predicted):
    with pytest.raises(KeyError, match="not a channel"):
        st.pl.spatial_gene(predicted, "NOPE", show=False)
    with pytest.raises(ValueError, match="`source`"):
        st.pl.spatial_gene(predicted, "GENE00", source="everything", show=False)
    with pytest.raises(KeyError, match="st.tl.predict"):
        st.pl.spatial_gene(predicted, "GENE00", pred_key="missing", show=False)
    one_axes = plt.figure().add_subplot()
    with pytest.raises(ValueError, match="4 panels"):
        st.pl.spatial_gene(predicted, ["GENE00", "GENE01"], source="both", ax=one_axes, show=False)
    with pytest.raises(ValueError, match="figure format"):
        st.pl.spatial_gene(predicted, "GENE00", save="figure", show=False)


def test_zarr_backed_sample_is_read_strided_and_from_the_pyramid(predicted, tmp_path):
    import spatialdata as sd
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import get_transformation

    sample = predicted.subset(["he", "pred", "spots", "table", "pred_spots"])
    pred = sample["pred"]
    sample.images["pred_pyramid"] = Image2DModel.parse(
        pred.data,
        dims=("c", "y", "x"),
        c_coords=list(pred.coords["c"].values),
        scale_factors=[2, 2],
        transformations=get_transformation(pred, get_all=True),
    )
    st.io.write_zarr(sample, tmp_path / "sample.zarr")
    backed = sd.read_zarr(tmp_path / "sample.zarr")
    assert isinstance(backed["pred"].data, da.Array)

    ax = st.pl.spatial_gene(backed, "GENE00", source="pred", max_px=30, show=False)
    he, pred_image = ax.get_images()
    assert max(he.get_array().shape[:2]) <= 30
    assert max(pred_image.get_array().shape) <= 30
    assert pred_image.get_extent() == pytest.approx((0, 400, 400, 0))
    assert isinstance(backed["pred"].data, da.Array)  # still lazy: nothing was loaded into the element

    # levels 100, 50 and 25 px: the finest that fits in 60 px is read whole, not strided from full resolution
    ax = st.pl.spatial_gene(backed, "GENE00", source="pred", pred_key="pred_pyramid", max_px=60, show=False)
    level = np.ma.filled(ax.get_images()[1].get_array(), np.nan)
    assert level.shape == (50, 50)
    expected = np.asarray(backed["pred_pyramid"]["scale1"].ds["image"].sel(c="GENE00").values, dtype=np.float32)
    np.testing.assert_array_equal(level, expected)
    assert ax.get_images()[1].get_extent() == pytest.approx((0, 400, 400, 0))
