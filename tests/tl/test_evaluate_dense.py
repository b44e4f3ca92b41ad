"""``st.tl.evaluate_dense`` on synthetic tissue: a prediction equal to the truth, a noisy one, another resolution."""

import copy

import numpy as np
import pytest
import spatialdata as sd
from spatialdata.models import Image2DModel
from spatialdata.transformations import Identity, Scale

import histo2st as st

COLUMNS = ["bin_um", "n_bins", "n_genes", "PCC@M", "PCC@S", "PCC@F", "SSIM", "MSE", "MAE"]


def _with_prediction(tissue, values: np.ndarray, microns_per_pixel: float):
    """A light sample sharing the tissue's truth and table, plus ``values`` as the dense map ``"pred"``."""
    tissue_mpp = tissue.attrs["histo2st"]["microns_per_pixel"]
    factor = microns_per_pixel / tissue_mpp
    pred = Image2DModel.parse(
        values.astype(np.float32),
        dims=("c", "y", "x"),
        c_coords=list(tissue["truth"].coords["c"].values),
        transformations={
            "global": Scale([factor, factor], axes=("y", "x")),
            "microns": Scale([microns_per_pixel, microns_per_pixel], axes=("y", "x")),
        },
    )
    images = {"truth": tissue["truth"], "pred": pred}
    return sd.SpatialData(images=images, attrs=copy.deepcopy(dict(tissue.attrs)))


