import numpy as np
import pytest
from aggregation_reference import labels as reference
from aggregation_reference import nan_blobs
from hypothesis import given, settings
from hypothesis import strategies as st

from histo2st._kernels import aggregate_labels


@pytest.mark.parametrize("n_channels", [1, 5, 300])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_labels_match_brute_force(n_channels, dtype):
    rng = np.random.default_rng(n_channels)
    image = rng.normal(size=(n_channels, 23, 31)).astype(dtype)
    labels = rng.integers(0, 12, (23, 31)).astype(np.uint32)
    labels[labels == 4] = 0  # an id that does not occur
    ids, means, counts = aggregate_labels(image, labels, agg="mean")
    assert 4 not in ids
    assert 0 not in ids
    for i, label in enumerate(ids):
        mask = labels == label
        assert counts[i] == mask.sum()
        np.testing.assert_allclose(means[i], image[:, mask].astype(np.float64).mean(axis=1), rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 30),
    width=st.integers(1, 30),
    n_channels=st.sampled_from([1, 3, 9]),
    n_labels=st.integers(1, 12),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    seed=st.integers(0, 2**16),
    n_blobs=st.integers(0, 3),
)
def test_labels_with_nan_match_brute_force(height, width, n_channels, n_labels, dtype, seed, n_blobs):
    rng = np.random.default_rng(seed)
    image = nan_blobs(rng.normal(size=(n_channels, height, width)).astype(dtype), seed, n_blobs)
    labels = rng.integers(0, n_labels + 1, (height, width))
    ids, sums, counts = aggregate_labels(image, labels)
    ref_ids, ref_sums, ref_counts = reference(image, labels)
    np.testing.assert_array_equal(ids, ref_ids)  # a label whose pixels are all NaN is still listed
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-9, atol=1e-9)
    _, means, _ = aggregate_labels(image, labels, agg="mean")
    assert (np.isnan(means).all(axis=1) == (ref_counts == 0)).all()


def test_labels_errors():
    with pytest.raises(ValueError, match="shape"):
        aggregate_labels(np.zeros((1, 4, 4)), np.zeros((3, 4), dtype=int))
    with pytest.raises(TypeError, match="integer"):
        aggregate_labels(np.zeros((1, 4, 4)), np.zeros((4, 4)))
