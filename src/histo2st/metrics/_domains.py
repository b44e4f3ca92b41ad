"""Spatial-domain agreement: k-means on predicted and on measured expression, compared by the adjusted Rand index."""

from __future__ import annotations

import numpy as np

#: k-means restarts; the best of them (lowest inertia) labels the spots.
N_INIT = 10


def kmeans_labels(expression, n_clusters: int, *, seed: int = 0) -> np.ndarray:
    """Cluster spots (rows) by their expression with :class:`sklearn.cluster.KMeans`.

    Parameters
    ----------
    expression
        ``(n_spots, n_genes)`` array.
    n_clusters
        Number of clusters, at least 2 and at most the number of spots.
    seed
        ``random_state`` of k-means, so the labels are reproducible.

    Returns
    -------
    ``(n_spots,)`` int labels.
    """
    from sklearn.cluster import KMeans

    expression = np.asarray(expression, dtype=np.float64)
    if expression.ndim != 2:
        raise ValueError(f"`expression` must be (n_spots, n_genes), got shape {expression.shape}.")
    if not isinstance(n_clusters, int | np.integer) or n_clusters < 2:
        raise ValueError(f"`n_clusters` must be an int >= 2, got {n_clusters!r}.")
    if n_clusters > expression.shape[0]:
        raise ValueError(
            f"`n_clusters={n_clusters}` is more than the {expression.shape[0]} spots; pass fewer clusters."
        )
    return KMeans(n_clusters=int(n_clusters), n_init=N_INIT, random_state=seed).fit_predict(expression)


def kmeans_ari(pred, truth, n_clusters: int, *, seed: int = 0) -> float:
    """Adjusted Rand index between k-means domains of predicted and of measured expression (THItoGene protocol).

    Both are clustered into the same ``n_clusters`` with the same ``seed`` (:func:`kmeans_labels`), then compared with
    :func:`sklearn.metrics.adjusted_rand_score`: 1 for identical partitions, about 0 for unrelated ones.

    Parameters
    ----------
    pred, truth
        ``(n_spots, n_genes)`` arrays of the same shape.
    n_clusters
        Number of domains.
    seed
        ``random_state`` of k-means.

    Returns
    -------
    The adjusted Rand index.
    """
    from sklearn.metrics import adjusted_rand_score

    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"`pred` and `truth` must have the same shape, got {pred.shape} and {truth.shape}.")
    labels_pred = kmeans_labels(pred, n_clusters, seed=seed)
    labels_truth = kmeans_labels(truth, n_clusters, seed=seed)
    return float(adjusted_rand_score(labels_truth, labels_pred))
