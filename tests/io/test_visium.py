"""read_visium / read_visium_hd on small Space Ranger-shaped folders written here."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

import histo2st as st

GENES = ["GeneA", "GeneB", "GeneC", "GeneD"]


def _write_10x_h5(path, counts: np.ndarray, barcodes, genes, gene_ids):
    """Minimal Cell Ranger v3 feature-barcode matrix (CSC by barcode), as read by ``scanpy.read_10x_h5``."""
    import scipy.sparse as sp

    # 10x stores genes x barcodes as CSC, which is barcodes x genes as CSR
    mat = sp.csr_matrix(counts)
    with h5py.File(path, "w") as f:
        f.attrs["library_ids"] = np.array([b"lib"])
        g = f.create_group("matrix")
        g["data"] = mat.data.astype(np.int32)
        g["indices"] = mat.indices.astype(np.int64)
        g["indptr"] = mat.indptr.astype(np.int64)
        g["shape"] = np.array([counts.shape[1], counts.shape[0]], dtype=np.int32)
        g["barcodes"] = np.array(barcodes, dtype="S")
        feats = g.create_group("features")
        feats["id"] = np.array(gene_ids, dtype="S")
        feats["name"] = np.array(genes, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * len(genes), dtype="S")
        feats["genome"] = np.array(["GRCh38"] * len(genes), dtype="S")
        feats["_all_tag_keys"] = np.array([b"genome"])


def _he(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(120, 250, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def visium_dir(tmp_path):
    """A 3 x 4 spot Visium folder: full-res image 800 x 1000 px, spot diameter 40 px, hires scale 0.25."""
    rng = np.random.default_rng(1)
    root = tmp_path / "visium_sample"
    (root / "spatial").mkdir(parents=True)
    rows, cols = np.meshgrid(np.arange(3), np.arange(4), indexing="ij")
    n = rows.size
    barcodes = [f"AAAC{i:04d}-1" for i in range(n)]
    counts = rng.poisson(4, (n, len(GENES)))
    _write_10x_h5(root / "filtered_feature_bc_matrix.h5", counts, barcodes, GENES, [f"ENSG{i:011d}" for i in range(4)])
    px_row = 200 + 150 * rows.ravel()
    px_col = 150 + 200 * cols.ravel()
    pd.DataFrame(
        {
            "barcode": barcodes,
            "in_tissue": 1,
            "array_row": rows.ravel(),
            "array_col": 2 * cols.ravel(),
            "pxl_row_in_fullres": px_row,
            "pxl_col_in_fullres": px_col,
        }
    ).to_csv(root / "spatial" / "tissue_positions.csv", index=False)
    scalefactors = {
        "spot_diameter_fullres": 40.0,
        "tissue_hires_scalef": 0.25,
        "tissue_lowres_scalef": 0.1,
        "fiducial_diameter_fullres": 60.0,
    }
    (root / "spatial" / "scalefactors_json.json").write_text(json.dumps(scalefactors))
    full = _he(800, 1000)
    tifffile.imwrite(root / "tissue.tif", full)
    Image.fromarray(full[::4, ::4]).save(root / "spatial" / "tissue_hires_image.png")
    return root, counts, np.column_stack([px_col, px_row]).astype(float)


def test_read_visium_fullres(visium_dir):
    root, counts, xy = visium_dir
    sdata = st.io.read_visium(root, fullres_image_file="tissue.tif")
    scale = st.io.validate(sdata)
    assert scale.microns_per_pixel == pytest.approx(55 / 40)
    assert scale.sample == "visium_sample"
    table = sdata.tables["table"]
    np.testing.assert_array_equal(table.layers["counts"].toarray(), counts)
    np.testing.assert_allclose(table.obsm["spatial"], xy)
    assert list(table.var_names) == GENES
    assert table.var["gene_ids"].iloc[0] == "ENSG00000000000"
    assert sdata.attrs["histo2st"]["image_source"] == "fullres"
    assert sdata.images["he"]["scale0"].ds["image"].shape == (3, 800, 1000)
    np.testing.assert_allclose(sdata.shapes["spots"]["radius"], 20.0)


def test_read_visium_hires_only(visium_dir):
    root, _, xy = visium_dir
    sdata = st.io.read_visium(root)
    scale = st.io.validate(sdata)
    # the hires PNG becomes the H&E: coordinates and pixel size follow its 0.25 scale
    assert scale.microns_per_pixel == pytest.approx(55 / (40 * 0.25))
    np.testing.assert_allclose(sdata.tables["table"].obsm["spatial"], xy * 0.25)
    assert sdata.attrs["histo2st"]["image_source"] == "hires"
    assert sdata.attrs["histo2st"]["fullres_px_per_px"] == pytest.approx(4.0)


def test_read_visium_missing_scalefactors(visium_dir):
    root, _, _ = visium_dir
    (root / "spatial" / "scalefactors_json.json").unlink()
    with pytest.raises(FileNotFoundError, match="scalefactors_json.json"):
        st.io.read_visium(root)


@pytest.fixture
def visium_hd_dir(tmp_path):
    """Visium HD folder with 8 µm bins: 4 x 5 bins of 20 px (0.4 µm per pixel) on a 200 x 240 px image."""
    rng = np.random.default_rng(2)
    root = tmp_path / "hd_sample"
    bin_dir = root / "binned_outputs" / "square_008um"
    (bin_dir / "spatial").mkdir(parents=True)
    (root / "spatial").mkdir()
    (root / "microscope_image").mkdir()
    meta = {"hd_layout_json": json.dumps({"file_format": "1.0"})}
    with h5py.File(root / "feature_slice.h5", "w") as f:
        f.attrs["metadata_json"] = json.dumps(meta)
    rows, cols = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    n = rows.size
    barcodes = [f"s_008um_{r:05d}_{c:05d}-1" for r, c in zip(rows.ravel(), cols.ravel(), strict=True)]
    counts = rng.poisson(2, (n, len(GENES)))
    _write_10x_h5(
        bin_dir / "filtered_feature_bc_matrix.h5", counts, barcodes, GENES, [f"ENSG{i:011d}" for i in range(4)]
    )
    edge = 20.0
    pd.DataFrame(
        {
            "barcode": barcodes,
            "in_tissue": 1,
            "array_row": rows.ravel(),
            "array_col": cols.ravel(),
            "pxl_row_in_fullres": 50 + edge * rows.ravel(),
            "pxl_col_in_fullres": 60 + edge * cols.ravel(),
        }
    ).to_parquet(bin_dir / "spatial" / "tissue_positions.parquet", index=False)
    sf = {"tissue_hires_scalef": 0.5, "tissue_lowres_scalef": 0.1, "spot_diameter_fullres": edge}
    (root / "spatial" / "scalefactors_json.json").write_text(json.dumps(sf))
    sf_bin = {**sf, "bin_size_um": 8.0, "microns_per_pixel": 8.0 / edge}
    (bin_dir / "spatial" / "scalefactors_json.json").write_text(json.dumps(sf_bin))
    full = _he(200, 240, seed=3)
    tifffile.imwrite(root / "microscope_image" / "tissue.tif", full)
    Image.fromarray(full[::2, ::2]).save(root / "spatial" / "tissue_hires_image.png")
    return root, counts


def test_read_visium_hd(visium_hd_dir):
    root, counts = visium_hd_dir
    sdata = st.io.read_visium_hd(root, bin_size=8)
    scale = st.io.validate(sdata)
    assert scale.microns_per_pixel == pytest.approx(0.4)
    assert scale.spot_diameter_um == 8.0
    np.testing.assert_allclose(sdata.shapes["spots"]["radius"], 10.0)
    np.testing.assert_array_equal(sdata.tables["table"].layers["counts"].toarray(), counts)
    meta = sdata.attrs["histo2st"]
    assert meta["platform"] == "visium_hd"
    assert meta["bin_size_um"] == 8
    assert meta["spot_shape"] == "square"
    assert meta["image_source"] == "fullres"
    assert {"array_row", "array_col"} <= set(sdata.tables["table"].obs)


def test_read_visium_hd_unknown_bin(visium_hd_dir):
    root, _ = visium_hd_dir
    with pytest.raises(FileNotFoundError, match="square_008um"):
        st.io.read_visium_hd(root, bin_size=16)
