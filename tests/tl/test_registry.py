"""The model lives with the data: ``st.tl.fit`` records it, ``st.tl.predict`` finds it, in memory and in a store."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import spatialdata as sd
from forward_counter import count_forwards

import histo2st as st
from histo2st.tl import _predict
from histo2st.tl._registry import recorded_models
from histo2st.train import TrainingProgress


def _sample(seed=2):
    sdata = st.datasets.synthetic_tissue(size_um=400, microns_per_pixel=2.0, n_genes=6, seed=seed)
    st.pp.normalize(sdata)
    return sdata


@pytest.fixture(scope="module")
def fitted(tiny_pixnet):
    sdata = _sample()
    model = st.tl.fit(sdata, model="pixnet", epochs=1, progress=False, **tiny_pixnet)
    return sdata, model


def test_fit_records_the_model_and_predict_finds_it(fitted):
    sdata, model = fitted
    assert recorded_models(sdata) == ["pixnet"]
    summary = sdata.attrs["histo2st"]["models"]["pixnet"]
    assert summary["genes"] == model.genes
    assert summary["preset"]["name"] == "cpu"  # no CUDA here: "auto" chose the CPU settings
    assert summary["training"]["sections"] == ["synthetic"]
    st.tl.predict(sdata, spot_um=16, overwrite=True)
    table = sdata.tables["pred_spots"]
    assert table.uns["histo2st"]["model"]["model_key"] == "pixnet"
    assert list(table.var_names) == model.genes
    assert np.isfinite(table.X).all()


def test_preset_values_and_explicit_keywords(fitted, tiny_pixnet):
    _, model = fitted
    preset = model.card["preset"]
    assert preset["requested"] == "auto"
    assert preset["epochs"] == 1  # explicit wins over the preset's 8
    assert preset["patience"] == st.model.PixNet.presets["cpu"]["patience"]
    assert preset["max_time"] == st.model.PixNet.presets["cpu"]["max_time"]
    assert model.microns_per_pixel == 4.0  # the cpu preset's
    assert model.init_params["hidden_dim"] == tiny_pixnet["hidden_dim"]  # explicit over the preset's 128
    with pytest.raises(ValueError, match="Unknown `preset='gpu'`"):
        st.tl.fit(_sample(), preset="gpu")


def test_paper_preset_is_the_papers_setting():
    from histo2st.tl._fit import resolve_preset

    name, values = resolve_preset(st.model.PixNet, "paper", "cpu")
    assert name == "paper"
    assert values["microns_per_pixel"] == 2.0
    assert values["hidden_dim"] == 512
    assert values["lr"] == 5e-4
    assert values["weight_decay"] == 1e-4
    assert values["lam"] == 0.5
    assert values["epochs"] == 500
    assert values["ema_decay"] is None  # the paper trains without weight averaging
    assert resolve_preset(st.model.PixNet, "auto", "cpu")[0] == "cpu"
    assert resolve_preset(st.model.THItoGene, "cpu", "cpu")[1]["loss"] == "pixnet"


def test_no_recorded_model_says_how_to_pass_one():
    with pytest.raises(ValueError, match=r"st.tl.fit\(sdata\)`\), or pass one with `model=`"):
        st.tl.predict(_sample(seed=5))


def test_another_sample_takes_the_model_of_the_first(fitted):
    sdata, model = fitted
    other = _sample(seed=7)
    st.tl.predict(other, model=sdata, spot_um=16)
    assert list(other.tables["pred_square_16um"].var_names) == model.genes
    assert recorded_models(other) == []
    st.tl.predict(other, model=model, spot_um=16, overwrite=True)


def test_store_round_trip_in_a_fresh_process(tiny_pixnet, tmp_path):
    sdata = _sample(seed=3)
    model = st.tl.fit(sdata, model="pixnet", epochs=1, progress=False, **tiny_pixnet)
    st.tl.predict(sdata)
    path = tmp_path / "s.zarr"
    st.io.write_zarr(sdata, path)  # saves the recorded model inside the store
    assert (path / "histo2st" / "models" / "pixnet" / "weights.pt").is_file()
    code = (
        "import sys, warnings; warnings.simplefilter('error', UserWarning)\n"
        "import spatialdata as sd, histo2st as st, numpy as np\n"
        "s = sd.read_zarr(sys.argv[1])\n"
        "st.tl.predict(s, spot_um=8, key_added='again')\n"
        "assert np.isfinite(s.tables['again_spots'].X).all()\n"
        "print(st.tl.load_model(sys.argv[1]).genes)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert str(model.genes) in out.stdout
    back = sd.read_zarr(path)
    np.testing.assert_allclose(back.tables["again_spots"].X, back.tables["pred_spots"].X, rtol=1e-5, atol=1e-5)

    # a second model on the backed sample: saved in the store, and then a key is needed
    st.tl.fit(back, model="pixnet", epochs=1, progress=False, key_added="second", **tiny_pixnet)
    assert recorded_models(back) == ["pixnet", "second"]
    with pytest.raises(ValueError, match="choose one with `model_key=`"):
        st.tl.predict(back, overwrite=True)
    st.tl.predict(back, model_key="second", key_added="second_pred")
    with pytest.raises(ValueError, match="choose one with `key=`"):
        st.tl.load_model(path)
    assert st.tl.load_model(path, key="second").genes == model.genes
    with pytest.raises(FileExistsError, match="overwrite=True"):
        st.tl.fit(back, model="pixnet", epochs=1, progress=False, key_added="second", **tiny_pixnet)


def test_a_failed_save_leaves_no_half_written_model(fitted, tiny_pixnet, tmp_path, monkeypatch):
    import torch

    sdata = _sample(seed=4)
    path = tmp_path / "s.zarr"
    st.io.write_zarr(sdata, path)
    backed = sd.read_zarr(path)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        st.tl.fit(backed, model="pixnet", epochs=1, progress=False, **tiny_pixnet)
    models = path / "histo2st" / "models"
    assert not models.exists() or not any(models.iterdir())


def test_a_map_too_large_for_memory_is_computed_once(fitted, tmp_path, monkeypatch):
    sdata, model = fitted
    monkeypatch.setattr(_predict, "PERSIST_BYTES", 0)
    calls = count_forwards(model)
    try:
        st.tl.predict(sdata, spot_um=16, key_added="big", spill_dir=tmp_path)
        computed = len(calls)
        assert computed > 0
        assert len(list(tmp_path.glob("prediction-*.zarr"))) == 1
        st.pl.spatial_gene(sdata, model.genes[0], pred_key="big", source="pred", show=False)
        element = sdata.images["big"]
        level = element["scale0"].ds["image"] if hasattr(element, "children") else element
        assert level.data.name.startswith("from-zarr")  # a lazy read of the stored map
        level.data[:, :20, :20].compute()
        assert len(calls) == computed  # reads come from the stored map, not from the network
    finally:
        del model.module.forward  # the instance attribute set by count_forwards


def test_the_map_is_zero_off_tissue_and_labeled_at_the_masks_resolution(fitted):
    sdata, _ = fitted
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:30, 5:20] = True
    st.tl.predict(sdata, key_added="masked", tissue_mask=mask, spot_um=16)
    values = np.asarray(sdata.images["masked"].data[0].compute(), dtype=float)
    tissue = sdata.labels["masked_tissue"].data.compute()
    # 400 µm at 2 µm/px is 200 H&E px, 5 per mask pixel; a 4 µm map pixel covers 2 H&E px and holds a prediction
    # when either lies on the mask
    up = np.repeat(np.repeat(mask, 5, 0), 5, 1).reshape(100, 2, 100, 2)
    expected = up.any(axis=(1, 3))
    np.testing.assert_array_equal(tissue == 1, expected)
    assert (values[~expected] == 0).all()
    assert np.isfinite(values).all()


def test_spatial_gene_shows_measured_spots_beside_the_prediction_cropped(fitted):
    sdata, model = fitted
    if "pred" not in sdata.images:
        st.tl.predict(sdata, overwrite=True)
    axes = st.pl.spatial_gene(sdata, model.genes[0], show=False)
    assert axes.shape == (1, 2)  # prediction and measured spots
    assert [ax.get_title() for ax in axes[0]] == [f"{model.genes[0]}: predicted", f"{model.genes[0]}: measured spots"]
    assert axes[0, 0].get_xlim() == axes[0, 1].get_xlim()
    left, right = axes[0, 0].get_xlim()
    assert right - left <= 400 + 1e-6  # µm axes, within the 400 µm slide


def test_histo2st_writes_announce_no_zarr_default(fitted, tmp_path):
    sdata, _ = fitted
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        st.io.write_zarr(sdata, tmp_path / "quiet.zarr")
    assert not [w for w in caught if "shard" in str(w.message) or "irregular chunk" in str(w.message)]


def test_progress_total_follows_the_time_cap(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("histo2st.train._progress.time.perf_counter", lambda: now[0])
    bar = TrainingProgress(100, max_time=20, monitor="val_pcc")
    for _ in range(5):
        now[0] += 1.0  # one step a second
        bar.step(1.0)
    bar.end_epoch({"val_pcc": 0.5}, steps=5)
    # 100 epochs of 5 steps would be 500 steps; the cap leaves room for about 20 at one step a second
    assert bar.bar.total < 30
    assert bar.postfix["val_pcc"] == "0.5"
    total = bar.bar.total
    for _ in range(3):
        now[0] += 1.0
        bar.step(1.0)
    assert bar.bar.total <= total  # steps within an epoch do not push the end further away
    bar.close()


def test_fit_hands_one_trainer_config_to_every_member(monkeypatch, tiny_pixnet, tmp_path):
    from histo2st.train import TrainerConfig

    seen = []

    def capture(self, data, config, *, validation):
        seen.append((config, validation))
        return []

    monkeypatch.setattr(st.model.PixNet, "train_with", capture)
    st.tl.fit(_sample(), epochs=2, max_time=None, n_seeds=2, seed=5, validation=0.3, progress=False,
              checkpoint_dir=tmp_path, **tiny_pixnet)  # fmt: skip
    assert [type(c) for c, _ in seen] == [TrainerConfig, TrainerConfig]
    assert [c.seed for c, _ in seen] == [5, 6]
    assert [c.checkpoint_dir for c, _ in seen] == [tmp_path / "seed_5", tmp_path / "seed_6"]
    config = seen[0][0]
    assert (config.epochs, config.max_time) == (2, None)  # explicit, over the preset's
    assert config.patience == st.model.PixNet.presets["cpu"]["patience"]
    assert config.ema_decay == st.model.PixNet.presets["cpu"]["ema_decay"] == 0.99  # measured to pay on CPU
    assert config.device == "cpu"
    assert config.progress is False
    assert {v for _, v in seen} == {0.3}
    seen.clear()
    st.tl.fit(_sample(), ema_decay=None, progress=False, key_added="plain", **tiny_pixnet)
    assert seen[0][0].ema_decay is None  # an explicit None switches the preset's averaging off
