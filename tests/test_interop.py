"""What a prediction written to zarr gives the scverse tools users already have, with no glue in between.

spatialdata-plot renders the stored map and its tissue labels; scanpy clusters the 8 µm bin table (neighbors,
leiden) and squidpy computes Moran's I on it. The real-data variant (her2st, a whole section) is in
tests/io/test_real_data.py behind the ``slow`` marker.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import histo2st as st

sd = pytest.importorskip("spatialdata")
pytest.importorskip("spatialdata_plot")
sc = pytest.importorskip("scanpy")
sq = pytest.importorskip("squidpy")


@pytest.fixture(scope="module")
def fitted(tiny_pixnet):
    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=4)
    st.pp.normalize(sdata)
    st.tl.fit(sdata, "pixnet", epochs=1, microns_per_pixel=4.0, progress=False, **tiny_pixnet)
    return sdata


@pytest.fixture(scope="module")
def store(fitted, tmp_path_factory):
    st.tl.predict(fitted, spot_um=8)
    path = tmp_path_factory.mktemp("interop") / "pred.zarr"
    st.io.write_zarr(fitted, path)
    return path


def _render(sdata, out) -> np.ndarray:
    # a canvas smaller than the map makes spatialdata-plot rasterize it (scipy's affine transform)
    import matplotlib.pyplot as plt

    gene = (
        str(sdata.images["pred"]["scale0"].ds["image"].coords["c"].values[0])
        if hasattr(sdata.images["pred"], "children")
        else str(sdata.images["pred"].coords["c"].values[0])
    )
    sdata.pl.render_images("pred", channel=gene).pl.render_labels(
        "pred_tissue", fill_alpha=0.0, outline_alpha=1.0
    ).pl.show(save=out, figsize=(1, 1), dpi=40)
    plt.close("all")
    return plt.imread(out)[..., :3]


def test_spatialdata_plot_renders_the_stored_map_and_its_tissue(store, tmp_path):
    pixels = _render(sd.read_zarr(store), tmp_path / "map.png")
    assert pixels.std() > 0.01  # a picture, not a blank canvas


def test_spatialdata_plot_renders_a_streamed_multiscale_map(fitted, tmp_path, monkeypatch):
    # a streamed map gets a viewing pyramid, whose levels spatialdata-plot rasterizes: float16 fails there
    monkeypatch.setattr(
        "histo2st.tl._stream.pyramid_shapes", lambda shape: st.tl._pyramid.pyramid_shapes(shape, min_side=64)
    )
    path = tmp_path / "backed.zarr"
    copy = sd.SpatialData(images={"he": fitted.images["he"]}, shapes={"spots": fitted.shapes["spots"]},
                          tables={"table": fitted.tables["table"]}, attrs=fitted.attrs)  # fmt: skip
    copy.write(path)
    st.tl.predict(copy, fitted, spot_um=16)
    back = sd.read_zarr(path)
    assert len(back.images["pred"].children) > 1
    pixels = _render(back, tmp_path / "multiscale.png")
    assert pixels.std() > 0.01


def test_scanpy_clusters_and_squidpy_autocorrelation_on_the_bin_table(store):
    sdata = sd.read_zarr(store)
    bins = sdata.tables["pred_square_8um"].copy()
    assert np.isfinite(bins.X).all()
    # pynndescent is what scanpy uses from 8192 rows on, i.e. on the bin table of any real section
    sc.pp.neighbors(bins, n_neighbors=10, use_rep="X", transformer="pynndescent")
    sc.tl.leiden(bins, flavor="igraph", n_iterations=2, resolution=0.5)
    assert bins.obs["leiden"].nunique() >= 2
    sq.gr.spatial_neighbors(bins, coord_type="grid", n_neighs=4, spatial_key="spatial")
    sq.gr.spatial_autocorr(bins, mode="moran", n_perms=None, n_jobs=1)
    moran = bins.uns["moranI"]["I"]
    assert set(moran.index) == set(bins.var_names)
    assert (moran > 0.2).all()  # neighboring 8 µm bins of a smooth predicted map agree


@pytest.mark.slow
@pytest.mark.realdata
def test_a_real_section_predicted_opens_in_spatialdata_plot_and_scanpy(shared_data, tiny_pixnet, tmp_path):
    # the same path on her2st C2 (9300 x 9900 px H&E): a whole section's map, and a bin table over 8192 rows
    sdata = st.io.read_her2st(shared_data / "her2st", "C2")
    st.pp.normalize(sdata)
    st.pp.select_genes(sdata, n_top=20)
    st.tl.fit(sdata, "pixnet", epochs=1, max_time=20, microns_per_pixel=8.0, progress=False, **tiny_pixnet)
    st.tl.predict(sdata, spot_um=16)
    path = tmp_path / "c2.zarr"
    st.io.write_zarr(sdata, path)
    back = sd.read_zarr(path)
    assert _render(back, tmp_path / "c2.png").std() > 0.01
    bins = back.tables["pred_square_16um"].copy()
    assert bins.n_obs > 8192
    assert np.isfinite(bins.X).all()
    sc.pp.neighbors(bins, use_rep="X")
    sc.tl.leiden(bins, flavor="igraph", n_iterations=2)
    assert bins.obs["leiden"].nunique() >= 2
