import subprocess
import sys

import numpy as np
import pytest

import histo2st as st
from histo2st._core import as_gene_list, as_samples


def test_import_does_not_import_torch():
    code = "import sys, histo2st; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_from_arrays_follows_conventions(tiny_sample):
    scale = st.io.validate(tiny_sample)
    assert scale.microns_per_pixel == pytest.approx(1.0)
    assert scale.mpp_source == "spot pitch"
    table = tiny_sample["table"]
    np.testing.assert_array_equal(table.layers["counts"].toarray(), table.X.toarray())
    assert tiny_sample["spots"]["radius"].iloc[0] == pytest.approx(27.5)


def test_microns_system_scales_radius(tiny_sample):
    import spatialdata as sd

    st.io.set_scale(tiny_sample, microns_per_pixel=0.5)
    shapes = sd.transform(tiny_sample["spots"], to_coordinate_system="microns")
    assert shapes["radius"].iloc[0] == pytest.approx(27.5 * 0.5)
    assert st.io.get_scale(tiny_sample).mpp_source == "given"


def test_validate_names_missing_table(tiny_sample):
    del tiny_sample.tables["table"]
    with pytest.raises(st.io.ConventionError, match="no table 'table'"):
        st.io.validate(tiny_sample)


def test_validate_requires_metadata(tiny_sample):
    tiny_sample.attrs.clear()
    with pytest.raises(st.io.ConventionError, match="set_scale"):
        st.io.validate(tiny_sample)


def test_as_samples_accepts_one_list_and_dict(tiny_sample):
    assert list(as_samples(tiny_sample)) == ["tiny"]
    assert list(as_samples({"a": tiny_sample})) == ["a"]
    with pytest.raises(ValueError, match="both named 'tiny'"):
        as_samples([tiny_sample, tiny_sample])
    with pytest.raises(TypeError, match="SpatialData"):
        as_samples(42)


@pytest.mark.parametrize("value", [None, float("nan")], ids=["none", "nan"])
def test_an_unknown_scale_says_how_to_set_it(tiny_sample, value):
    tiny_sample.attrs["histo2st"]["microns_per_pixel"] = value
    fix = r"the scale is unknown\. Set it with `histo2st\.io\.set_scale\(sdata, microns_per_pixel=\.\.\.\)`\."
    with pytest.raises(st.io.ConventionError, match=rf"\['microns_per_pixel'\]` .*{fix}"):
        st.io.validate(tiny_sample)
    st.io.set_scale(tiny_sample, microns_per_pixel=1.0)
    assert st.io.validate(tiny_sample).microns_per_pixel == 1.0


def test_a_float_image_with_nan_names_the_pixels_and_how_to_fill_them():
    image = np.full((60, 80, 3), 0.8, dtype=np.float32)
    image[:10, :5, 0] = np.nan
    xy = np.array([[20.0, 20.0], [40.0, 40.0]])
    with pytest.raises(ValueError, match=r"`image` has NaN at 50 of its 4800 pixels") as err:
        st.io.from_arrays(image, xy, np.ones((2, 1)), ["a"], microns_per_pixel=1.0, spot_diameter_um=5.0)
    assert "np.nan_to_num(image, nan=1.0)" in str(err.value)
    assert "tissue_mask" in str(err.value)


def test_validate_names_a_public_fix_for_a_float_image(tiny_sample):
    tiny_sample.images["he"] = tiny_sample.images["he"].astype(np.float32)
    with pytest.raises(st.io.ConventionError, match=r"must be uint8 \(0-255\), got float32") as err:
        st.io.validate(tiny_sample)
    assert "st.io.from_arrays" in str(err.value)
    assert "as_rgb_uint8" not in str(err.value)


def test_as_gene_list_keeps_a_string_whole():
    assert as_gene_list(None) is None
    assert as_gene_list("GENE00") == ["GENE00"]
    assert as_gene_list(("a", "b")) == ["a", "b"]


def test_from_arrays_takes_one_gene_as_a_string():
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    xy = np.array([[20.0, 20.0], [40.0, 40.0]])
    sdata = st.io.from_arrays(image, xy, np.ones((2, 1)), "GENE00", microns_per_pixel=1.0, spot_diameter_um=5.0)
    assert sdata["table"].var_names.tolist() == ["GENE00"]
