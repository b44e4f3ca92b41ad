"""Seed ensembles: st.tl.fit(n_seeds=...), the members' mean and spread as maps and table layers, save and load."""

import json

import dask
import numpy as np
import pytest
import spatialdata as sd
from forward_counter import count_forwards

import histo2st as st
from histo2st._core._tissue import tissue_mask
from histo2st.model import Ensemble, PixNet
from histo2st.tl._stream import PARTIAL_DIR

# THItoGene small enough to train in seconds (as in tests/model/test_thitogene_model.py)
THITOGENE = dict(
    patch_px=48, caps=4, route_dim=8, depth=1, heads=2, mlp_dim=32, gat_heads=2, gat_hidden=16, gat_out=8,
    head_hidden=16, n_pos=16,
)  # fmt: skip


def _sample():
    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=2)
    st.pp.normalize(sdata)
    return sdata


@pytest.fixture(scope="module")
def fitted(tiny_pixnet, tmp_path_factory):
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    sdata = _sample()
    # smaller crops in fewer, larger batches than `tiny_pixnet`: two members train in the time of one
    settings = {**tiny_pixnet, "crop_px": 64, "batch_size": 4}
    ensemble = st.tl.fit(sdata, "pixnet", epochs=1, microns_per_pixel=4.0, progress=False, n_seeds=2, seed=3,
                         checkpoint_dir=checkpoints, **settings)  # fmt: skip
    return sdata, ensemble, checkpoints


@pytest.fixture(scope="module")
def predicted(fitted):
    """The ensemble's prediction into a sample held in memory."""
    sdata, ensemble, _ = fitted
    st.tl.predict(sdata, ensemble, spot_um=100, batch_size=4)
    return sdata


def _he(sdata):
    return sdata.images["he"].data


def _members_maps(ensemble, sdata) -> np.ndarray:
    """Each member's own dense map, ``(members, genes, y, x)``, over the same tiles as ``st.tl.predict``."""
    mask = tissue_mask(sdata.images["he"])
    return np.stack(
        [m.predict_image(_he(sdata), 2.0, tissue_mask=mask, batch_size=4).compute() for m in ensemble.members]
    )


def _uncount(*models) -> None:
    for model in models:
        vars(model.module).pop("forward", None)


def test_fit_trains_one_model_per_seed(fitted):
    _, ensemble, checkpoints = fitted
    assert isinstance(ensemble, Ensemble)
    assert [type(m) for m in ensemble.members] == [PixNet, PixNet]
    assert ensemble.seeds == [3, 4]
    assert [m.card["training"]["seed"] for m in ensemble.members] == [3, 4]
    first, second = (m.module.state_dict() for m in ensemble.members)
    assert any(not np.array_equal(first[k].numpy(), second[k].numpy()) for k in first)
    assert {p.name for p in checkpoints.iterdir()} == {"seed_3", "seed_4"}
    assert ensemble.card["model"] == "pixnet"
    assert ensemble.card["ensemble"]["n_members"] == 2
    assert ensemble.card["ensemble"]["seeds"] == [3, 4]
    assert len(ensemble.card["ensemble"]["validation_metrics"]) == 2
    assert [len(h) for h in ensemble.history] == [1, 1]
    assert ensemble.genes == ensemble.members[0].genes
    assert "2 PixNet members" in repr(ensemble)


@pytest.mark.parametrize("n_seeds", [0, -1, 1.5])
def test_fit_rejects_a_bad_number_of_seeds(n_seeds):
    with pytest.raises(ValueError, match="`n_seeds` must be"):
        st.tl.fit([], "pixnet", n_seeds=n_seeds)


def test_members_must_match(tiny_pixnet):
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])
    with pytest.raises(ValueError, match="same genes"):
        Ensemble([PixNet(["a", "b"], **tiny_pixnet), PixNet(["a", "c"], **tiny_pixnet)])
    with pytest.raises(ValueError, match="µm per pixel"):
        Ensemble(
            [PixNet(["a"], microns_per_pixel=2.0, **tiny_pixnet), PixNet(["a"], microns_per_pixel=4.0, **tiny_pixnet)]
        )


