import numpy as np
import pytest
import scipy.sparse as sp

import histo2st as st


def _expected(counts, target_sum=1e4, log=True):
    counts = np.asarray(counts, dtype=np.float64)
    scaled = counts / counts.sum(axis=1, keepdims=True) * target_sum
    return np.log1p(scaled) if log else scaled


def test_normalize_library_size_then_log1p(tiny_sample):
    raw = tiny_sample["table"].layers["counts"].toarray()
    assert st.pp.normalize(tiny_sample) is None
    table = tiny_sample["table"]
    np.testing.assert_allclose(table.X.toarray(), _expected(raw), rtol=1e-5)
    assert sp.issparse(table.X)
    assert table.X.dtype == np.float32
    np.testing.assert_array_equal(table.layers["counts"].toarray(), raw)
    np.testing.assert_array_equal(table.obs["total_counts"], raw.sum(axis=1))
    params = table.uns["histo2st"]["normalize"]
    assert params == {"target_sum": 1e4, "log": True, "layer": "counts", "n_spots_removed": 0}
    assert "log1p" in table.uns


def test_normalize_without_log_sums_to_target(tiny_sample):
    st.pp.normalize(tiny_sample, target_sum=100, log=False)
    table = tiny_sample["table"]
    np.testing.assert_allclose(np.asarray(table.X.sum(axis=1)).ravel(), 100, rtol=1e-5)
    assert "log1p" not in table.uns


def test_normalize_twice_recomputes_from_counts(tiny_sample):
    raw = tiny_sample["table"].layers["counts"].toarray()
    st.pp.normalize(tiny_sample)
    st.pp.normalize(tiny_sample)
    np.testing.assert_allclose(tiny_sample["table"].X.toarray(), _expected(raw), rtol=1e-5)
    st.pp.normalize(tiny_sample, target_sum=50, log=False)
    np.testing.assert_allclose(tiny_sample["table"].X.toarray(), _expected(raw, 50, log=False), rtol=1e-5)


def test_zero_count_spots_are_dropped_with_table_and_shapes(make_sample):
    sdata = make_sample("z", [f"g{i}" for i in range(8)], n_spots=12, zero_spots=(2, 7))
    with pytest.warns(UserWarning, match="removing 2 of 12 spots with zero counts"):
        st.pp.normalize(sdata)
    table = sdata["table"]
    kept = [i for i in range(12) if i not in (2, 7)]
    np.testing.assert_array_equal(table.obs["spot_id"], kept)
    np.testing.assert_array_equal(sdata["spots"].index, kept)
    np.testing.assert_allclose(
        np.column_stack([sdata["spots"].geometry.x, sdata["spots"].geometry.y]), table.obsm["spatial"]
    )
    assert table.uns["histo2st"]["normalize"]["n_spots_removed"] == 2
    assert np.isfinite(table.X.toarray()).all()
    st.io.validate(sdata)  # the table still annotates its circles, the microns system is kept


def test_normalize_several_samples_copy(make_sample):
    genes = [f"g{i}" for i in range(6)]
    samples = {"a": make_sample("a", genes, seed=1), "b": make_sample("b", genes, seed=2)}
    raw = {k: s["table"].layers["counts"].toarray() for k, s in samples.items()}
    out = st.pp.normalize(samples, copy=True)
    assert list(out) == ["a", "b"]
    for name in samples:
        np.testing.assert_allclose(out[name]["table"].X.toarray(), _expected(raw[name]), rtol=1e-5)
        np.testing.assert_array_equal(samples[name]["table"].X.toarray(), raw[name])  # originals untouched
    as_list = st.pp.normalize(list(samples.values()), copy=True)
    assert isinstance(as_list, list)
    assert len(as_list) == 2


@pytest.mark.parametrize(("value", "match"), [(np.nan, "1 NaN or infinite"), (-3.0, "1 negative values")])
def test_normalize_rejects_bad_counts(tiny_sample, value, match):
    counts = tiny_sample["table"].layers["counts"].astype(np.float64).tolil()
    counts[1, 2] = value
    tiny_sample["table"].layers["counts"] = counts.tocsr()
    with pytest.raises(ValueError, match=match):
        st.pp.normalize(tiny_sample)


def test_normalize_needs_counts_layer(tiny_sample):
    del tiny_sample["table"].layers["counts"]
    with pytest.raises(ValueError, match=r"no raw counts in layers\['counts'\]"):
        st.pp.normalize(tiny_sample)


def test_normalize_refuses_gene_subset_tables(tiny_sample):
    st.pp.normalize(tiny_sample)
    st.pp.select_genes(tiny_sample, n_top=2)
    with pytest.raises(ValueError, match="Normalize before `st.pp.select_genes`"):
        st.pp.normalize(tiny_sample)


def test_normalize_all_empty_and_bad_target(make_sample):
    sdata = make_sample("e", ["a", "b"], n_spots=3, zero_spots=(0, 1, 2))
    with pytest.raises(ValueError, match="All 3 spots of sample 'e' have zero counts"):
        st.pp.normalize(sdata)
    with pytest.raises(ValueError, match="`target_sum` must be a positive number"):
        st.pp.normalize(sdata, target_sum=0)
