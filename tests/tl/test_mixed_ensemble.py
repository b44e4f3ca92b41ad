"""A mixed ensemble: PixNet and THItoGene trained by one call, predicting their mean on PixNet's grid."""

import dask.array as da
import numpy as np
import pytest

import histo2st as st
from histo2st.model import Ensemble
from histo2st.model._ensemble import _resampled


def test_coarse_maps_are_resampled_with_centers_aligned_and_gaps_kept():
    rows, cols = np.mgrid[0:3, 0:4]
    coarse = (2.0 * rows + 3.0 * cols).astype(np.float32)[None]  # a plane: bilinear interpolation is exact on it
    like = da.zeros((1, 12, 16), chunks=(1, 5, 7))
    fine = _resampled(da.from_array(coarse), like, ratio=4.0).compute()
    assert fine.shape == (1, 12, 16)
    y, x = ((np.arange(n) + 0.5) / 4 - 0.5 for n in (12, 16))  # fine pixel centers in coarse pixel coordinates
    inside = np.ix_((y >= 0) & (y <= 2), (x >= 0) & (x <= 3))
    np.testing.assert_allclose(fine[0][inside], (2 * y[:, None] + 3 * x[None, :])[inside], atol=1e-5)

    coarse[0, 0, 0] = np.nan
    fine = _resampled(da.from_array(coarse), like, ratio=4.0).compute()
    assert np.isnan(fine[0, :4, :4]).all()  # the fine pixels nearest the coarse pixel without a value
    assert np.isfinite(fine[0, 4:, :]).all()


def test_fit_a_list_of_models_and_predict_their_mean(tmp_path):
    sdata = st.datasets.synthetic_tissue(size_um=500, microns_per_pixel=2.0, n_genes=6, seed=4)
    st.pp.normalize(sdata)
    with pytest.raises(ValueError, match="would apply to every model"):
        st.tl.fit(sdata, ["pixnet", "thitogene"], hidden_dim=8)
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        st.tl.fit(sdata, ["pixnet", "nope"])
    mixed = st.tl.fit(sdata, ["pixnet", "thitogene"], epochs=1, max_time=2, progress=False)
    assert isinstance(mixed, Ensemble)
    assert mixed.mixed
    assert [m.model_name for m in mixed.members] == ["pixnet", "thitogene"]
    assert mixed.card["ensemble"]["member_models"] == ["pixnet", "thitogene"]
    assert mixed.map_microns_per_pixel == mixed.members[0].map_microns_per_pixel  # PixNet's, the finer
    assert not mixed.predicts_at_points

    st.tl.predict(sdata, mixed, spot_um=40)
    assert "pixnet+thitogene" in sdata.attrs["histo2st"]["models"]
    spots = sdata.tables["pred_spots"]
    assert np.isfinite(spots.X).mean() > 0.9
    assert spots.uns["histo2st"]["values"] == "mean of the members' own values"
    assert sdata.images["pred"].shape[0] == 6  # the mean maps; their spread is pred_std

    # each member counts at a spot as it would alone: PixNet by its map's mean over the spot, THItoGene by its
    # prediction at the center (not by its grid map's mean, which the mixed map holds)
    for key, member in (("alone_pixnet", mixed.members[0]), ("alone_thitogene", mixed.members[1])):
        st.tl.predict(sdata, member, spot_um=40, key_added=key)
    for table in ("spots", "square_40um"):
        alone = [sdata.tables[f"alone_{name}_{table}"].X for name in ("pixnet", "thitogene")]
        assert sdata.tables[f"alone_thitogene_{table}"].uns["histo2st"]["values"] == "prediction at the centers"
        np.testing.assert_allclose(sdata.tables[f"pred_{table}"].X, (alone[0] + alone[1]) / 2, atol=1e-4)
        np.testing.assert_allclose(sdata.tables[f"pred_{table}"].layers["std"], np.abs(alone[0] - alone[1]) / 2,
                                   atol=1e-4)  # fmt: skip

    loaded = st.tl.load_model(mixed.save(tmp_path / "mixed"))
    assert loaded.mixed
    assert [type(m).__name__ for m in loaded.members] == ["PixNet", "THItoGene"]
