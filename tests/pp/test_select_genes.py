from types import SimpleNamespace

import numpy as np
import pytest
import scanpy as sc

import histo2st as st

GENES = [f"g{i}" for i in range(40)]
HER2ST_SECTIONS = ("C2", "C3", "C4", "C5")


def _report(samples) -> SimpleNamespace:
    """What ``select_genes`` recorded in each table's ``uns``: the genes, those not in all samples, the absent ones."""
    samples = samples if isinstance(samples, dict) else {"sample": samples}
    entries = {name: sdata["table"].uns["histo2st"]["select_genes"] for name, sdata in samples.items()}
    first = next(iter(entries.values()))
    return SimpleNamespace(
        genes=first["genes"].tolist(),
        absent=first["absent"].tolist(),
        not_in_all={name: entry["not_in_all"].tolist() for name, entry in entries.items()},
    )


@pytest.fixture
def two_samples(make_sample):
    """Two normalized samples sharing g5..g39 (a lacks g40..g44, b lacks g0..g4), different spot counts."""
    a = make_sample("a", GENES, n_spots=30, seed=1)
    b = make_sample("b", [f"g{i}" for i in range(5, 45)], n_spots=50, seed=2)
    st.pp.normalize([a, b])
    return {"a": a, "b": b}


def test_mean_is_pooled_over_spots_and_subsets_in_rank_order(two_samples):
    common = [f"g{i}" for i in range(5, 40)]
    pooled = np.vstack([s["table"][:, common].X.toarray() for s in two_samples.values()])
    expected = [common[i] for i in np.argsort(-pooled.mean(axis=0), kind="stable")[:7]]

    assert st.pp.select_genes(two_samples, n_top=7) is None  # in place, like scanpy

    report = _report(two_samples)

    assert report.genes == expected
    for sdata in two_samples.values():
        assert sdata["table"].var_names.tolist() == expected
        uns = sdata["table"].uns["histo2st"]["select_genes"]
        assert uns["method"] == "mean"
        assert uns["n_top"] == 7
        assert uns["samples"] == ["a", "b"]
        assert uns["genes"].tolist() == expected
        st.io.validate(sdata)


def test_genes_not_in_all_samples_are_reported(two_samples):
    assert st.pp.select_genes(two_samples, n_top=35, subset=False) is None

    report = _report(two_samples)
    assert report.not_in_all == {"a": [f"g{i}" for i in range(5)], "b": [f"g{i}" for i in range(40, 45)]}
    assert set(report.genes) == {f"g{i}" for i in range(5, 40)}
    assert two_samples["b"]["table"].uns["histo2st"]["select_genes"]["not_in_all"].tolist() == report.not_in_all["b"]


def test_subset_false_marks_var(two_samples):
    assert st.pp.select_genes(two_samples, n_top=5, subset=False, key_added="chosen") is None

    report = _report(two_samples)
    table = two_samples["a"]["table"]
    assert table.n_vars == 40
    assert table.var_names[table.var["chosen"]].tolist() == sorted(report.genes, key=GENES.index)
    assert table.uns["histo2st"]["select_genes"]["key_added"] == "chosen"


def test_hvg_matches_scanpy_on_one_sample(make_sample):
    sdata = make_sample("h", GENES, n_spots=60, seed=3)
    st.pp.normalize(sdata)
    reference = sdata["table"].copy()
    sc.pp.highly_variable_genes(reference, n_top_genes=8, flavor="seurat")

    assert st.pp.select_genes(sdata, n_top=8, method="hvg") is None

    report = _report(sdata)

    # scanpy marks every gene tied at the cut-off; histo2st keeps exactly n_top of them, most variable first
    assert len(report.genes) == 8
    assert set(report.genes) <= set(reference.var_names[reference.var["highly_variable"]])
    dispersion = reference.var["dispersions_norm"]
    assert np.all(np.diff(dispersion[report.genes].to_numpy()) <= 0)
    assert dispersion[report.genes].min() >= dispersion.drop(report.genes).max()
    assert sdata["table"].var_names.tolist() == report.genes


def test_hvg_several_samples_uses_common_genes(two_samples):
    assert st.pp.select_genes(two_samples, n_top=10, method="hvg") is None

    report = _report(two_samples)
    assert len(report.genes) == 10
    assert set(report.genes) <= {f"g{i}" for i in range(5, 40)}
    assert two_samples["a"]["table"].var_names.tolist() == two_samples["b"]["table"].var_names.tolist()