def _block_mean(x: np.ndarray, k: int) -> np.ndarray:
    c, h, w = x.shape
    return x[:, : h // k * k, : w // k * k].reshape(c, h // k, k, w // k, k).mean((2, 4))


@pytest.fixture(scope="module")
def truth(small_tissue):
    return np.asarray(small_tissue["truth"].data, dtype=np.float64)


def test_prediction_equal_to_truth_scores_one(small_tissue, truth):
    sdata = _with_prediction(small_tissue, truth, 2.0)
    summary = st.tl.evaluate_dense(sdata, normalize_truth=False)
    assert list(summary.columns) == COLUMNS
    assert summary["bin_um"].tolist() == [2.0, 8.0, 16.0]
    assert summary["n_bins"].tolist() == [300 * 300, 75 * 75, 37 * 37]  # 600 µm / bin, whole bins only
    assert (summary["n_genes"] == 8).all()
    np.testing.assert_allclose(summary[["PCC@M", "PCC@S", "PCC@F", "SSIM"]], 1.0, atol=1e-6)
    np.testing.assert_allclose(summary["MSE"], 0.0, atol=1e-10)
    entry = sdata.attrs["histo2st"]["evaluation_dense"]
    assert entry["params"]["bins_um"] == [2.0, 8.0, 16.0]
    assert entry["summary"][1]["n_bins"] == 75 * 75
    assert len(entry["8"]["pcc"]) == 8
    assert entry["8"]["ssim"][0] == pytest.approx(1.0)


def test_one_gene_as_a_string(small_tissue, truth):
    sdata = _with_prediction(small_tissue, truth, 2.0)
    summary = st.tl.evaluate_dense(sdata, bins_um=(16,), genes="GENE00", normalize_truth=False)
    assert summary.loc[0, "n_genes"] == 1


def test_bins_covering_missing_values_are_left_out(small_tissue, truth):
    pred = truth.copy()
    pred[:, 100:110, 40:50] = np.nan  # 20 x 20 µm off "tissue", from (80, 200) µm
    summary = st.tl.evaluate_dense(_with_prediction(small_tissue, pred, 2.0), normalize_truth=False)
    # 2 µm: the 100 bins of the block; 8 µm: bins 10-12 (x) by 25-27 (y); 16 µm: bins 5-6 by 12-13
    assert summary["n_bins"].tolist() == [300 * 300 - 100, 75 * 75 - 3 * 3, 37 * 37 - 2 * 2]
    np.testing.assert_allclose(summary[["PCC@M", "SSIM"]], 1.0, atol=1e-6)


def test_noise_lowers_the_scores_and_averages_out_in_larger_bins(small_tissue, truth):
    rng = np.random.default_rng(0)
    noisy = truth + rng.normal(scale=truth.std(), size=truth.shape)
    summary = st.tl.evaluate_dense(_with_prediction(small_tissue, noisy, 2.0), normalize_truth=False).set_index(
        "bin_um"
    )
    assert summary.loc[2.0, "PCC@M"] < 0.9
    assert summary.loc[2.0, "SSIM"] < 0.9
    assert summary.loc[2.0, "PCC@M"] < summary.loc[8.0, "PCC@M"] < summary.loc[16.0, "PCC@M"]
    assert summary.loc[2.0, "MSE"] == pytest.approx(truth.var(), rel=0.05)


def test_prediction_at_a_coarser_resolution_is_compared_on_the_same_um_grid(small_tissue, truth):
    # the truth averaged into 4 µm pixels: identical to the truth in every bin made of whole 4 µm pixels
    coarse = _block_mean(truth, 2)
    sdata = _with_prediction(small_tissue, coarse, 4.0)
    summary = st.tl.evaluate_dense(sdata, bins_um=(2, 8, 16), normalize_truth=False).set_index("bin_um")
    np.testing.assert_allclose(summary.loc[[8.0, 16.0], ["PCC@M", "SSIM"]], 1.0, atol=1e-6)
    assert 0.3 < summary.loc[2.0, "PCC@M"] < 0.999
    assert summary.loc[8.0, "n_bins"] == 75 * 75


def test_truth_is_normalized_like_the_measured_spots(small_tissue, truth):
    # a prediction on the scale of the training targets: log1p(count / total * 1e4) of 8 µm truth bins
    binned = _block_mean(truth, 4)
    library = binned.sum(0, keepdims=True)
    target = np.log1p(np.divide(binned * 1e4, library, out=np.zeros_like(binned), where=library > 0))
    sdata = _with_prediction(small_tissue, target, 8.0)
    sdata.tables["table"] = small_tissue["table"].copy()  # carries the normalization parameters
    summary = st.tl.evaluate_dense(sdata, bins_um=(8,))
    assert summary.loc[0, "PCC@M"] == pytest.approx(1.0, abs=1e-6)
    assert summary.loc[0, "SSIM"] == pytest.approx(1.0, abs=1e-6)
    assert summary.loc[0, "MSE"] == pytest.approx(0.0, abs=1e-8)
    raw = st.tl.evaluate_dense(sdata, bins_um=(8,), normalize_truth=False)
    assert raw.loc[0, "MSE"] > 1.0
    assert sdata.attrs["histo2st"]["evaluation_dense"]["params"]["normalization"] is None


def test_clear_errors(small_tissue, truth):
    sdata = _with_prediction(small_tissue, truth, 2.0)
    with pytest.raises(KeyError, match="No image 'nope'"):
        st.tl.evaluate_dense(sdata, pred_key="nope")
    with pytest.raises(KeyError, match="not channels of image 'pred'"):
        st.tl.evaluate_dense(sdata, genes=["NOPE"])
    with pytest.raises(ValueError, match="larger than"):
        st.tl.evaluate_dense(sdata, bins_um=(1000,))
    genes = list(sdata["truth"].coords["c"].values)
    bare = Image2DModel.parse(
        truth[:, :10, :10], dims=("c", "y", "x"), c_coords=genes, transformations={"global": Identity()}
    )
    sdata.images["bare"] = bare
    with pytest.raises(ValueError, match="no transformation to the 'microns'"):
        st.tl.evaluate_dense(sdata, pred_key="bare")


@pytest.mark.slow
def test_on_a_fitted_model(tiny_pixnet):
    """End to end on what ``st.tl.predict`` writes (training dominates the time: about 30 s on 2 busy cores)."""
    sdata = st.datasets.synthetic_tissue(size_um=400, microns_per_pixel=2.0, n_genes=6, seed=3)
    st.pp.normalize(sdata)
    model = st.tl.fit(sdata, "pixnet", epochs=1, microns_per_pixel=4.0, progress=False, **tiny_pixnet)
    st.tl.predict(sdata, model, tissue_mask=False)  # the map covers the whole truth
    spots = st.tl.evaluate(sdata, n_clusters=2)
    assert spots.loc["synthetic", "n_spots"] == sdata["table"].n_obs
    assert spots.loc["synthetic", "n_genes"] == 6
    assert np.isfinite(spots.loc["synthetic", ["MSE", "MAE", "ARI"]].astype(float)).all()
    dense = st.tl.evaluate_dense(sdata, bins_um=(8, 16))
    assert dense["n_bins"].tolist() == [50 * 50, 25 * 25]  # the 4 µm/px map and the 2 µm/px truth cover 400 µm
    assert np.isfinite(dense[["MSE", "SSIM"]].to_numpy()).all()
