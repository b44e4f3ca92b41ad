"""read_wsi on small pyramidal OME-TIFF, plain TIFF, JPEG and PNG slides written here."""

import sys
import types

import cloudpickle
import numpy as np
import pytest
import tifffile
from PIL import Image

import histo2st as st
from histo2st._core._resample import closest_level


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth(h, w):
    """Gradients: what JPEG compresses almost without loss, unlike noise."""
    y, x = np.mgrid[:h, :w]
    return np.stack([200 * x / w, 200 * y / h, 100 + 50 * np.sin(x / 20)], axis=2).astype(np.uint8)


@pytest.fixture
def pyramid(tmp_path):
    """A 3-level OME-TIFF (SubIFDs) at 0.5, 1 and 2 µm/px, and its levels."""
    levels = [_rgb(400, 600)]
    levels += [levels[0][::2, ::2].copy(), levels[0][::4, ::4].copy()]
    path = tmp_path / "slide.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        meta = {"axes": "YXS", "PhysicalSizeX": 500, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 500}
        tif.write(levels[0], subifds=2, tile=(128, 128), photometric="rgb", metadata=meta)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, tile=(128, 128), photometric="rgb")
    return path, levels


def test_reads_the_level_closest_to_a_target_lazily(pyramid):
    path, levels = pyramid
    sdata = st.io.read_wsi(path, target_microns_per_pixel=1.0)
    he = sdata["he"]
    assert list(he.children) == ["scale0", "scale1"]  # the level read and the coarser one, the file's own pixels
    scale0 = he["scale0"].ds["image"]
    assert scale0.dims == ("c", "y", "x")
    assert scale0.shape == (3, 200, 300)
    np.testing.assert_array_equal(scale0.data.compute().transpose(1, 2, 0), levels[1])
    np.testing.assert_array_equal(he["scale1"].ds["image"].data.compute().transpose(1, 2, 0), levels[2])
    meta = sdata.attrs["histo2st"]
    assert meta["microns_per_pixel"] == pytest.approx(1.0)  # 500 nm at level 0, twice that at level 1
    assert meta["mpp_source"] == "OME metadata"
    assert meta["slide"]["level"] == 1
    assert meta["slide"]["level_microns_per_pixel"] == pytest.approx([0.5, 1.0, 2.0])
    scale = st.io.validate(sdata, require_counts=False)  # a slide without spots is fine for prediction
    assert scale.spot_diameter_um is None
    with pytest.raises(st.io.ConventionError, match="no shapes element"):
        st.io.validate(sdata)  # but not for training
    # chunks are read by path in each task, so the lazy slide can be shipped to cluster workers
    clone = cloudpickle.loads(cloudpickle.dumps(scale0.data))
    np.testing.assert_array_equal(clone[:, 10:20, 30:40].compute(), scale0.data[:, 10:20, 30:40].compute())


def test_level_choice_and_its_errors(pyramid):
    path, _ = pyramid
    assert closest_level([0.5, 1.0, 2.0], 2.1) == 2
    assert closest_level([0.5, 1.0, 2.0], 1.9) == 2  # 5% coarser: close enough, the model resamples
    assert closest_level([0.5, 1.0, 2.0], 1.5) == 1  # never a level much coarser than the model needs
    assert closest_level([0.5, 1.0, 2.0], 0.25) == 0
    assert st.io.read_wsi(path, level=2)["he"].shape == (3, 100, 150)  # the coarsest level: single-scale
    with pytest.raises(ValueError, match="has 3 levels"):
        st.io.read_wsi(path, level=3)
    with pytest.raises(ValueError, match="not both"):
        st.io.read_wsi(path, level=1, target_microns_per_pixel=1.0)


