"""Named evaluation protocols: splits by section or patient, their genes, and writing them to disk."""

import numpy as np
import pandas as pd
import pytest

import histo2st as st
from histo2st.tl import Protocol

N_GENES = 260


def _section(name: str, boost: bool = False):
    """10 spots, 260 genes whose mean falls with the index; with ``boost`` the last gene is the highest."""
    rng = np.random.default_rng(sum(map(ord, name)))
    rates = np.linspace(200, 1, N_GENES)
    if boost:
        rates[-1] = 10_000
    counts = rng.poisson(rates, size=(10, N_GENES))
    xy = np.column_stack([np.arange(10) * 10 + 5.0, np.full(10, 5.0)])
    image = np.zeros((20, 110, 3), dtype=np.uint8)
    genes = [f"G{i:03d}" for i in range(N_GENES)]
    return st.io.from_arrays(image, xy, counts, genes, microns_per_pixel=1.0, spot_diameter_um=5.0, sample=name)


def _top_by_mean(samples, n_top: int = 250) -> list[str]:
    """Brute force: the highest means of log1p(count / total * 1e4) over the pooled spots of ``samples``."""
    frames = []
    for sdata in samples:
        table = sdata.tables["table"]
        counts = table.layers["counts"]
        counts = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts, dtype=float)
        frames.append(pd.DataFrame(np.log1p(counts / counts.sum(1, keepdims=True) * 1e4), columns=table.var_names))
    means = pd.concat(frames, join="inner").mean()
    return means.sort_values(ascending=False, kind="stable").index[:n_top].tolist()


@pytest.fixture(scope="module")
def sections():
    return {name: _section(name, boost=name == "B1") for name in ["A1", "A2", "B1", "B2", "C1"]}


def test_top250_ranks_genes_on_the_training_sections_only(sections):
    proto = st.tl.protocol("pixnet_top250", sections, test="B1")
    assert proto.folds == [(["A1", "A2", "B2", "C1"], ["B1"])]
    assert len(proto.genes) == 250
    assert "G259" not in proto.genes  # high only in the test section
    assert proto.genes == _top_by_mean([sections[s] for s in ("A1", "A2", "B2", "C1")])
    assert proto.params["n_top"] == 250
    assert proto.params["normalize"] == {"target_sum": 1e4, "log": True}
    assert "histo2st" not in sections["A1"].tables["table"].var  # the user's tables are untouched
    assert "normalize" not in sections["A1"].tables["table"].uns.get("histo2st", {})


def test_leave_one_out_by_section_and_by_patient(sections):
    loso = st.tl.protocol("pixnet_top250", sections)
    assert [test for _, test in loso.folds] == [["A1"], ["A2"], ["B1"], ["B2"], ["C1"]]
    boosted = [("G259" in genes) for genes in loso.fold_genes]
    assert boosted == [True, True, False, True, True]  # ranked on each fold's training sections
    with pytest.raises(ValueError, match="different genes"):
        _ = loso.genes

    by_patient = st.tl.protocol("pixnet_top250", sections, group_by="patient")
    assert by_patient.folds == [
        (["B1", "B2", "C1"], ["A1", "A2"]),
        (["A1", "A2", "C1"], ["B1", "B2"]),
        (["A1", "A2", "B1", "B2"], ["C1"]),
    ]
    assert by_patient.params["groups"]["A2"] == "A"
    held_out = st.tl.protocol("pixnet_top250", sections, test="A2", group_by="patient")
    assert held_out.folds == [(["B1", "B2", "C1"], ["A1", "A2"])]
    mapping = {"A1": "x", "A2": "y", "B1": "x", "B2": "y", "C1": "z"}
    custom = st.tl.protocol("pixnet_top250", sections, test="x", group_by=mapping)
    assert custom.folds == [(["A2", "B2", "C1"], ["A1", "B1"])]
    assert custom.params["group_by"] == "mapping"


def test_split_errors(sections):
    with pytest.raises(ValueError, match="Unknown protocol"):
        st.tl.protocol("nope", sections)
    with pytest.raises(ValueError, match="not among the sections"):
        st.tl.protocol("pixnet_top250", sections, test="Z9")
    with pytest.raises(ValueError, match="no group for sections"):
        st.tl.protocol("pixnet_top250", sections, group_by={"A1": "x"})
    with pytest.raises(ValueError, match="Cannot read a patient"):
        st.tl.protocol("pixnet_top250", {"slide_a": sections["A1"], "A2": sections["A2"]}, group_by="patient")
    with pytest.raises(ValueError, match="at least two groups"):
        st.tl.protocol("pixnet_top250", {k: sections[k] for k in ("A1", "A2")}, group_by="patient")
    with pytest.raises(ValueError, match="leaves no training section"):
        st.tl.protocol("pixnet_top250", {k: sections[k] for k in ("A1", "A2")}, test="A1", group_by="patient")


def test_fixed_list_from_a_data_root(sections, tmp_path):
    (tmp_path / "thitogene").mkdir()
    np.save(tmp_path / "thitogene" / "her_hvg_cut_1000.npy", np.array(["G010", "G003", "G100"]))
    proto = st.tl.protocol("thitogene_785", sections, test="C1", root=tmp_path)
    assert proto.genes == ["G010", "G003", "G100"]
    assert proto.params["gene_list"].endswith("her_hvg_cut_1000.npy")
    np.save(tmp_path / "thitogene" / "her_hvg_cut_1000.npy", np.array(["G010", "NOT_MEASURED"]))
    with pytest.raises(ValueError, match="not measured in every sample"):
        st.tl.protocol("thitogene_785", sections, test="C1", root=tmp_path)


def test_write_read_and_refuse_to_overwrite(sections, tmp_path):
    proto = st.tl.protocol("pixnet_top250", sections, group_by="patient")
    results = pd.DataFrame({"PCC@M": [0.3, 0.4]}, index=pd.Index(["A1", "pooled"], name="section"))
    out = proto.write(tmp_path / "run", results=results)
    assert sorted(p.name for p in out.iterdir()) == [
        "genes_fold0.txt", "genes_fold1.txt", "genes_fold2.txt", "results.csv", "split.json",
    ]  # fmt: skip
    back = Protocol.read(out)
    assert back.folds == proto.folds
    assert back.fold_genes == proto.fold_genes
    assert back.name == proto.name
    assert back.params["groups"] == proto.params["groups"]
    assert pd.read_csv(out / "results.csv", index_col=0)["PCC@M"].tolist() == [0.3, 0.4]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        proto.write(out)
    single = st.tl.protocol("pixnet_top250", sections, test="C1")
    single.write(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["genes.txt", "split.json"]
    assert (out / "genes.txt").read_text().splitlines() == single.genes
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary directory left behind


@pytest.mark.realdata
def test_her2st_protocols(shared_data):
    samples = {s: st.io.read_her2st(shared_data / "her2st", s) for s in ("C2", "C3", "C4", "C5")}
    listed = st.tl.protocol("thitogene_785", samples, test="C5", root=shared_data)
    assert len(listed.genes) == 785
    assert listed.genes == np.load(shared_data / "thitogene" / "her_hvg_cut_1000.npy").tolist()
    assert listed.folds == [(["C2", "C3", "C4"], ["C5"])]

    top = st.tl.protocol("pixnet_top250", samples, test="C5")
    # genes in every section: C5 measures all the top genes of C2-C4, so the ranking equals the brute force's
    assert top.genes == _top_by_mean([samples[s] for s in ("C2", "C3", "C4")])
    with pytest.raises(ValueError, match="leaves no training section"):
        st.tl.protocol("pixnet_top250", samples, test="C5", group_by="patient")
