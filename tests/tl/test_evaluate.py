"""``st.tl.evaluate`` and ``st.tl.gene_scores`` on small samples with fabricated prediction tables."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import histo2st as st

GENES = [f"G{i}" for i in range(8)]


def _section(name: str, seed: int, n_side: int = 8, *, painted: bool = False):
    """A normalized sample of ``n_side**2`` spots whose 8 genes vary smoothly across it (so k-means finds domains).

    ``painted``: each spot's square has its domain's color, and each domain the same rates in every section, so color
    predicts expression across sections.
    """
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (20 * n_side, 20 * n_side, 3), dtype=np.uint8)
    grid = np.arange(10, 20 * n_side, 20, dtype=float)
    xy = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    domain = (xy[:, 0] > xy[:, 0].mean()).astype(int) + 2 * (xy[:, 1] > xy[:, 1].mean())
    rates = (np.random.default_rng(99) if painted else rng).gamma(2.0, 20.0, size=(4, len(GENES)))[domain]
    counts = rng.poisson(rates)
    if painted:
        colors = np.array([[200, 80, 150], [90, 60, 170], [230, 180, 210], [140, 110, 120]], dtype=np.uint8)
        for (cx, cy), d in zip(xy.astype(int), domain, strict=True):
            image[cy - 10 : cy + 10, cx - 10 : cx + 10] = colors[d]
    sdata = st.io.from_arrays(image, xy, counts, GENES, microns_per_pixel=1.0, spot_diameter_um=10.0, sample=name)
    st.pp.normalize(sdata)
    return sdata


def _add_prediction(sdata, noise: float, seed: int = 0, rows=None, key: str = "pred_spots"):
    truth = sdata.tables["table"]
    x = truth.X.toarray() if hasattr(truth.X, "toarray") else np.asarray(truth.X)
    x = x + np.random.default_rng(seed).normal(scale=noise, size=x.shape)
    pred = ad.AnnData(x.astype(np.float32), obs=pd.DataFrame(index=truth.obs_names), var=pd.DataFrame(index=GENES))
    sdata.tables[key] = pred[rows].copy() if rows is not None else pred
    return sdata


@pytest.fixture
def sections():
    return {
        name: _add_prediction(_section(name, seed), noise=0.05, seed=seed) for seed, name in enumerate(["A1", "B1"])
    }


def test_summary_rows_columns_and_writes(sections):
    summary = st.tl.evaluate(sections, n_clusters=3, seed=0)
    assert list(summary.index) == ["A1", "B1", "pooled"]
    assert list(summary.columns) == [
        "scope", "n_spots", "n_genes", "MSE", "MAE", "MSE mean predictor", "R2", "PCC@M", "PCC@S", "PCC@F", "ARI",
    ]  # fmt: skip
    assert summary["scope"].tolist() == ["section", "section", "pooled"]
    assert summary["n_spots"].tolist() == [64, 64, 128]
    assert (summary["n_genes"] == 8).all()
    assert (summary["PCC@M"] > 0.95).all()
    assert (summary["MSE"] < 0.01).all()
    assert summary.loc["pooled", "ARI"] == pytest.approx(summary.loc[["A1", "B1"], "ARI"].mean())

    table = sections["A1"].tables["pred_spots"]
    assert list(table.var_names) == GENES
    truth = sections["A1"].tables["table"].X.toarray()
    expected = stats.pearsonr(np.asarray(table.X[:, 2], dtype=float), truth[:, 2])
    assert table.var.loc["G2", "evaluation_pcc"] == pytest.approx(expected.statistic)
    assert table.var.loc["G2", "evaluation_pvalue"] == pytest.approx(expected.pvalue, rel=1e-6)
    entry = table.uns["histo2st"]["evaluation"]
    assert entry["params"]["n_clusters"] == 3
    assert list(entry["params"]["genes"]) == GENES
    assert entry["summary"]["PCC@M"] == pytest.approx(summary.loc["A1", "PCC@M"])
    assert entry["pooled"]["n_spots"] == 128


def test_pooled_pcc_is_over_concatenated_spots(sections):
    summary = st.tl.evaluate(list(sections.values()))  # a list: sections named by their sample names
    assert list(summary.index) == ["A1", "B1", "pooled"]
    pred = np.concatenate([np.asarray(s.tables["pred_spots"].X, dtype=float) for s in sections.values()])
    truth = np.concatenate([s.tables["table"].X.toarray() for s in sections.values()])
    pooled = [stats.pearsonr(pred[:, g], truth[:, g]).statistic for g in range(len(GENES))]
    assert summary.loc["pooled", "PCC@M"] == pytest.approx(np.mean(pooled))
    assert summary.loc["pooled", "MAE"] == pytest.approx(np.abs(pred - truth).mean())
    assert np.isnan(summary["ARI"]).all()


def test_perfect_prediction_and_noise_lower_the_scores():
    sdata = _add_prediction(_section("S", 3), noise=0.0)
    perfect = st.tl.evaluate(sdata, n_clusters=4)
    assert perfect.loc["S", "PCC@M"] == pytest.approx(1.0)
    assert perfect.loc["S", "ARI"] == 1.0
    assert perfect.loc["S", "MSE"] == pytest.approx(0.0, abs=1e-10)
    noisy = st.tl.evaluate(_add_prediction(sdata, noise=1.0), n_clusters=4, key_added="noisy")
    assert noisy.loc["S", "PCC@M"] < perfect.loc["S", "PCC@M"] - 0.1
    assert noisy.loc["S", "ARI"] < 1.0
    assert "noisy_pcc" in sdata.tables["pred_spots"].var


def test_r2_is_the_margin_over_each_genes_mean():
    sdata = _section("S", 4)
    truth = sdata.tables["table"]
    x = np.asarray(truth.X.toarray() if hasattr(truth.X, "toarray") else truth.X, dtype=float)
    perfect = st.tl.evaluate(_add_prediction(sdata, noise=0.0))
    assert perfect.loc["S", "R2"] == pytest.approx(1.0)
    assert perfect.loc["S", "MSE mean predictor"] == pytest.approx(np.mean((x - x.mean(0)) ** 2))
    # the measured mean itself, predicted everywhere, scores exactly 0
    sdata.tables["pred_spots"].X = np.broadcast_to(x.mean(0), x.shape).astype(np.float32).copy()
    constant = st.tl.evaluate(sdata, key_added="constant")
    assert constant.loc["S", "R2"] == pytest.approx(0.0, abs=1e-6)


def test_subset_in_another_order_is_aligned_by_spot_name():
    sdata = _section("S", 4)
    names = sdata.tables["table"].obs_names
    rows = np.random.default_rng(0).permutation(names)[: len(names) // 2]
    _add_prediction(sdata, noise=0.0, rows=rows)
    summary = st.tl.evaluate(sdata, genes=["G3", "G1"])
    assert summary.loc["S", "n_spots"] == len(rows)
    assert summary.loc["S", "n_genes"] == 2
    assert summary.loc["S", "PCC@M"] == pytest.approx(1.0)
    assert np.isnan(sdata.tables["pred_spots"].var.loc["G0", "evaluation_pcc"])


def test_one_gene_as_a_string():
    sdata = _section("S", 4)
    _add_prediction(sdata, noise=0.0)
    assert st.tl.evaluate(sdata, genes="G1").loc["S", "n_genes"] == 1


def test_gene_scores_ranks_genes_within_sections(sections):
    st.tl.evaluate(sections)
    scores = st.tl.gene_scores(sections)
    assert list(scores.columns) == ["section", "gene", "pcc", "pvalue", "neg_log10_pvalue"]
    assert scores["section"].tolist() == ["A1"] * 8 + ["B1"] * 8
    for _, group in scores.groupby("section", observed=True):
        assert group["pcc"].is_monotonic_decreasing
        assert sorted(group["gene"]) == GENES
    np.testing.assert_allclose(scores["neg_log10_pvalue"], -np.log10(np.maximum(scores["pvalue"], 1e-308)))
    with pytest.raises(KeyError, match="no evaluation 'other'"):
        st.tl.gene_scores(sections, key="other")


def test_clear_errors():
    sdata = _section("S", 5)
    with pytest.raises(KeyError, match="st.tl.predict"):
        st.tl.evaluate(sdata)
    pred = sdata.tables["table"].copy()
    pred.obs_names = [f"other_{i}" for i in range(pred.n_obs)]
    sdata.tables["pred_spots"] = pred
    with pytest.raises(ValueError, match="share no spot name"):
        st.tl.evaluate(sdata)
    _add_prediction(sdata, noise=0.1)
    with pytest.raises(KeyError, match="not in table 'pred_spots'"):
        st.tl.evaluate(sdata, genes=["G1", "NOPE"])
    with pytest.raises(ValueError, match="fewer than `n_clusters=100`"):
        st.tl.evaluate(sdata, n_clusters=100)
    with pytest.raises(ValueError, match="named 'pooled'"):
        st.tl.evaluate({"pooled": sdata})


def test_training_mean_is_the_trivial_bar_on_the_same_spots(sections):
    means = {}
    for seed, (name, sdata) in enumerate(sections.items()):
        means[name] = np.random.default_rng(seed).uniform(0, 2, len(GENES))
        sdata.tables["pred_spots"].var["training_mean"] = means[name]
    summary = st.tl.evaluate(sections)
    assert list(summary.columns[-2:]) == ["MSE training mean", "R2 training mean"]
    errors = []
    for name, sdata in sections.items():
        truth = sdata.tables["table"].X.toarray()
        errors.append((truth - means[name]) ** 2)
        assert summary.loc[name, "MSE training mean"] == pytest.approx(errors[-1].mean())
        expected = 1 - summary.loc[name, "MSE"] / errors[-1].mean()
        assert summary.loc[name, "R2 training mean"] == pytest.approx(expected)
    assert summary.loc["pooled", "MSE training mean"] == pytest.approx(np.concatenate(errors).mean())
    # a prediction table without it (a model saved before it was recorded): no such columns, no guess
    del sections["B1"].tables["pred_spots"].var["training_mean"]
    assert "MSE training mean" not in st.tl.evaluate(sections).columns


def test_ridge_baseline_is_fitted_on_the_given_sections_and_scored_on_the_same_spots():
    train, test = _section("A1", 0, painted=True), _add_prediction(_section("B1", 1, painted=True), noise=0.3)
    summary = st.tl.evaluate(test, baseline=train)
    ridge_columns = ["MSE ridge", "PCC@M ridge", "PCC@S ridge", "PCC@F ridge", "PCC@M / ridge"]
    assert list(summary.columns[-5:]) == ridge_columns
    assert summary.loc["B1", "PCC@M ridge"] > 0.5  # color tells the domains apart
    ratio = summary.loc["B1", "PCC@M"] / summary.loc["B1", "PCC@M ridge"]
    assert summary.loc["B1", "PCC@M / ridge"] == pytest.approx(ratio)

    # the same ridge fitted and applied by hand
    ridge = st.model.ColorTextureRidge(GENES, patch_um=10.0).fit(train)
    table = test.tables["table"]
    expected = ridge.predict_points(test, table.obsm["spatial"])
    pcc = test.tables["pred_spots"].var["evaluation_pcc_ridge"].to_numpy()
    truth = table.X.toarray()
    np.testing.assert_allclose(pcc, [stats.pearsonr(expected[:, g], truth[:, g]).statistic for g in range(8)],
                               rtol=1e-4)  # fmt: skip
    assert summary.loc["B1", "MSE ridge"] == pytest.approx(np.mean((expected - truth) ** 2), rel=1e-4)
    assert list(test.tables["pred_spots"].uns["histo2st"]["evaluation"]["params"]["baseline"]) == ["A1"]


def test_ridge_baseline_needs_the_evaluated_genes():
    train, test = _section("A1", 0), _add_prediction(_section("B1", 1), noise=0.1)
    train.tables["table"] = train.tables["table"][:, GENES[:4]].copy()
    with pytest.raises(KeyError, match="lacks 4 of the evaluated genes"):
        st.tl.evaluate(test, baseline=train)


def test_noise_ceiling_splits_the_measured_counts_of_each_section_and_pooled(sections):
    summary = st.tl.evaluate(sections, seed=0, ceiling=True)
    assert list(summary.columns[-2:]) == ["PCC@M ceiling", "PCC@M / ceiling"]
    for name, sdata in sections.items():
        table = sdata.tables["table"]
        expected = st.metrics.noise_ceiling(table.layers["counts"], table.obs["total_counts"], target_sum=1e4, seed=0)
        per_gene = sdata.tables["pred_spots"].var["evaluation_pcc_ceiling"].to_numpy()
        np.testing.assert_allclose(per_gene, expected)
        assert summary.loc[name, "PCC@M ceiling"] == pytest.approx(expected.mean())
        ratio = summary.loc[name, "PCC@M"] / expected.mean()
        assert summary.loc[name, "PCC@M / ceiling"] == pytest.approx(ratio)
    # domains with rates of tens of counts: the measurement holds most of the signal
    assert (summary["PCC@M ceiling"] > 0.8).all()
    assert sections["A1"].tables["pred_spots"].uns["histo2st"]["evaluation"]["params"]["ceiling"]
    scores = st.tl.gene_scores(sections).set_index(["section", "gene"])
    per_gene = sections["B1"].tables["pred_spots"].var["evaluation_pcc_ceiling"]
    np.testing.assert_allclose(scores.loc["B1", "ceiling"].loc[GENES], per_gene.loc[GENES])


def test_noise_ceiling_needs_the_raw_counts(sections):
    del sections["B1"].tables["table"].layers["counts"]
    with pytest.raises(ValueError, match="ceiling=True.*'B1'.*st.pp.normalize"):
        st.tl.evaluate(sections, ceiling=True)
    assert "PCC@M ceiling" not in st.tl.evaluate(sections).columns
    assert "ceiling" not in st.tl.gene_scores(sections).columns
