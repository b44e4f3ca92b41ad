from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import histo2st as st

GENES = [f"G{i}" for i in range(30)]


def _evaluated(pcc: np.ndarray, name: str):
    """A sample whose prediction table carries what `st.tl.evaluate` writes (fabricated values)."""
    import anndata as ad
    import spatialdata as sd

    table = ad.AnnData(np.zeros((3, len(GENES)), dtype=np.float32), var=pd.DataFrame(index=GENES))
    table.var["evaluation_pcc"] = pcc
    return sd.SpatialData(tables={"pred_spots": table}, attrs={"histo2st": {"sample": name}})


def _texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


def test_gene_correlation_of_one_sample_names_the_top_genes(tmp_path):
    pcc = np.linspace(0.9, -0.2, len(GENES))[np.random.default_rng(0).permutation(len(GENES))]
    pcc[3] = np.nan  # a constant gene has no correlation
    ax = st.pl.gene_correlation(_evaluated(pcc, "C5"), n_top=5, save=tmp_path / "pcc.png", show=False)
    (line,) = ax.get_lines()[:1]
    finite = np.sort(pcc[np.isfinite(pcc)])[::-1]
    np.testing.assert_allclose(line.get_ydata(), finite)
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(finite) + 1))
    top = [GENES[i] for i in np.argsort(-np.nan_to_num(pcc, nan=-9))[:5]]
    assert all(g in _texts(ax) for g in top)
    assert len(ax.texts) == 6  # a header and the 5 names
    assert f"PCC@M {finite.mean():.3f}" in ax.get_legend().get_texts()[0].get_text()


def test_gene_correlation_of_sections_and_of_gene_scores():
    rng = np.random.default_rng(1)
    samples = {"C2": _evaluated(rng.uniform(-0.2, 0.8, 30), "x"), "C3": _evaluated(rng.uniform(-0.2, 0.8, 30), "y")}
    ax = st.pl.gene_correlation(samples, n_top=3, show=False)
    assert [t.get_text().split(" ")[0] for t in ax.get_legend().get_texts()] == ["C2", "C3"]
    mean = (samples["C2"]["pred_spots"].var["evaluation_pcc"] + samples["C3"]["pred_spots"].var["evaluation_pcc"]) / 2
    assert all(g in _texts(ax) for g in mean.sort_values(ascending=False).index[:3])

    ax = st.pl.gene_correlation(list(samples.values()), n_top=0, show=False)
    assert [t.get_text().split(" ")[0] for t in ax.get_legend().get_texts()] == ["x", "y"]
    assert not ax.texts

    scores = pd.DataFrame({"section": ["a"] * 3 + ["b"] * 2, "gene": ["X", "Y", "Z", "X", "Y"],
                           "pcc": [0.5, 0.1, 0.3, 0.2, 0.4], "pvalue": 0.01})  # fmt: skip
    ax = st.pl.gene_correlation(scores, section="a", n_top=2, show=False)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.5, 0.3, 0.1])
    assert "X" in _texts(ax)
    assert "Z" in _texts(ax)
    assert "Y" not in _texts(ax)


def test_gene_correlation_errors():
    with pytest.raises(KeyError, match="st.tl.evaluate"):
        st.pl.gene_correlation(_evaluated(np.zeros(30), "s"), key="other", show=False)
    with pytest.raises(ValueError, match="gene_scores"):
        st.pl.gene_correlation(pd.DataFrame({"gene": ["a"]}), show=False)
    with pytest.raises(KeyError, match="Sections"):
        st.pl.gene_correlation(_evaluated(np.zeros(30), "s"), section="t", show=False)


HISTORY = [
    {"epoch": 1, "loss": 2.0, "epoch_seconds": 1.0, "val_pcc": 0.10, "val_mse": 1.5},
    {"epoch": 2, "loss": 1.4, "epoch_seconds": 1.1, "val_pcc": float("nan"), "val_mse": 1.2},
    {"epoch": 3, "loss": 1.1, "epoch_seconds": 1.0, "val_pcc": 0.35, "val_mse": 1.0},
]


def test_history_draws_each_metric_per_epoch(tmp_path):
    axes = st.pl.history(SimpleNamespace(history=HISTORY), save=tmp_path / "h" / "history.png", show=False)
    assert (tmp_path / "h" / "history.png").is_file()
    assert [a.get_title() for a in axes] == ["loss", "val_pcc"]
    for a, metric in zip(axes, ("loss", "val_pcc"), strict=True):
        (line,) = a.get_lines()
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
        np.testing.assert_array_equal(line.get_ydata(), [h[metric] for h in HISTORY])
    ax = st.pl.history(HISTORY, metrics="val_mse", show=False)
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), [1.5, 1.2, 1.0])


def test_history_of_an_ensemble_draws_a_line_per_member():
    shorter = [{**h, "loss": h["loss"] / 2} for h in HISTORY[:2]]
    ensemble = SimpleNamespace(members=[SimpleNamespace(history=HISTORY), SimpleNamespace(history=shorter)],
                               seeds=[0, 1])  # fmt: skip
    ax = st.pl.history(ensemble, metrics="loss", show=False)
    first, second = ax.get_lines()
    assert [first.get_label(), second.get_label()] == ["seed 0", "seed 1"]
    np.testing.assert_array_equal(second.get_xdata(), [1, 2])
    np.testing.assert_array_equal(second.get_ydata(), [1.0, 0.7])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["seed 0", "seed 1"]


def test_history_errors():
    no_validation = [{"epoch": 1, "loss": 1.0}]
    with pytest.raises(KeyError, match="validation"):
        st.pl.history(no_validation, show=False)
    with pytest.raises(ValueError, match="empty"):
        st.pl.history([], show=False)
    with pytest.raises(TypeError, match="history"):
        st.pl.history(3, show=False)