def test_fixed_list_keeps_its_order_and_ignores_normalization(make_sample, tmp_path):
    listed = ["g9", "g2", "g30"]
    raw = make_sample("r", GENES)
    assert st.pp.select_genes(raw, method=listed) is None
    assert _report(raw).genes == listed
    assert raw["table"].var_names.tolist() == listed

    np.save(tmp_path / "genes.npy", np.array(listed))
    (tmp_path / "genes.txt").write_text("g9\ng2\n\ng30\n")
    for path in (tmp_path / "genes.npy", str(tmp_path / "genes.txt")):
        sdata = make_sample("p", GENES)
        st.pp.select_genes(sdata, method=path)
        assert sdata["table"].var_names.tolist() == listed
        assert sdata["table"].uns["histo2st"]["select_genes"]["source"] == str(path)


def test_absent_listed_genes_raise_or_drop(two_samples):
    listed = ["g1", "g10", "g42", "g20", "nope"]
    with pytest.raises(ValueError, match=r"3 of the 5 listed genes are not measured in every sample") as err:
        st.pp.select_genes(two_samples, method=listed)
    assert "'g1', 'g42', 'nope'" in str(err.value)
    assert "missing='drop'" in str(err.value)
    assert two_samples["a"]["table"].n_vars == 40  # nothing changed

    assert st.pp.select_genes(two_samples, method=listed, missing="drop") is None

    report = _report(two_samples)
    assert report.genes == ["g10", "g20"]
    assert report.absent == ["g1", "g42", "nope"]
    assert two_samples["b"]["table"].uns["histo2st"]["select_genes"]["absent"].tolist() == ["g1", "g42", "nope"]


def test_list_with_no_present_gene_raises_even_with_drop(tiny_sample):
    with pytest.raises(ValueError, match="2 of the 2 listed genes"):
        st.pp.select_genes(tiny_sample, method=["x", "y"], missing="drop")


def test_unknown_method_lists_valid_ones(tiny_sample):
    with pytest.raises(ValueError, match=r"Unknown gene selection method 'variance'\. Valid: 'mean', 'hvg'"):
        st.pp.select_genes(tiny_sample, method="variance")
    with pytest.raises(ValueError, match=r"Unknown gene selection method 'variance'\. Valid: 'mean', 'hvg'"):
        st.pp.select_genes(tiny_sample, method="variance", missing="drop")
    with pytest.raises(FileNotFoundError, match="Gene list file not found"):
        st.pp.select_genes(tiny_sample, method="missing_genes.npy")
    with pytest.raises(ValueError, match="`missing` must be one of"):
        st.pp.select_genes(tiny_sample, method=["a"], missing="ignore")
    with pytest.raises(ValueError, match="twice"):
        st.pp.select_genes(tiny_sample, method=["a", "b", "a"])


def test_one_gene_as_a_string(tiny_sample):
    assert st.pp.select_genes(tiny_sample, method="c") is None

    report = _report(tiny_sample)
    assert report.genes == ["c"]
    assert tiny_sample["table"].var_names.tolist() == ["c"]
    assert tiny_sample["table"].uns["histo2st"]["select_genes"]["source"] is None


def test_ranking_methods_need_normalized_tables(tiny_sample):
    with pytest.raises(ValueError, match=r"Call `st.pp.normalize\(sdata\)` first"):
        st.pp.select_genes(tiny_sample, n_top=2)
    st.pp.normalize(tiny_sample, log=False)
    with pytest.raises(ValueError, match="log=True"):
        st.pp.select_genes(tiny_sample, n_top=2, method="hvg")
    with pytest.raises(ValueError, match="only 5 genes are measured in all samples"):
        st.pp.select_genes(tiny_sample, n_top=6)


def test_copy_returns_copies_and_keeps_input(two_samples):
    out = st.pp.select_genes(two_samples, n_top=3, copy=True)
    assert out["a"]["table"].n_vars == 3
    assert two_samples["a"]["table"].n_vars == 40


@pytest.mark.realdata
def test_her2st_sections_with_thitogene_list(shared_data):
    if not hasattr(st.io, "read_her2st"):
        pytest.skip("histo2st.io.read_her2st is not available yet")
    root = shared_data / "her2st"
    samples = {name: st.io.read_her2st(root, name) for name in HER2ST_SECTIONS}
    st.pp.normalize(samples)
    listed = np.load(shared_data / "thitogene" / "her_hvg_cut_1000.npy")

    listed_file = shared_data / "thitogene" / "her_hvg_cut_1000.npy"
    assert st.pp.select_genes(samples, method=listed_file, subset=False) is None

    report = _report(samples)
    assert len(listed) == 785
    assert report.absent == []  # all 785 THItoGene genes are measured in each of C2-C5
    assert report.genes == listed.tolist()

    assert st.pp.select_genes(samples, n_top=250) is None

    top = _report(samples)
    assert len(top.genes) == 250
    assert "ERBB2" in top.genes[:20]  # HER2-positive tumor: the HER2 gene is among the most expressed
    for sdata in samples.values():
        assert sdata["table"].var_names.tolist() == top.genes
