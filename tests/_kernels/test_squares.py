import numpy as np
from aggregation_reference import nan_blobs
from aggregation_reference import squares as reference
from hypothesis import given, settings
from hypothesis import strategies as st

from histo2st._kernels import aggregate_squares, square_grid


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 30),
    width=st.integers(1, 30),
    n_channels=st.sampled_from([1, 3, 9, 300]),
    origins=st.lists(st.tuples(st.floats(-15, 40), st.floats(-15, 40)), max_size=10),
    size=st.one_of(st.floats(0.01, 50), st.sampled_from([0.25, 0.5, 1.0, 2.0, 8.0])),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    n_blobs=st.integers(0, 3),
)
def test_squares_match_brute_force(height, width, n_channels, origins, size, dtype, n_blobs):
    image = np.random.default_rng(0).normal(size=(n_channels, height, width)).astype(dtype)
    image = nan_blobs(image, height * width, n_blobs)  # NaN discs shared by all channels
    origins = np.array(origins).reshape(-1, 2)
    sums, areas = aggregate_squares(image, origins, size)
    ref_sums, ref_areas = reference(image, origins, np.full(len(origins), size))
    np.testing.assert_allclose(areas, ref_areas, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-9, atol=1e-9)
    means, _ = aggregate_squares(image, origins, size, agg="mean")
    # a square covering no pixel with a value has exactly 0 area (no rounding residue) and a NaN mean
    assert (np.isnan(means).all(axis=1) == (ref_areas == 0)).all()
    valued = ref_areas > 0
    np.testing.assert_allclose(means[valued], ref_sums[valued] / ref_areas[valued, None], rtol=1e-9, atol=1e-9)


def test_sub_pixel_bins_over_nan_and_values():
    image = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    image[:, :, :2] = np.nan
    # inside a NaN pixel, inside pixel (1, 2), and across the border: 0.25 x 0.5 of NaN, 0.25 x 0.5 of pixel (1, 2)
    origins = np.array([[1.25, 1.25], [2.25, 1.5], [1.75, 1.25]])
    means, areas = aggregate_squares(image, origins, 0.5, agg="mean")
    np.testing.assert_array_equal(areas, [0.0, 0.25, 0.125])
    assert np.isnan(means[0]).all()
    np.testing.assert_array_equal(means[1:], image[:, 1, 2][None].repeat(2, axis=0))


@settings(max_examples=30, deadline=None)
@given(size=st.sampled_from([0.25, 1 / 3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 4.0, 7.3, 16.0]))
def test_tiling_bins_sum_to_the_area_sum_and_keep_a_constant(size):
    # bins tiling exactly [0, 12) x [0, 12) of a 3-channel map (sizes that do not divide 12 overhang the map)
    image = np.random.default_rng(1).random((3, 12, 12))
    origins = square_grid((0, 12), (0, 12), size)
    sums, areas = aggregate_squares(image, origins, size)
    np.testing.assert_allclose(sums.sum(axis=0), image.sum(axis=(1, 2)), rtol=1e-10)
    np.testing.assert_allclose(areas.sum(), 144.0, rtol=1e-12)
    constant = np.full((2, 12, 12), 2.5, dtype=np.float16)
    means, _ = aggregate_squares(constant, origins, size, agg="mean")
    np.testing.assert_allclose(means, 2.5, rtol=1e-12)


def test_sub_pixel_bin_takes_its_pixel_value_times_its_area():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    sums, areas = aggregate_squares(image, [[2.25, 1.5]], 0.5)  # inside pixel (row 1, col 2), value 6
    assert areas[0] == 0.25
    assert sums[0, 0] == 6 * 0.25
    means, _ = aggregate_squares(image, [[2.25, 1.5]], 0.5, agg="mean")
    assert means[0, 0] == 6.0


def test_variable_sizes():
    image = np.random.default_rng(2).random((2, 20, 20))
    origins, sizes = np.array([[1.0, 2.0], [3.3, 4.4], [-1.0, 15.0]]), np.array([1.0, 5.5, 9.0])
    sums, areas = aggregate_squares(image, origins, sizes)
    ref_sums, ref_areas = reference(image, origins, sizes)
    np.testing.assert_allclose(sums, ref_sums)
    np.testing.assert_allclose(areas, ref_areas)
