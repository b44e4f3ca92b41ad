import numpy as np
import pytest
from aggregation_reference import circles as reference
from aggregation_reference import nan_blobs
from hypothesis import given, settings
from hypothesis import strategies as st

from histo2st._kernels import aggregate_circles


@st.composite
def circle_cases(draw):
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    n_channels = draw(st.sampled_from([1, 2, 3, 8, 9, 300]))
    n = draw(st.integers(0, 12))
    coord = st.floats(-20, 60, allow_nan=False, allow_infinity=False)
    # centers on pixel centers and edges, radii on exact integer boundaries, and arbitrary floats
    grid = st.integers(-10, 100).map(lambda v: v / 2)
    centers = [(draw(st.one_of(coord, grid)), draw(st.one_of(coord, grid))) for _ in range(n)]
    radius = st.one_of(st.just(0.0), st.integers(0, 60).map(float), st.floats(0, 80, allow_nan=False))
    radii = [draw(radius) for _ in range(n)]
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    seed = draw(st.integers(0, 2**16))
    n_blobs = draw(st.integers(0, 3))  # NaN discs shared by all channels (0: a map without NaN)
    return height, width, n_channels, np.array(centers).reshape(-1, 2), np.array(radii), dtype, seed, n_blobs


@settings(max_examples=80, deadline=None)
@given(circle_cases())
def test_circles_match_brute_force(case):
    height, width, n_channels, centers, radii, dtype, seed, n_blobs = case
    image = np.random.default_rng(seed).normal(size=(n_channels, height, width)).astype(dtype)
    image = nan_blobs(image, seed, n_blobs)
    sums, counts = aggregate_circles(image, centers, radii)
    ref_sums, ref_counts = reference(image, centers, radii)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-9, atol=1e-9)
    means, _ = aggregate_circles(image, centers, radii, agg="mean")
    assert (np.isnan(means).all(axis=1) == (ref_counts == 0)).all()  # NaN exactly where no pixel has a value
    np.testing.assert_allclose(means[ref_counts > 0], (ref_sums / np.maximum(ref_counts, 1)[:, None])[ref_counts > 0])


def test_nan_does_not_spread_along_rows():
    image = np.random.default_rng(4).random((9, 6, 40)).astype(np.float16)
    image[:, :, :5] = np.nan  # off tissue on the left
    centers = np.array([[20.0, 3.0], [3.0, 3.0], [5.0, 3.0]])  # right of the NaN, inside it, across its border
    means, counts = aggregate_circles(image, centers, [2.5, 1.5, 2.0], agg="mean")
    assert np.isfinite(means[[0, 2]]).all()
    assert np.isnan(means[1]).all()
    assert counts[1] == 0
    assert counts[2] == reference(image, centers[2:], [2.0])[1][0] > 0
    np.testing.assert_allclose(means[0], reference(image, centers[:1], [2.5])[0][0] / counts[0])


def test_mean_is_over_covered_pixels_and_nan_when_empty():
    image = np.arange(2 * 6 * 7, dtype=np.float32).reshape(2, 6, 7)
    centers = np.array([[0.0, 0.0], [3.5, 3.5], [3.0, 3.0]])  # corner (clipped), centered, radius 0 between centers
    means, counts = aggregate_circles(image, centers, [2.0, 1.0, 0.0], agg="mean")
    sums, _ = aggregate_circles(image, centers, [2.0, 1.0, 0.0], agg="sum")
    np.testing.assert_allclose(means[:2], sums[:2] / counts[:2, None])
    assert counts.tolist() == [3, 5, 0]  # corner: centers (.5, .5), (1.5, .5), (.5, 1.5)
    assert np.isnan(means[2]).all()


def test_overlapping_circles_are_independent():
    image = np.random.default_rng(1).random((3, 50, 50))
    centers = np.array([[25.0, 25.0]] * 3 + [[26.3, 24.1]])
    radii = np.array([5.0, 10.0, 5.0, 7.5])
    sums, _ = aggregate_circles(image, centers, radii)
    np.testing.assert_allclose(sums, reference(image, centers, radii)[0])
    np.testing.assert_array_equal(sums[0], sums[2])


def test_bad_input_is_rejected():
    image = np.zeros((1, 5, 5))
    with pytest.raises(ValueError, match=">= 0"):
        aggregate_circles(image, [[1.0, 1.0]], [-1.0])
    with pytest.raises(ValueError, match="finite"):
        aggregate_circles(image, [[np.nan, 1.0]], [1.0])
    with pytest.raises(ValueError, match="agg"):
        aggregate_circles(image, [[1.0, 1.0]], [1.0], agg="max")


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_wide_rows_with_nan_in_some_column_chunks(dtype):
    # rows wider than the kernel's 256-column chunks, with NaN in some chunks only
    rng = np.random.default_rng(7)
    image = rng.random((10, 12, 900)).astype(dtype)
    image[3, :, 40:45] = np.nan  # one channel only: skipped in its sum, still counted (validity is channel 0's)
    image[:, 2:9, 300:310] = np.nan
    image[:, :, 520:530] = np.nan
    centers = np.column_stack([rng.uniform(0, 900, 40), rng.uniform(0, 12, 40)])
    radii = rng.uniform(0, 30, 40)
    sums, counts = aggregate_circles(image, centers, radii)
    ref_sums, ref_counts = reference(image, centers, radii)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-9, atol=1e-9)
