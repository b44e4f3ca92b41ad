"""Tissue masks on a low-resolution level, and which regions of a grid they touch."""

import dask.array as da
import numpy as np
import pytest
from spatialdata.models import Image2DModel

from histo2st._core._tissue import regions_on_tissue, tissue_mask


def _disc_image(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    image = np.full((3, size, size), 240, dtype=np.uint8)
    image[:, disc] = np.array([[190], [90], [170]], dtype=np.uint8)
    return image


def _never_read(block):
    raise AssertionError("the full-resolution level was read")


def test_mask_of_a_multiscale_image_reads_only_a_coarse_level():
    full = _disc_image(2048)
    poisoned = da.from_array(full, chunks=(3, 512, 512)).map_blocks(_never_read, dtype=np.uint8)
    tree = Image2DModel.parse(poisoned, dims=("c", "y", "x"), c_coords=["r", "g", "b"], scale_factors=[2, 2, 2])
    # replace the lazily downsampled levels with real pixels, as a slide's own pyramid would have them
    for k in (1, 2, 3):
        step = 2**k
        tree[f"scale{k}"]["image"].data = da.from_array(np.ascontiguousarray(full[:, ::step, ::step]))
    mask, factor = tissue_mask(tree, max_side=300)
    assert factor == pytest.approx(4 * 2)  # level 3 (256 px) is too small: level 2 (512 px), every 2nd pixel
    assert mask.shape == (256, 256)
    reference, ref_factor = tissue_mask(full, max_side=256)
    assert ref_factor == 8
    assert (mask != reference[: mask.shape[0], : mask.shape[1]]).mean() < 0.01
    assert mask[128, 128]
    assert not mask[5, 5]


def test_regions_on_tissue_matches_a_brute_force_check():
    rng = np.random.default_rng(0)
    mask = rng.random((40, 50)) < 0.02
    factor, scale, margin = 4.0, 2.5, 3.0  # H&E px per mask px, H&E px per grid px, grid px
    y_edges, x_edges = np.array([0, 7, 19, 30, 64]), np.array([0, 16, 32, 48, 64, 80])
    got = regions_on_tissue(mask, factor, y_edges, x_edges, scale=scale, margin=margin)
    expected = np.zeros_like(got)
    ys, xs = np.nonzero(mask)
    for i in range(len(y_edges) - 1):
        for j in range(len(x_edges) - 1):
            # mask pixel (y, x) covers grid px [y, y + 1) * factor / scale; it counts if it overlaps the padded region
            y0, y1 = (y_edges[i] - margin) * scale / factor, (y_edges[i + 1] + margin) * scale / factor
            x0, x1 = (x_edges[j] - margin) * scale / factor, (x_edges[j + 1] + margin) * scale / factor
            expected[i, j] = np.any((ys + 1 > y0) & (ys < y1) & (xs + 1 > x0) & (xs < x1))
    np.testing.assert_array_equal(got, expected)
    assert not regions_on_tissue(np.zeros((4, 4), bool), 1.0, [0, 2, 4], [0, 4]).any()
