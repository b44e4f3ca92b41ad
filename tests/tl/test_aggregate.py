import numpy as np
import pytest

import histo2st as st
from histo2st._constants import INSTANCE_KEY, REGION_KEY
from histo2st._kernels import aggregate_circles


@pytest.fixture
def sample_with_map(tiny_sample):
    """tiny_sample plus a 3-channel map 'pred' at 4 H&E pixels per map pixel (as a coarse prediction would be)."""
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Scale

    rng = np.random.default_rng(0)
    data = rng.random((3, 75, 100)).astype(np.float32)
    data[2] = 7.0  # a constant channel
    tiny_sample.images["pred"] = Image2DModel.parse(
        data, dims=("c", "y", "x"), c_coords=["g0", "g1", "g2"], transformations={"global": Scale([4, 4], ("y", "x"))}
    )
    return tiny_sample, data


def test_aggregate_over_spots_links_table_to_shapes(sample_with_map):
    sdata, data = sample_with_map
    st.tl.aggregate(sdata, "pred", shapes_key="spots")
    table = sdata.tables["pred_spots"]
    assert "pred_spots_shapes" not in sdata.shapes  # the table annotates the existing circles
    attrs = table.uns["spatialdata_attrs"]
    assert attrs["region"] == "spots"
    assert attrs["region_key"] == REGION_KEY
    assert attrs["instance_key"] == INSTANCE_KEY
    assert list(table.var_names) == ["g0", "g1", "g2"]
    np.testing.assert_array_equal(table.obs[INSTANCE_KEY], sdata.shapes["spots"].index)
    circles = sdata.shapes["spots"]
    centers = np.column_stack([circles.geometry.x, circles.geometry.y]) / 4
    expected, _ = aggregate_circles(data, centers, circles["radius"].to_numpy() / 4, agg="mean")
    np.testing.assert_allclose(table.X, expected, rtol=1e-6)
    assert table.uns["histo2st"]["map_microns_per_pixel"] == pytest.approx(4.0)
    assert table.uns["histo2st"]["agg"] == "mean"


