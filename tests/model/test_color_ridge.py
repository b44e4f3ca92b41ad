"""``st.model.ColorTextureRidge``: the colour/texture baseline that benchmarks and ``st.tl.evaluate`` score against."""

import numpy as np

import histo2st as st


def test_fits_on_sections_and_predicts_a_spot_table():
    train = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=8, n_cell_types=3, seed=1)
    test = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=8, n_cell_types=3, seed=2)
    for sdata in (train, test):
        st.pp.normalize(sdata)
    genes = list(train.tables["table"].var_names[:5])
    model = st.model.ColorTextureRidge(genes, patch_um=55.0).fit(train)
    assert model.alpha > 0

    table = test.tables["table"]
    assert model.features(test, table.obsm["spatial"]).shape == (table.n_obs, 40)
    pred = model.predict_spots(test)
    assert list(pred.var_names) == genes
    assert list(pred.obs_names) == list(table.obs_names)
    truth = table[:, genes].X
    truth = truth.toarray() if hasattr(truth, "toarray") else np.asarray(truth)
    r = [np.corrcoef(pred.X[:, j], truth[:, j])[0, 1] for j in range(len(genes))]
    assert np.nanmean(r) > 0.3  # in the synthetic tissue each cell type has its colour
