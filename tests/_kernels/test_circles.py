import numpy as np
import pytest
from aggregation_reference import circles as reference
from hypothesis import given, settings
from hypothesis import strategies as st

from histo2st._kernels import aggregate_circles


@st.composite
def circle_cases(draw):
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    n_channels = draw(st.sampled_from([1, 2, 3, 8, 9, 300]))
    n = draw(st.integers(0, 12))
    coord = st.floats(-20, 60, allow_nan=False, allow_infinity=False)
    # centres on pixel centres and edges, radii on exact integer boundaries, and arbitrary floats
    grid = st.integers(-10, 100).map(lambda v: v / 2)
    centers = [(draw(st.one_of(coord, grid)), draw(st.one_of(coord, grid))) for _ in range(n)]
    radius = st.one_of(st.just(0.0), st.integers(0, 60).map(float), st.floats(0, 80, allow_nan=False))
    radii = [draw(radius) for _ in range(n)]
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    seed = draw(st.integers(0, 2**16))
    return height, width, n_channels, np.array(centers).reshape(-1, 2), np.array(radii), dtype, seed


@settings(max_examples=60, deadline=None)
@given(circle_cases())
def test_circles_match_brute_force(case):
    height, width, n_channels, centers, radii, dtype, seed = case
    image = np.random.default_rng(seed).normal(size=(n_channels, height, width)).astype(dtype)
    sums, counts = aggregate_circles(image, centers, radii)
    ref_sums, ref_counts = reference(image, centers, radii)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-9, atol=1e-9)


def test_mean_is_over_covered_pixels_and_nan_when_empty():
    image = np.arange(2 * 6 * 7, dtype=np.float32).reshape(2, 6, 7)
    centers = np.array([[0.0, 0.0], [3.5, 3.5], [3.0, 3.0]])  # corner (clipped), centred, radius 0 between centres
    means, counts = aggregate_circles(image, centers, [2.0, 1.0, 0.0], agg="mean")
    sums, _ = aggregate_circles(image, centers, [2.0, 1.0, 0.0], agg="sum")
    np.testing.assert_allclose(means[:2], sums[:2] / counts[:2, None])
    assert counts.tolist() == [3, 5, 0]  # corner: centres (.5, .5), (1.5, .5), (.5, 1.5)
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
