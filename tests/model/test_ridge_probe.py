"""The ridge probe (HEST-benchmark baseline) as a model: fitted in closed form, folded into a network."""

import numpy as np
import pytest

import histo2st as st
from histo2st.model import RidgeProbe
from histo2st.model._ridge import _fold_affine


def test_folded_head_equals_the_scikit_learn_pipeline():
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 12)) * rng.uniform(0.5, 3, 12) + rng.normal(size=12)
    y = x[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(80, 4)) * 0.1
    pipeline = make_pipeline(StandardScaler(), PCA(6), RidgeCV(alphas=[0.1, 1, 10])).fit(x, y)
    weight, bias = _fold_affine(pipeline)
    np.testing.assert_allclose(x @ weight + bias, pipeline.predict(x), rtol=1e-8, atol=1e-8)


@pytest.fixture(scope="module")
def tissue():
    sdata = st.datasets.synthetic_tissue(size_um=800, microns_per_pixel=2.0, n_genes=6, seed=3)
    st.pp.normalize(sdata)
    return sdata


def test_fit_predict_save_load(tissue, tmp_path):
    model = st.tl.fit(tissue, "ridge", microns_per_pixel=4.0, patch_px=16, n_components=8, dense_um=40, progress=False,
                      validation=0.3)  # fmt: skip
    assert isinstance(model, RidgeProbe)
    (record,) = model.history
    assert record["n_components"] == 8
    assert record["alpha"] > 0
    assert np.isfinite(record["val_pcc"])
    assert model.card["encoder"]["architecture"] == "resnet18"

    st.tl.predict(tissue, model)
    spots = tissue.tables["pred_spots"]
    assert np.isfinite(spots.X).all()
    assert tissue.images["pred"].shape[0] == 6
    # spots are predicted from the patch at each: exactly the features through the folded head
    xy = tissue["table"].obsm["spatial"]
    direct = model.predict_points(tissue["he"].data, 2.0, xy)
    np.testing.assert_allclose(np.asarray(spots.X), direct, rtol=1e-5, atol=1e-5)

    loaded = st.tl.load_model(model.save(tmp_path / "ridge"))
    np.testing.assert_allclose(loaded.predict_points(tissue["he"].data, 2.0, xy[:5]), direct[:5], rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="patch_px"):
        RidgeProbe(["a"], patch_px=4)
