import numpy as np
import pytest

import histo2st as st
from histo2st.model import THItoGene
from histo2st.train._spot_windows import prediction_windows

# 48 px patches at the synthetic tissue's 2 µm/px: 96 µm of tissue, no resampling
NET = dict(
    patch_px=48, caps=4, route_dim=8, depth=1, heads=2, mlp_dim=32, gat_heads=2, gat_hidden=16, gat_out=8,
    head_hidden=16, n_pos=16,
)  # fmt: skip


@pytest.fixture(scope="module")
def fitted():
    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=2)
    st.pp.normalize(sdata)
    model = st.tl.fit(
        sdata, "thitogene", epochs=6, microns_per_pixel=2.0, lr=3e-3, progress=False, patience=None, **NET
    )
    return sdata, model


def test_fit_trains_and_lowers_the_loss(fitted):
    _, model = fitted
    assert isinstance(model, THItoGene)
    losses = [h["loss"] for h in model.history]
    assert len(losses) == 6
    assert min(losses[-3:]) < losses[0]
    assert all(np.isfinite(h["val_pcc"]) for h in model.history)
    assert model.card["training"]["validation"]["kind"] == "spots"
    assert model.card["grid_pitch_um"] == pytest.approx(100, rel=0.01)


def test_save_load_round_trip(fitted, tmp_path):
    _, model = fitted
    path = model.save(tmp_path / "m")
    loaded = st.tl.load_model(path)
    assert isinstance(loaded, THItoGene)
    assert loaded.history == model.history
    assert loaded.init_params == model.init_params
    for (k, a), b in zip(model.module.state_dict().items(), loaded.module.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def test_predict_writes_dense_image_and_spot_tables(fitted):
    from spatialdata.transformations import get_transformation

    sdata, model = fitted
    st.tl.predict(sdata, model, spot_um=100)
    pred = sdata.images["pred"]
    assert list(pred.coords["c"].values) == model.genes
    assert pred.shape[1:] == (13, 13)  # 600 µm every 48 µm (half a 96 µm patch)
    scale = get_transformation(pred, "global").to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    assert scale[0, 0] == pytest.approx(24)  # 48 µm map pixels over 2 µm H&E pixels
    spots = sdata.tables["pred_spots"]
    assert spots.n_obs == sdata["table"].n_obs
    assert np.isfinite(spots.X).all()
    assert spots.uns["histo2st"]["model"]["model"] == "thitogene"
    assert spots.uns["histo2st"]["values"] == "prediction at the centers"
    he = sdata.images["he"]
    direct = model.predict_points(he.data, 2.0, spots.obsm["spatial"])
    np.testing.assert_allclose(spots.X, direct, rtol=1e-5, atol=1e-5)
    bins = sdata.tables["pred_square_100um"]
    assert "pred_square_100um_shapes" in sdata.shapes
    assert bins.n_obs > 0
    assert np.isfinite(bins.X).all()


def test_too_many_points_fall_back_to_the_map(fitted):
    sdata, model = fitted
    model.init_params["max_direct_spots"] = 5
    try:
        st.tl.predict(sdata, model, key_added="coarse")
    finally:
        model.init_params["max_direct_spots"] = 100_000
    assert sdata.tables["coarse_spots"].uns["histo2st"]["values"] == "map aggregate"


def test_prediction_windows_cover_every_point_once():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (300, 2))
    predict = np.arange(0, 300, 2)
    seen = []
    for window, core in prediction_windows(xy, predict, window_spots=20):
        assert len(window) <= 20
        assert np.isin(core, window).all()
        assert len(core) <= 10
        seen.extend(core.tolist())
    assert sorted(seen) == predict.tolist()


def test_patch_geometry():
    genes = ["a", "b"]
    paper = THItoGene(genes, **{k: v for k, v in NET.items() if k != "patch_px"})
    assert paper.init_params["patch_px"] == 112
    assert paper.microns_per_pixel == pytest.approx(0.69)
    coarse = THItoGene(genes, microns_per_pixel=1.38, **{k: v for k, v in NET.items() if k != "patch_px"})
    assert coarse.init_params["patch_px"] == 56
    assert coarse.init_params["patch_um"] == pytest.approx(77.28)
    with pytest.raises(ValueError, match="give two of the three"):
        THItoGene(genes, microns_per_pixel=2.0, patch_um=50, **NET)
    with pytest.raises(RuntimeError, match="untrained"):
        paper.predict_points(np.zeros((3, 10, 10), dtype=np.uint8), 0.69, np.zeros((1, 2)))


def test_tables_without_the_dense_map_match_and_skip_it(fitted, monkeypatch):
    sdata, model = fitted
    st.tl.predict(sdata, model, spot_um=100, key_added="withmap")

    def no_map(*args, **kwargs):
        raise AssertionError("dense=False must not build THItoGene's dense map")

    monkeypatch.setattr(model, "predict_image", no_map)
    st.tl.predict(sdata, model, spot_um=100, dense=False, key_added="nomap")
    assert "nomap" not in sdata.images
    for table in ("spots", "square_100um"):
        np.testing.assert_allclose(sdata.tables[f"nomap_{table}"].X, sdata.tables[f"withmap_{table}"].X, atol=1e-5)
    model.init_params["max_direct_spots"] = 5
    try:
        with pytest.raises(ValueError, match="dense=True"):
            st.tl.predict(sdata, model, dense=False, key_added="toomany")
    finally:
        model.init_params["max_direct_spots"] = 100_000
