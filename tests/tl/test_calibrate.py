"""st.tl.calibrate: a per-gene factor on an ensemble's spread, fitted on held-out spots, used by every prediction."""

import numpy as np
import pytest

import histo2st as st
from histo2st.model import Ensemble


def _sample(seed):
    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=seed)
    st.pp.normalize(sdata)
    return sdata


@pytest.fixture(scope="module")
def members(tiny_pixnet):
    settings = {**tiny_pixnet, "crop_px": 64, "batch_size": 4}
    ensemble = st.tl.fit(_sample(2), "pixnet", epochs=1, microns_per_pixel=4.0, progress=False, n_seeds=2, seed=3,
                         **settings)  # fmt: skip
    return ensemble.members


def test_calibration_scales_the_spread_of_every_later_prediction(members, tmp_path):
    ensemble = Ensemble(members)
    held_out, new = _sample(5), _sample(7)
    st.tl.predict(held_out, ensemble, dense=False)
    st.tl.predict(new, ensemble, dense=False, key_added="raw")
    frame = st.tl.calibrate(held_out, ensemble)

    assert list(frame.index) == ensemble.genes
    assert (frame["std_scale"] > 0).all()
    np.testing.assert_allclose(frame["coverage@0.8 after"], 0.8, atol=2 / held_out["table"].n_obs)
    assert ensemble.calibration["sections"] == ["synthetic"]
    np.testing.assert_allclose(ensemble.std_scale, frame["std_scale"], rtol=1e-6)

    st.tl.predict(new, ensemble, dense=False)
    raw, calibrated = new.tables["raw_spots"], new.tables["pred_spots"]
    np.testing.assert_allclose(calibrated.X, raw.X, rtol=1e-5, atol=1e-6)  # the mean is untouched
    np.testing.assert_allclose(calibrated.layers["std"], raw.layers["std"] * ensemble.std_scale, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(calibrated.var["std_scale"], frame["std_scale"], rtol=1e-6)
    np.testing.assert_allclose(calibrated.var["trust"], frame["pcc"], rtol=1e-6)

    summary = st.tl.evaluate(new)
    assert 0 <= summary.loc["synthetic", "coverage@80"] <= 1
    assert -1 <= summary.loc["synthetic", "Spearman(std, |error|)"] <= 1
    refit = st.tl.calibrate(new, ensemble)  # from a calibrated table: the recorded factors are undone first
    assert np.isfinite(refit["std_scale"]).all()

    ensemble.save(tmp_path / "ens")
    loaded = st.tl.load_model(tmp_path / "ens")
    assert loaded.calibration == ensemble.calibration
    np.testing.assert_allclose(loaded.std_scale, ensemble.std_scale)


def test_a_single_model_has_no_spread_to_calibrate(members):
    sdata = _sample(5)
    st.tl.predict(sdata, members[0], dense=False)
    assert "coverage@80" not in st.tl.evaluate(sdata).columns  # no std, no coverage
    with pytest.raises(ValueError, match="n_seeds=5"):
        st.tl.calibrate(sdata, members[0])


def test_the_uncalibrated_ensemble_reports_coverage_too(members):
    sdata = _sample(5)
    st.tl.predict(sdata, Ensemble(members), dense=False)
    summary = st.tl.evaluate(sdata)
    assert {"coverage@50", "coverage@80", "coverage@90"} <= set(summary.columns)
    assert summary.loc["synthetic", "coverage@50"] <= summary.loc["synthetic", "coverage@90"]