def test_predict_image_is_the_members_mean_and_std(fitted):
    sdata, ensemble, _ = fitted
    direct = [count_forwards(m) for m in ensemble.members]
    try:
        maps = _members_maps(ensemble, sdata)
    finally:
        _uncount(*ensemble.members)
    calls = [count_forwards(m) for m in ensemble.members]
    try:
        mask = tissue_mask(sdata.images["he"])
        both = ensemble.predict_image(_he(sdata), 2.0, tissue_mask=mask, batch_size=4).compute()
    finally:
        _uncount(*ensemble.members)
    genes = ensemble.n_genes
    assert both.shape == (2 * genes, *maps.shape[2:])
    assert both.dtype == np.float32
    np.testing.assert_allclose(both[:genes], maps.mean(0), rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(both[genes:], maps.std(0), rtol=1e-4, atol=1e-6, equal_nan=True)
    assert np.nanmax(both[genes:]) > 0  # the members disagree
    assert calls == direct  # one pass of each member over each tile, for mean and std alike
    assert sum(calls[0]) > 0


def test_predict_writes_the_std_image_and_table_layers(fitted, predicted):
    from spatialdata.transformations import get_transformation

    _, ensemble, _ = fitted
    sdata = predicted
    mean, spread = sdata.images["pred"], sdata.images["pred_std"]
    assert spread.shape == mean.shape
    assert spread.dtype == mean.dtype == np.float32
    assert list(spread.coords["c"].values) == list(mean.coords["c"].values) == ensemble.genes
    assert get_transformation(spread, get_all=True).keys() == get_transformation(mean, get_all=True).keys()
    for system in ("global", "microns"):
        assert get_transformation(spread, system) == get_transformation(mean, system)
    maps = _members_maps(ensemble, sdata)
    values, spread = mean.data.compute(), spread.data.compute()
    on = sdata.labels["pred_tissue"].data.compute()[None] == 1  # one tissue labels element for both maps
    assert 0.3 < on.mean() < 1
    np.testing.assert_allclose(values, np.where(on, maps.mean(0), 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spread, np.where(on, maps.std(0), 0), rtol=1e-4, atol=1e-6)

    for key in ("pred_spots", "pred_square_100um"):
        table = sdata.tables[key]
        assert table.layers["std"].shape == table.shape
        assert np.isfinite(table.layers["std"]).all()
        np.testing.assert_allclose(table.var["std"], np.nanmean(table.layers["std"], axis=0), rtol=1e-6)
        assert table.uns["histo2st"]["ensemble"] == {"n_members": 2, "seeds": [3, 4]}
        assert table.uns["histo2st"]["model"]["ensemble"]["n_members"] == 2
        assert table.uns["histo2st"]["values"] == "map aggregate"

    # the mean of the per-pixel spread over a spot bounds the spread of the members' spot means
    spots = sdata.tables["pred_spots"]
    for i, member in enumerate(ensemble.members):
        st.tl.predict(sdata, member, key_added=f"member{i}", batch_size=4)
    members = np.stack([sdata.tables[f"member{i}_spots"].X for i in range(2)])
    np.testing.assert_allclose(spots.X, members.mean(0), rtol=5e-3, atol=5e-3)
    assert (members.std(0) <= spots.layers["std"] + 5e-3).all()
    assert (members.std(0) < spots.layers["std"] - 1e-4).any()  # a bound, not the exact spread
    assert "member0_std" not in sdata.images  # a single model writes no spread
    assert "std" not in sdata.tables["member0_spots"].layers


def test_dense_false_drops_both_maps_and_genes_select_both(fitted, predicted):
    sdata, ensemble, _ = fitted
    genes = ensemble.genes[4:1:-1]
    st.tl.predict(sdata, ensemble, dense=False, genes=genes, key_added="nodense", batch_size=4)
    assert "nodense" not in sdata.images
    assert "nodense_std" not in sdata.images
    table, full = sdata.tables["nodense_spots"], predicted.tables["pred_spots"]
    assert list(table.var_names) == genes
    np.testing.assert_allclose(table.layers["std"], full[:, genes].layers["std"], rtol=1e-6)
    np.testing.assert_allclose(table.X, full[:, genes].X, rtol=1e-6)


def test_zarr_backed_prediction_runs_each_member_once_per_block(fitted, predicted, tmp_path):
    _, ensemble, _ = fitted
    store = tmp_path / "e.zarr"
    sdata = _sample()
    sdata.write(store)
    full = [count_forwards(m) for m in ensemble.members]
    try:
        with dask.config.set(scheduler="threads"):
            st.tl.predict(sdata, ensemble, spot_um=100, batch_size=4)
    finally:
        _uncount(*ensemble.members)
    # as many tiles per member as one direct prediction of its own map: no block ran twice for mean and std
    mask = tissue_mask(sdata.images["he"])
    for member, calls in zip(ensemble.members, full, strict=True):
        direct = count_forwards(member)
        try:
            member.predict_image(_he(sdata), 2.0, tissue_mask=mask, batch_size=4).compute()
        finally:
            _uncount(member)
        assert sum(calls) == sum(direct) > 0

    back = sd.read_zarr(store)
    assert not (store / PARTIAL_DIR).exists()
    for key in ("pred", "pred_std"):
        stored = back.images[key]
        stored = stored["scale0"].ds["image"] if hasattr(stored, "children") else stored
        assert list(stored.coords["c"].values) == ensemble.genes
        np.testing.assert_allclose(stored.data.compute(), predicted[key].data.compute(), rtol=1e-3, atol=1e-3,
                                   equal_nan=True)  # fmt: skip
    for key in ("pred_spots", "pred_square_100um"):
        np.testing.assert_allclose(back.tables[key].layers["std"], predicted.tables[key].layers["std"], atol=1e-3)
        np.testing.assert_allclose(
            back.tables[key].var["std"], np.nanmean(back.tables[key].layers["std"], 0), rtol=1e-6
        )

    # a single model replacing the ensemble's prediction leaves no spread behind, in memory or on disk
    st.tl.predict(sdata, ensemble.members[0], overwrite=True, batch_size=4)
    assert "pred_std" not in sdata.images
    back = sd.read_zarr(store)
    assert "pred_std" not in back.images
    assert "std" not in back.tables["pred_spots"].layers


def test_interrupted_ensemble_prediction_resumes(fitted, tmp_path):
    _, ensemble, _ = fitted
    # one tile per block: blocks enough for a run to stop halfway
    reference = _sample()
    reference.write(tmp_path / "ref.zarr")
    full = count_forwards(ensemble.members[1])
    try:
        st.tl.predict(reference, ensemble, batch_size=1)
    finally:
        _uncount(*ensemble.members)

    store = tmp_path / "r.zarr"
    sdata = _sample()
    sdata.write(store)
    first = count_forwards(ensemble.members[1], fail_after=len(full) // 2)
    try:
        with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError, match="interrupted"):
            st.tl.predict(sdata, ensemble, batch_size=1)
    finally:
        _uncount(*ensemble.members)
    assert {"pred", "pred_std"} <= {p.name for p in (store / PARTIAL_DIR).iterdir()}
    assert not {"pred", "pred_std"} & set(sd.read_zarr(store).images)
    with pytest.raises(ValueError, match="another model"):
        st.tl.predict(sdata, ensemble.members[0], batch_size=1)  # one member cannot resume the ensemble's write

    second = count_forwards(ensemble.members[1])
    try:
        with dask.config.set(scheduler="synchronous"):
            st.tl.predict(sdata, ensemble, batch_size=1)
    finally:
        _uncount(*ensemble.members)
    assert len(second) < len(full)
    assert len(first) + len(second) - len(full) < 4  # only the interrupted block ran again
    for key in ("pred", "pred_std"):
        np.testing.assert_array_equal(sdata[key].data.compute(), reference[key].data.compute())
    assert not (store / PARTIAL_DIR).exists()


def test_save_load_round_trip(fitted, tmp_path):
    sdata, ensemble, _ = fitted
    path = ensemble.save(tmp_path / "ens")
    card = json.loads((path / "card.json").read_text())
    assert card["model"] == "ensemble"
    assert card["member_model"] == "pixnet"
    assert card["ensemble"]["seeds"] == [3, 4]
    assert sorted(p.name for p in path.iterdir()) == ["card.json", "member_0", "member_1"]

    loaded = st.tl.load_model(path)
    assert isinstance(loaded, Ensemble)
    assert loaded.seeds == ensemble.seeds
    assert loaded.history == ensemble.history
    he = _he(sdata)
    np.testing.assert_array_equal(
        loaded.predict_image(he, 2.0, batch_size=4).compute(), ensemble.predict_image(he, 2.0, batch_size=4).compute()
    )
    with pytest.raises(TypeError, match="ensemble"):
        PixNet.load(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ensemble.save(path)
    ensemble.save(path, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


def test_thitogene_ensemble_predicts_the_exact_spread_at_points(tiny_pixnet):
    sdata = _sample()
    ensemble = st.tl.fit(sdata, "thitogene", epochs=1, microns_per_pixel=2.0, lr=3e-3, progress=False, n_seeds=2,
                         **THITOGENE)  # fmt: skip
    assert ensemble.map_microns_per_pixel == ensemble.members[0].map_microns_per_pixel
    st.tl.predict(sdata, ensemble, spot_um=100)
    assert sdata.images["pred_std"].shape == sdata.images["pred"].shape == (6, 13, 13)
    spots = sdata.tables["pred_spots"]
    assert spots.uns["histo2st"]["values"] == "prediction at the centers"
    members = np.stack([m.predict_points(_he(sdata), 2.0, spots.obsm["spatial"]) for m in ensemble.members])
    np.testing.assert_allclose(spots.X, members.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(spots.layers["std"], members.std(0), rtol=1e-4, atol=1e-5)
    assert (spots.layers["std"] > 0).any()
    np.testing.assert_allclose(spots.var["std"], spots.layers["std"].mean(0), rtol=1e-6)
    mean, spread = ensemble.predict_points(_he(sdata), 2.0, spots.obsm["spatial"])
    np.testing.assert_allclose(spread, members.std(0), rtol=1e-4, atol=1e-5)
    mirrored, _ = ensemble.predict_points(_he(sdata), 2.0, spots.obsm["spatial"], tta=2)
    assert np.isfinite(mirrored).all()
    assert not np.allclose(mirrored, mean)
    pixnets = Ensemble([PixNet(["a"], **tiny_pixnet)])  # their values at spots are the map's means
    assert not pixnets.predicts_at_points
    assert pixnets.predict_points(np.zeros((3, 8, 8), dtype=np.uint8), 2.0, np.zeros((1, 2))) is None
