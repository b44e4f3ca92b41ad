import subprocess
import sys

import numpy as np
import pytest

import histo2st as st


@pytest.fixture(scope="module")
def fitted(tiny_pixnet):
    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=2)
    st.pp.normalize(sdata)
    model = st.tl.fit(sdata, "pixnet", epochs=1, microns_per_pixel=4.0, progress=False, **tiny_pixnet)
    return sdata, model


def test_fit_rejects_unknown_model(fitted):
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        st.tl.fit(fitted[0], "nope")


def test_predict_writes_dense_map_and_tables(fitted, tmp_path):
    sdata, model = fitted
    st.tl.predict(sdata, model, spot_um=16)
    pred = sdata.images["pred"]
    assert list(pred.coords["c"].values) == model.genes
    assert pred.dtype == np.float32
    assert pred.shape[1:] == (150, 150)  # 600 µm at 4 µm/px
    spots = sdata.tables["pred_spots"]
    assert spots.n_obs == sdata["table"].n_obs
    assert np.isfinite(spots.X).all()
    assert spots.uns["histo2st"]["model"]["model"] == "pixnet"
    bins = sdata.tables["pred_square_16um"]
    assert "pred_square_16um_shapes" in sdata.shapes
    assert bins.n_obs > 0
    with pytest.raises(ValueError, match="overwrite=True"):
        st.tl.predict(sdata, model)

    path = tmp_path / "s.zarr"
    st.io.write_zarr(sdata, path)
    assert sdata.path == path  # still backed, by the renamed store
    code = (
        "import spatialdata as sd, numpy as np, sys; s = sd.read_zarr(sys.argv[1]); "
        "assert s['pred'].shape[1:] == (150, 150); assert s['pred_spots'].n_obs > 0; "
        "assert np.isfinite(np.asarray(s['pred'].data.compute(), dtype=float)).mean() > 0.5"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)


def test_predict_a_subset_of_genes(fitted):
    sdata, model = fitted
    st.tl.predict(sdata, model, genes=model.genes[:2], key_added="sub")
    assert list(sdata.images["sub"].coords["c"].values) == model.genes[:2]
    assert list(sdata.tables["sub_spots"].var_names) == model.genes[:2]
    with pytest.raises(KeyError, match="does not predict 1"):
        st.tl.predict(sdata, model, genes=["NOT_A_GENE"], key_added="bad")
    # each table says what predicting the training mean would give, for its own genes
    expected = np.asarray(model.card["target_mean"][:2], dtype=np.float32)
    np.testing.assert_array_equal(sdata.tables["sub_spots"].var["training_mean"].to_numpy(), expected)


def test_the_card_records_each_genes_mean_over_the_training_spots(tiny_pixnet):
    sdata = st.datasets.synthetic_tissue(size_um=400, microns_per_pixel=2.0, n_genes=6, n_cell_types=3, seed=3)
    st.pp.normalize(sdata)
    model = st.tl.fit(sdata, "pixnet", epochs=1, validation=None, microns_per_pixel=4.0, progress=False,
                      **tiny_pixnet)  # fmt: skip
    table = sdata.tables["table"][:, model.genes]
    x = table.X.toarray() if hasattr(table.X, "toarray") else np.asarray(table.X)
    assert model.card["training"]["n_spots"] == table.n_obs
    np.testing.assert_allclose(model.card["target_mean"], x.mean(0), rtol=1e-5)


def test_test_time_augmentation_averages_orientations(fitted):
    sdata, model = fitted
    st.tl.predict(sdata, model, dense=False, key_added="plain")
    st.tl.predict(sdata, model, dense=False, tta=8, key_added="tta")
    plain, tta = sdata.tables["plain_spots"], sdata.tables["tta_spots"]
    assert (plain.uns["histo2st"]["tta"], tta.uns["histo2st"]["tta"]) == (1, 8)
    assert np.isfinite(tta.X).all()
    assert not np.allclose(plain.X, tta.X)
    with pytest.raises(ValueError, match=r"one of \[1, 2, 4, 8\]; got 3"):
        st.tl.predict(sdata, model, dense=False, tta=3, key_added="tta", overwrite=True)
    assert "tta_spots" in sdata.tables  # refused before the old prediction was removed


def test_truth_aggregated_with_defaults_has_the_bins_of_the_prediction(fitted):
    # predict's grid and aggregate's default grid use the same tissue (H&E mask plus measured spots): bin for bin
    sdata, model = fitted
    st.tl.predict(sdata, model, spot_um=8, key_added="same", dense=True)
    st.tl.aggregate(sdata, "truth", spot_um=8, key_added="truth_8", overwrite=True)
    pred, truth = sdata.tables["same_square_8um"], sdata.tables["truth_8"]
    assert pred.n_obs == truth.n_obs
    np.testing.assert_allclose(pred.obsm["spatial"], truth.obsm["spatial"])
    # and every bin kept holds predicted pixels: no NaN row for scanpy to trip on
    assert (pred.obs["area_um2"] > 0).all()
    assert np.isfinite(pred.X).all()


def test_predict_into_backed_store_streams_the_map(fitted, tmp_path):
    sdata, model = fitted
    path = tmp_path / "b.zarr"
    copy = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=2)
    copy.write(path)
    st.tl.predict(copy, model, key_added="p2")
    assert copy.is_backed()
    import spatialdata as sd

    back = sd.read_zarr(path)
    assert "p2" in back.images
    np.testing.assert_allclose(back.tables["p2_spots"].X, copy.tables["p2_spots"].X, rtol=1e-6)


def test_overwrite_replaces_every_table_in_the_store(fitted, tmp_path):
    import spatialdata as sd

    _, model = fitted
    copy = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=2)
    copy.write(tmp_path / "o.zarr")
    st.tl.predict(copy, model, key_added="o")
    st.tl.predict(copy, model, genes=model.genes[:1], key_added="o", overwrite=True)
    back = sd.read_zarr(tmp_path / "o.zarr")
    assert list(back.tables["o_spots"].var_names) == model.genes[:1]
    assert (
        list(
            back.images["o"]["scale0"].ds["image"].coords["c"].values
            if hasattr(back.images["o"], "children")
            else back.images["o"].coords["c"].values
        )
        == model.genes[:1]
    )
