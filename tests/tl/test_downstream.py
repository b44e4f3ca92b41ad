"""st.tl.compare_downstream: squidpy's Moran's I and scanpy's domains on predicted vs measured, compared."""

import numpy as np
import pytest

import histo2st as st

pytest.importorskip("squidpy")


@pytest.fixture(scope="module")
def section():
    sdata = st.datasets.synthetic_tissue(size_um=1200, microns_per_pixel=4.0, n_genes=30, seed=4)
    st.pp.normalize(sdata)
    return sdata


def _with_prediction(sdata, values):
    pred = sdata["table"].copy()
    pred.X = values
    sdata.tables["pred_spots"] = pred
    return sdata


def _measured(sdata):
    x = sdata["table"].X
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)


def test_a_perfect_prediction_agrees_on_everything(section):
    sdata = _with_prediction(section, _measured(section))
    summary = st.tl.compare_downstream(sdata, top_k=(5, 10))
    row = summary.loc["synthetic"]
    assert row["n_spots"] == section["table"].n_obs
    assert row["Moran's I PCC"] == pytest.approx(1.0)
    assert row["Moran's I MAE"] == pytest.approx(0.0, abs=1e-6)
    assert (row["domains ARI"], row["domains NMI"]) == (pytest.approx(1.0), pytest.approx(1.0))
    assert (row["SVG Jaccard@5"], row["SVG Jaccard@10"]) == (1.0, 1.0)
    table = sdata.tables["pred_spots"]
    np.testing.assert_allclose(table.var["downstream_moran_pred"], table.var["downstream_moran_truth"])
    assert table.var["downstream_moran_truth"].max() > 0.3  # the synthetic tissue has spatially variable genes
    assert table.uns["histo2st"]["downstream"]["params"]["versions"]["squidpy"]


def test_spots_shuffled_lose_the_spatial_structure(section):
    rng = np.random.default_rng(0)
    sdata = _with_prediction(section, rng.permutation(_measured(section)))
    row = st.tl.compare_downstream(sdata, top_k=(5,), domains="kmeans", n_clusters=4).loc["synthetic"]
    table = sdata.tables["pred_spots"]
    assert np.nanmax(np.abs(table.var["downstream_moran_pred"])) < 0.3  # no spatial autocorrelation is left
    assert row["Moran's I MAE"] > 0.2
    assert abs(row["domains ARI"]) < 0.2


def test_bad_options_are_named(section):
    sdata = _with_prediction(section, _measured(section))
    with pytest.raises(ValueError, match="needs `n_clusters=`"):
        st.tl.compare_downstream(sdata, domains="kmeans")
    with pytest.raises(ValueError, match="between 1 and the 30 genes"):
        st.tl.compare_downstream(sdata)  # top 50 of 30 genes
    with pytest.raises(ValueError, match="'leiden' or 'kmeans'"):
        st.tl.compare_downstream(sdata, domains="louvain")
