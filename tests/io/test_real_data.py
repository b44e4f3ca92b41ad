"""Readers on the real data beside the project (../shared/data): load, round-trip in a fresh process, render.

Skipped when the data is absent. The her2st H&E is ~9300 x 9900 px: loading stays lazy, and writing or rendering
decodes the JPEG once (a few seconds).
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import histo2st as st

pytestmark = pytest.mark.realdata

HER2ST_SPOTS = {"C2": 187, "C3": 180, "C4": 184, "C5": 181}
MOB_SPOTS = {1: 379, 2: 407}


def _he(sdata):
    """The full-resolution H&E array, whether the element is single- or multiscale."""
    element = sdata.images["he"]
    return element["scale0"].ds["image"] if hasattr(element, "children") else element


@pytest.fixture(scope="module")
def her2st_c2(shared_data):
    return st.io.read_her2st(shared_data / "her2st", "C2")


@pytest.fixture(scope="module")
def mob1(shared_data):
    return st.datasets.mouse_olfactory_bulb(1, root=shared_data)


@pytest.mark.parametrize("section", sorted(HER2ST_SPOTS))
def test_her2st_sections(shared_data, section):
    sdata = st.io.read_her2st(shared_data / "her2st", section)
    scale = st.io.validate(sdata)
    table = sdata.tables["table"]
    assert table.n_obs == HER2ST_SPOTS[section]
    assert 15_000 < table.n_vars < 16_500
    assert scale.sample == section
    assert scale.microns_per_pixel == pytest.approx(0.69, abs=0.01)
    # a 100 µm spot is about 145 px across
    assert 2 * sdata.shapes["spots"]["radius"].iloc[0] == pytest.approx(145, abs=3)
    height, width = _he(sdata).shape[1:]
    assert 9000 < height < 10500
    assert 9000 < width < 10500
    assert {"array_row", "array_col"} <= set(table.obs)


@pytest.mark.parametrize("section", sorted(MOB_SPOTS))
def test_mouse_olfactory_bulb_sections(shared_data, section):
    sdata = st.datasets.mouse_olfactory_bulb(section, root=shared_data)
    scale = st.io.validate(sdata)
    table = sdata.tables["table"]
    assert table.n_obs == MOB_SPOTS[section]
    assert table.n_vars == 1000
    assert table.var_names[0].startswith("ENSMUSG")
    assert "gene_ids" in table.var
    assert sdata.attrs["histo2st"]["platform"] == "st_2k"
    # far coarser than her2st: several µm per pixel
    assert 3.5 < scale.microns_per_pixel < 5.5


def _roundtrip(sdata, tmp_path):
    """Write, then read back with spatialdata.read_zarr in a fresh interpreter; return what that process saw."""
    path = tmp_path / "sample.zarr"
    st.io.write_zarr(sdata, path)
    script = textwrap.dedent(
        f"""
        import json, numpy as np, spatialdata as sd
        from spatialdata.transformations import get_transformation
        s = sd.read_zarr({str(path)!r})
        out = {{"images": sorted(s.images), "shapes": sorted(s.shapes), "tables": sorted(s.tables),
                "attrs": s.attrs["histo2st"], "transforms": {{}}}}
        for kind, name, el in s.gen_spatial_elements():
            out["transforms"][name] = {{cs: t.to_affine_matrix(("x", "y"), ("x", "y")).tolist()
                                        for cs, t in get_transformation(el, get_all=True).items()}}
        t = s.tables["table"]
        out["table"] = [t.n_obs, t.n_vars, float(t.layers["counts"].sum()), t.uns["spatialdata_attrs"]["region"]]
        out["radius"] = float(s.shapes["spots"]["radius"].iloc[0])
        he = s.images["he"]
        out["image"] = list((he["scale0"].ds["image"] if hasattr(he, "children") else he).shape)
        print(json.dumps(out))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_roundtrip(sdata, seen):
    from spatialdata.transformations import get_transformation

    assert seen["images"] == ["he"]
    assert seen["shapes"] == ["spots"]
    assert seen["tables"] == ["table"]
    assert seen["attrs"] == json.loads(json.dumps(sdata.attrs["histo2st"]))
    for _, name, element in sdata.gen_spatial_elements():
        expected = get_transformation(element, get_all=True)
        assert sorted(seen["transforms"][name]) == sorted(expected) == ["global", "microns"]
        for cs, transform in expected.items():
            np.testing.assert_allclose(seen["transforms"][name][cs], transform.to_affine_matrix(("x", "y"), ("x", "y")))
    table = sdata.tables["table"]
    assert seen["table"][:3] == [table.n_obs, table.n_vars, pytest.approx(float(table.layers["counts"].sum()))]
    assert seen["table"][3] == "spots"
    assert seen["radius"] == pytest.approx(float(sdata.shapes["spots"]["radius"].iloc[0]))
    assert seen["image"] == list(_he(sdata).shape)


def test_mob_roundtrip_fresh_process(mob1, tmp_path):
    _check_roundtrip(mob1, _roundtrip(mob1, tmp_path))


def test_her2st_roundtrip_fresh_process(her2st_c2, tmp_path):
    _check_roundtrip(her2st_c2, _roundtrip(her2st_c2, tmp_path))


def _render(sdata, gene, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import spatialdata_plot  # noqa: F401  (registers sdata.pl)

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    (
        sdata.pl.render_images("he")
        .pl.render_shapes("spots", color=gene, table_name="table", fill_alpha=0.8, cmap="viridis")
        .pl.show(coordinate_systems="microns", ax=ax, title=gene)
    )
    fig.savefig(path)
    plt.close(fig)
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize(("which", "gene"), [("her2st", "FASN"), ("mob", "ENSMUSG00000064339.1")])
def test_render_he_with_spots(which, gene, her2st_c2, mob1, tmp_path):
    sdata = her2st_c2 if which == "her2st" else mob1
    pixels = _render(sdata, gene, tmp_path / f"{which}.png")
    assert pixels.shape[:2] == (500, 500)
    # not blank: H&E and colored spots give many distinct colors and a spread of intensities
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500
    assert pixels.std() > 20
    # spots are colored by expression (viridis): saturated green/yellow/purple pixels that H&E does not have
    r, g, b = pixels[..., 0].astype(int), pixels[..., 1].astype(int), pixels[..., 2].astype(int)
    assert ((g - b > 40) & (g > 100)).sum() > 200 or ((b - g > 60) & (r < 120)).sum() > 200
