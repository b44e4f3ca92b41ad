"""k-means domains and their adjusted Rand index."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from histo2st.metrics import kmeans_ari, kmeans_labels


def _blobs(rng, n_per=20, n_genes=6, k=3):
    centers = rng.normal(scale=10, size=(k, n_genes))
    labels = np.repeat(np.arange(k), n_per)
    return centers[labels] + rng.normal(size=(len(labels), n_genes)), labels


def test_ari_is_one_for_identical_and_low_for_unrelated_expression():
    rng = np.random.default_rng(0)
    x, labels = _blobs(rng)
    assert kmeans_ari(x, x, 3, seed=0) == 1.0
    assert adjusted_rand_score(labels, kmeans_labels(x, 3, seed=0)) == 1.0
    shuffled = x[rng.permutation(len(x))]
    assert kmeans_ari(shuffled, x, 3, seed=0) < 0.3


def test_labels_are_reproducible_with_a_seed():
    x = np.random.default_rng(1).normal(size=(50, 4))
    np.testing.assert_array_equal(kmeans_labels(x, 4, seed=3), kmeans_labels(x, 4, seed=3))


def test_kmeans_rejects_bad_cluster_numbers():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="more than the 5 spots"):
        kmeans_labels(x, 6)
    with pytest.raises(ValueError, match=">= 2"):
        kmeans_ari(x, x, 1)
