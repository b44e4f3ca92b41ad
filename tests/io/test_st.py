"""read_st / read_her2st on small legacy-ST tables written here: joins, scale, and one test per bad input."""

import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import histo2st as st
from histo2st.io._st import fit_array_to_pixels

PX_PER_UNIT = 50.0  # 200 µm per array unit -> 4 µm per pixel


def _he(sdata):
    """The full-resolution H&E array, whether the element is single- or multiscale."""
    element = sdata.images["he"]
    return element["scale0"].ds["image"] if hasattr(element, "children") else element


def _tables(n_x=4, n_y=3, layout="1k", seed=0):
    """Counts and spot table of a small ST array; pixel = 50 px per array unit + jitter, offset 40 px."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(1, n_x + 1), np.arange(1, n_y + 1), indexing="ij")
    xs, ys = xs.ravel(), ys.ravel()
    if layout == "2k":
        keep = (xs + ys) % 2 == 0
        xs, ys = xs[keep], ys[keep]
    ids = [f"{x}x{y}" for x, y in zip(xs, ys, strict=True)]
    spots = pd.DataFrame(
        {
            "x": xs,
            "y": ys,
            "new_x": xs + rng.normal(0, 0.02, len(xs)),
            "new_y": ys + rng.normal(0, 0.02, len(xs)),
            "pixel_x": 40 + PX_PER_UNIT * (xs - 1) + rng.normal(0, 1, len(xs)),
            "pixel_y": 40 + PX_PER_UNIT * (ys - 1) + rng.normal(0, 1, len(xs)),
            "selected": 1,
        }
    )
    counts = pd.DataFrame(rng.poisson(3, (len(ids), 5)), index=ids, columns=["FASN", "ERBB2", "KRT19", "CD74", "ACTB"])
    return counts, spots


def _write(tmp_path, counts, spots, image=None, name="S1"):
    counts_path = tmp_path / f"{name}.tsv.gz"
    counts.to_csv(counts_path, sep="\t")
    spots_path = tmp_path / f"{name}_selection.tsv"
    spots.to_csv(spots_path, sep="\t", index=False)
    image_path = tmp_path / f"{name}.png"
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8) if image is None else image).save(image_path)
    return counts_path, spots_path, image_path


def _her2st_root(tmp_path, section="C7"):
    counts, spots = _tables()
    data = tmp_path / "her2st" / "data"
    for sub in ("ST-cnts", "ST-spotfiles", f"ST-imgs/{section[0]}/{section}"):
        (data / sub).mkdir(parents=True)
    counts.to_csv(data / "ST-cnts" / f"{section}.tsv.gz", sep="\t")
    spots.to_csv(data / "ST-spotfiles" / f"{section}_selection.tsv", sep="\t", index=False)
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(data / "ST-imgs" / section[0] / section / "he.jpg")
    return tmp_path / "her2st", counts


def test_read_st_joins_and_derives_scale(tmp_path, caplog):
    counts, spots = _tables()
    spots.loc[0, "selected"] = 0  # outside tissue
    extra = pd.DataFrame({"x": [9], "y": [9], "new_x": [9.0], "new_y": [9.0], "pixel_x": [250.0], "pixel_y": [250.0]})
    spots = pd.concat([spots, extra.assign(selected=1)], ignore_index=True)  # selected, no counts
    counts.loc["8x8"] = 1  # counts, not in the spot table
    with caplog.at_level(logging.INFO, logger="histo2st"):
        sdata = st.io.read_st(*_write(tmp_path, counts, spots), sample="S1")
    scale = st.io.validate(sdata)
    table = sdata.tables["table"]
    assert table.n_obs == 11
    assert "1x1" not in table.obs_names
    assert "8x8" not in table.obs_names
    expected = "dropped 1 in the counts but not in the spot table, 1 selected in the spot table but without counts"
    assert f"{expected}, 1 not selected" in caplog.text
    assert scale.microns_per_pixel == pytest.approx(200 / PX_PER_UNIT, rel=0.02)
    assert scale.mpp_source == "array coordinate fit"
    assert sdata.attrs["histo2st"]["platform"] == "st_1k"
    np.testing.assert_array_equal(table.obs["array_col"], [int(i.split("x")[0]) for i in table.obs_names])
    np.testing.assert_array_equal(table.layers["counts"].toarray(), counts.loc[table.obs_names].to_numpy())
    assert _he(sdata).dtype == np.uint8


def test_read_st_2k_layout_and_override(tmp_path):
    counts, spots = _tables(n_x=6, n_y=6, layout="2k")
    paths = _write(tmp_path, counts, spots)
    sdata = st.io.read_st(*paths)
    meta = sdata.attrs["histo2st"]
    assert meta["platform"] == "st_2k"
    # 2k: 100 µm per array unit, nearest spots diagonal
    assert meta["microns_per_pixel"] == pytest.approx(100 / PX_PER_UNIT, rel=0.02)
    assert meta["spot_pitch_um"] == pytest.approx(100 * np.sqrt(2))
    given = st.io.read_st(*paths, microns_per_pixel=1.5, scale_factors=(2,))
    assert given.attrs["histo2st"]["microns_per_pixel"] == 1.5
    assert given.attrs["histo2st"]["mpp_source"] == "given"
    assert given.images["he"]["scale1"].ds["image"].shape == (3, 150, 150)


def test_fit_array_to_pixels_ignores_jitter():
    rng = np.random.default_rng(0)
    xy = np.stack(np.meshgrid(np.arange(20), np.arange(20)), -1).reshape(-1, 2).astype(float)
    fit = fit_array_to_pixels(xy, 290 * xy + rng.normal(0, 30, xy.shape))
    assert fit["px_per_unit"] == pytest.approx(290, rel=0.01)
    assert fit["layout"] == "st_1k"


def test_ensembl_ids_kept(tmp_path):
    counts, spots = _tables()
    counts.columns = [f"ENSMUSG0000006433{i}.1" for i in range(5)]
    sdata = st.io.read_st(*_write(tmp_path, counts, spots))
    var = sdata.tables["table"].var
    assert list(var.index) == list(counts.columns)
    assert var["gene_ids"].iloc[0] == "ENSMUSG00000064330"


def test_read_her2st_layout(tmp_path):
    root, counts = _her2st_root(tmp_path)
    sdata = st.io.read_her2st(root, "C7")
    assert sdata.attrs["histo2st"]["sample"] == "C7"
    assert sdata.tables["table"].n_obs == len(counts)


# --- bad input: one test per case -----------------------------------------------------------------------------------


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No her2st data under"):
        st.io.read_her2st(tmp_path, "C3")
    counts, spots = _tables()
    c, s, i = _write(tmp_path, counts, spots)
    s.unlink()
    with pytest.raises(FileNotFoundError, match="Spot table not found"):
        st.io.read_st(c, s, i)


def test_missing_image(tmp_path):
    root, _ = _her2st_root(tmp_path)
    next((root / "data" / "ST-imgs" / "C" / "C7").glob("*.jpg")).unlink()
    with pytest.raises(FileNotFoundError, match="Expected one H&E JPEG"):
        st.io.read_her2st(root, "C7")


def test_unknown_section(tmp_path):
    root, _ = _her2st_root(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"Unknown her2st section 'Z9'.*\['C7'\]"):
        st.io.read_her2st(root, "Z9")


def test_spot_ids_do_not_match(tmp_path):
    counts, spots = _tables()
    counts.index = [f"{i}x{i + 100}" for i in range(len(counts))]
    with pytest.raises(ValueError, match=r"no spot ids match between the count table \(12 spots.*12 selected spots"):
        st.io.read_st(*_write(tmp_path, counts, spots))


def test_nan_counts(tmp_path):
    counts, spots = _tables()
    counts = counts.astype(float)
    counts.iloc[2, 1] = np.nan
    with pytest.raises(ValueError, match="1 missing \\(NaN\\) counts"):
        st.io.read_st(*_write(tmp_path, counts, spots))


def test_negative_counts(tmp_path):
    counts, spots = _tables()
    counts.iloc[0, 0] = -3
    with pytest.raises(ValueError, match="1 negative counts; pass raw UMI counts"):
        st.io.read_st(*_write(tmp_path, counts, spots))


def test_duplicate_gene_names(tmp_path):
    counts, spots = _tables()
    counts.columns = ["FASN", "ERBB2", "FASN", "CD74", "ACTB"]
    with pytest.raises(ValueError, match=r"1 duplicate gene names, e.g. \['FASN'\]"):
        st.io.read_st(*_write(tmp_path, counts, spots))


def test_spots_outside_image(tmp_path):
    counts, spots = _tables()
    spots.loc[3, "pixel_x"] = 5000.0
    with pytest.raises(ValueError, match="lie outside the 300 x 300 px image"):
        st.io.read_st(*_write(tmp_path, counts, spots), microns_per_pixel=4.0)


@pytest.mark.parametrize(
    ("image", "warning"),
    [
        (np.full((300, 300), 180, np.uint8), "grayscale"),
        (np.full((300, 300, 4), 180, np.uint8), "RGBA"),
        (np.full((300, 300), 40000, np.uint16), "uint16"),
    ],
    ids=["grayscale", "rgba", "uint16"],
)
def test_image_conversions(tmp_path, image, warning):
    counts, spots = _tables()
    with pytest.warns(UserWarning, match=warning):
        sdata = st.io.read_st(*_write(tmp_path, counts, spots, image=image))
    he = _he(sdata)
    assert he.shape == (3, 300, 300)
    assert he.dtype == np.uint8
    assert int(he.max().compute()) == (155 if warning == "uint16" else 180)
