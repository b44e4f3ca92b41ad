"""st.pl.trust: accuracy against uncertainty and spatial structure per gene, and one gene's map and uncertainty."""

import pytest

import histo2st as st

pytest.importorskip("squidpy")


@pytest.fixture(scope="module")
def evaluated(tiny_pixnet):
    sdata = st.datasets.synthetic_tissue(size_um=1000, microns_per_pixel=4.0, n_genes=12, seed=6)
    st.pp.normalize(sdata)
    settings = {**tiny_pixnet, "crop_px": 64, "batch_size": 4}
    ensemble = st.tl.fit(sdata, "pixnet", epochs=1, microns_per_pixel=8.0, progress=False, n_seeds=2, **settings)
    st.tl.predict(sdata, ensemble)
    st.tl.evaluate(sdata)
    st.tl.compare_downstream(sdata, top_k=(5,), domains="kmeans", n_clusters=3)
    return sdata, ensemble


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_every_panel_with_uncertainty_and_downstream(evaluated, tmp_path):
    sdata, _ = evaluated
    fig = st.pl.trust(sdata, "GENE03", return_fig=True, save=tmp_path / "trust.png")
    assert _titles(fig) == ["Which genes to believe", "Same spatial structure? (color: PCC)", "GENE03: prediction",
                            "GENE03: uncertainty (std)"]  # fmt: skip
    assert fig.axes[0].get_ylabel() == "predicted std / spread across spots"
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert len(labels) == 12  # 6 best and 6 worst of 12 genes
    assert (tmp_path / "trust.png").stat().st_size > 10_000


def test_a_single_model_without_downstream_has_fewer_panels(evaluated):
    sdata, ensemble = evaluated
    st.tl.predict(sdata, ensemble.members[0], key_added="single")
    st.tl.evaluate(sdata, pred_key="single_spots")
    fig = st.pl.trust(sdata, pred_key="single", n_label=2, return_fig=True, show=False)
    best = sdata["single_spots"].var["evaluation_pcc"].idxmax()
    assert _titles(fig) == ["Which genes to believe", f"{best}: prediction"]
    with pytest.raises(KeyError, match=r"st.tl.evaluate\(sdata\)"):
        st.pl.trust(sdata, evaluation_key="other")
    with pytest.raises(KeyError, match="was not evaluated"):
        st.pl.trust(sdata, "NOPE")
