import numpy as np
import pytest

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


def test_labels_errors():
    with pytest.raises(ValueError, match="shape"):
        aggregate_labels(np.zeros((1, 4, 4)), np.zeros((3, 4), dtype=int))
    with pytest.raises(TypeError, match="integer"):
        aggregate_labels(np.zeros((1, 4, 4)), np.zeros((4, 4)))