@pytest.mark.parametrize("shape", ["square", "circle"])
def test_aggregate_grid_writes_shapes_and_table(sample_with_map, shape):
    sdata, _ = sample_with_map
    st.tl.aggregate(sdata, "pred", spot_um=8, shape=shape, tissue_mask=False)
    key = f"pred_{shape}_8um"
    shapes, table = sdata.shapes[f"{key}_shapes"], sdata.tables[key]
    assert len(shapes) == len(table) == (400 // 8) * (300 // 8)
    assert table.uns["spatialdata_attrs"]["region"] == f"{key}_shapes"
    np.testing.assert_allclose(table[:, "g2"].X, 7.0, rtol=1e-6)  # a constant map averages to itself
    if shape == "square":
        np.testing.assert_allclose(shapes.geometry.area, 64.0)  # 8 µm at 1 µm per pixel
        np.testing.assert_allclose(table.obs["area_um2"], 64.0)
    else:
        np.testing.assert_allclose(shapes["radius"], 4.0)
    assert not table.obs["clipped"].any()
    with pytest.raises(ValueError, match="overwrite=True"):
        st.tl.aggregate(sdata, "pred", spot_um=8, shape=shape, tissue_mask=False)


def test_sub_pixel_bins_on_a_coarse_map(sample_with_map):
    sdata, _ = sample_with_map
    shapes, table = st.tl.aggregate(sdata, "pred", spot_um=2, tissue_mask=False, inplace=False)
    assert "pred_square_2um" not in sdata.tables
    assert len(table) == 200 * 150
    np.testing.assert_allclose(table[:, "g2"].X, 7.0, rtol=1e-6)
    np.testing.assert_allclose(table.obs["area_um2"], 4.0)


def test_default_tissue_mask_keeps_bins_on_tissue(tiny_sample):
    from spatialdata.models import Image2DModel

    from histo2st._core import microns_transformations

    he = np.full((3, 300, 400), 240, dtype=np.uint8)  # white glass
    he[:, 100:200, 50:150] = np.array([200, 80, 150], dtype=np.uint8)[:, None, None]  # pink tissue
    tiny_sample.images["he"] = Image2DModel.parse(
        he, dims=("c", "y", "x"), c_coords=["r", "g", "b"], transformations=microns_transformations(1.0)
    )
    st.tl.aggregate(tiny_sample, "he", spot_um=10)
    xy = tiny_sample.tables["he_square_10um"].obsm["spatial"]
    in_tissue = (xy[:, 0] > 50) & (xy[:, 0] < 150) & (xy[:, 1] > 100) & (xy[:, 1] < 200)
    assert in_tissue.sum() == 100  # every bin of the pink block
    # the others cover measured spots on the glass: a spot was measured, so it lies on tissue
    spots = tiny_sample.shapes["spots"]
    centers = np.column_stack([spots.geometry.x, spots.geometry.y])
    reach = spots["radius"].to_numpy().max() + 10 * np.sqrt(2)
    distance = np.linalg.norm(xy[~in_tissue, None, :] - centers[None], axis=-1).min(axis=1)
    assert (distance <= reach).all()
    assert (~in_tissue).sum() > 0


def test_clear_errors(sample_with_map):
    sdata, _ = sample_with_map
    with pytest.raises(ValueError, match="spot_um"):
        st.tl.aggregate(sdata, "pred")
    with pytest.raises(KeyError, match="No image"):
        st.tl.aggregate(sdata, "missing", spot_um=8)


def test_map_with_nan_off_tissue(sample_with_map):
    # a prediction NaN off tissue (left half of the map): bins there get no value, bins across the border only the
    # part with a value
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Scale

    sdata, data = sample_with_map
    data = data.copy()
    data[:, :, :50] = np.nan  # map x < 50 is H&E x < 200
    sdata.images["pred_nan"] = Image2DModel.parse(
        data, dims=("c", "y", "x"), c_coords=["g0", "g1", "g2"], transformations={"global": Scale([4, 4], ("y", "x"))}
    )
    _, table = st.tl.aggregate(sdata, "pred_nan", spot_um=6, tissue_mask=False, inplace=False)
    x = table.obsm["spatial"][:, 0]
    off, across, on = x + 3 <= 200, (x - 3 < 200) & (x + 3 > 200), x - 3 >= 200
    assert off.any()
    assert across.any()
    assert on.any()
    assert np.isnan(table.X[off]).all()
    np.testing.assert_allclose(table.obs["area_um2"][off], 0.0)
    np.testing.assert_allclose(table.obs["area_um2"][across & ~table.obs["clipped"]], 24.0)  # 4 of 6 µm have a value
    np.testing.assert_allclose(table.obs["area_um2"][on & ~table.obs["clipped"]], 36.0)
    assert np.isfinite(table.X[across | on]).all()
    np.testing.assert_allclose(table[:, "g2"].X[across | on], 7.0, rtol=1e-6)  # NaN does not leak into the mean


def test_aggregate_normalize_and_select_genes_write_a_backed_sample_to_its_store(tmp_path):
    # as predict does: what a function adds to a zarr-backed sample is in its store too, read back in a new object
    import spatialdata as sd

    sdata = st.datasets.synthetic_tissue(size_um=400, microns_per_pixel=2.0, n_genes=6, seed=3)
    path = tmp_path / "s.zarr"
    sdata.write(path)
    st.pp.normalize(sdata)
    st.pp.select_genes(sdata, n_top=4)
    st.tl.aggregate(sdata, "truth", spot_um=16, key_added="t16")
    back = sd.read_zarr(path)
    assert "t16" in back.tables
    assert "t16_shapes" in back.shapes
    np.testing.assert_allclose(back.tables["t16"].X, sdata.tables["t16"].X)
    table = back.tables["table"]
    assert table.n_vars == 4
    assert "normalize" in table.uns["histo2st"]
    assert "select_genes" in table.uns["histo2st"]
    dense = [np.asarray(x.todense() if hasattr(x, "todense") else x) for x in (table.X, sdata.tables["table"].X)]
    np.testing.assert_allclose(*dense, rtol=1e-6)