def test_pixel_size_from_resolution_tags_or_the_user(tmp_path):
    image = _rgb(64, 80)
    tagged = tmp_path / "tagged.tif"
    tifffile.imwrite(tagged, image, photometric="rgb", resolution=(4000, 4000), resolutionunit="CENTIMETER")
    sdata = st.io.read_wsi(tagged)
    assert sdata.attrs["histo2st"]["microns_per_pixel"] == pytest.approx(2.5)  # 4000 px per cm
    assert sdata.attrs["histo2st"]["mpp_source"] == "TIFF resolution tags"
    assert sdata["he"].shape == (3, 64, 80)  # one level: a single-scale image

    bare = tmp_path / "bare.tif"
    tifffile.imwrite(bare, image, photometric="rgb")
    with pytest.raises(ValueError, match="microns_per_pixel="):
        st.io.read_wsi(bare)
    given = st.io.read_wsi(bare, microns_per_pixel=0.25)
    assert given.attrs["histo2st"]["mpp_source"] == "given"
    np.testing.assert_array_equal(given["he"].data.compute().transpose(1, 2, 0), image)

    screen = tmp_path / "screen.tif"  # 72 dpi: an editor's default, not a scan's pixel size
    tifffile.imwrite(screen, image, photometric="rgb", resolution=(72, 72), resolutionunit="INCH")
    with pytest.raises(ValueError, match="does not say its pixel size"):
        st.io.read_wsi(screen)


def test_large_jpeg_past_the_bomb_guard_and_reduced_decoding(tmp_path, monkeypatch):
    image = _smooth(300, 400)
    path = tmp_path / "slide.jpg"
    Image.fromarray(image).save(path, quality=95)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # as if 120,000 px were a decompression bomb
    with pytest.raises(ValueError, match="microns_per_pixel="):
        st.io.read_wsi(path)  # JPEG has no trustworthy pixel size
    sdata = st.io.read_wsi(path, microns_per_pixel=0.5)
    full = sdata["he"]["scale0"].ds["image"].data.compute()
    assert full.shape == (3, 300, 400)
    assert np.abs(full.astype(int) - image.transpose(2, 0, 1)).mean() < 3  # lossy, but the same image
    assert Image.MAX_IMAGE_PIXELS == 1000  # the guard is lifted for this file only
    quarter = st.io.read_wsi(path, microns_per_pixel=0.5, target_microns_per_pixel=2.0)
    assert quarter["he"]["scale0"].ds["image"].shape == (3, 75, 100)  # decoded at 1/4 scale, not resampled
    assert quarter.attrs["histo2st"]["microns_per_pixel"] == pytest.approx(2.0)


def test_png_is_one_level(tmp_path):
    image = _rgb(50, 70)
    path = tmp_path / "slide.png"
    Image.fromarray(image).save(path)
    sdata = st.io.read_wsi(path, microns_per_pixel=1.0, target_microns_per_pixel=4.0)
    np.testing.assert_array_equal(sdata["he"].data.compute().transpose(1, 2, 0), image)


def test_openslide_formats_need_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "slide.svs"
    path.write_bytes(b"not really a slide")
    monkeypatch.setitem(sys.modules, "openslide", None)  # import openslide -> ImportError
    with pytest.raises(ImportError, match=r"histo2st\[openslide\]"):
        st.io.read_wsi(path)


def test_openslide_reader_uses_levels_and_mpp(tmp_path, monkeypatch):
    levels = [_rgb(256, 320), _rgb(64, 80, seed=1)]

    class FakeSlide:
        level_dimensions = [(320, 256), (80, 64)]
        level_downsamples = [1.0, 4.0]
        properties = {"openslide.mpp-x": "0.25"}

        def __init__(self, path):
            self.path = path

        def read_region(self, location, level, size):
            x0, y0 = (round(v / self.level_downsamples[level]) for v in location)
            rgb = levels[level][y0 : y0 + size[1], x0 : x0 + size[0]]
            alpha = np.full((*rgb.shape[:2], 1), 255, dtype=np.uint8)
            alpha[0, 0] = 0  # an unscanned pixel
            return Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")

    monkeypatch.setitem(sys.modules, "openslide", types.SimpleNamespace(OpenSlide=FakeSlide))
    path = tmp_path / "fake.ndpi"
    path.write_bytes(b"x")
    sdata = st.io.read_wsi(path, target_microns_per_pixel=1.0)
    assert sdata.attrs["histo2st"]["microns_per_pixel"] == pytest.approx(1.0)
    assert sdata.attrs["histo2st"]["mpp_source"] == "openslide.mpp-x"
    got = sdata["he"].data.compute().transpose(1, 2, 0)
    expected = levels[1].copy()
    expected[0, 0] = 255  # transparent reads as white glass
    np.testing.assert_array_equal(got, expected)
