"""How high a correlation with measured expression can go: the split-half noise ceiling of count data.

A spot's counts are a sample of its molecules, so even a prediction of the exact expression behind them correlates
with the measurement imperfectly. Binomial thinning (count splitting, Neufeld et al., *Biostatistics* 2024) sends each
counted molecule to one of two halves with probability 1/2; for Poisson counts the halves are independent given the
spot's expression (for negative binomial counts: given its Poisson rate). Each half is normalized like the full data,
the per-gene Pearson correlation of the halves across spots is the reliability of a half-depth measurement, the
Spearman–Brown formula ``2r / (1 + r)`` extends it to full depth, and its square root is the correlation between the
measurement and the expression behind it: the highest PCC any prediction can expect against these measurements
(classical test theory; after the log an approximation, checked against simulated counts in the tests).

Written here because count splitting has no Python implementation in the scverse stack (``countsplit`` is an R
package); it is a few lines of numpy.
"""

from __future__ import annotations

import numpy as np

from ._pearson import pcc_per_gene


def noise_ceiling(counts, library_size=None, *, target_sum=1e4, log: bool = True, n_splits: int = 8, seed: int = 0):
    """Per gene, the highest Pearson correlation across spots that a prediction can expect against measured data.

    Parameters
    ----------
    counts
        ``(n_spots, n_genes)`` raw counts of the genes to score (dense or scipy sparse, non-negative integers).
    library_size
        ``(n_spots,)`` total counts of each spot over *all* genes, as normalization used (``obs["total_counts"]`` after
        :func:`histo2st.pp.normalize`); default the row sums of ``counts``. Each half's library size is its thinned
        share of the genes given plus a binomial half of the counts of the others, which is exactly how thinning all
        genes would split it.
    target_sum
        Counts each spot is scaled to before the log, a number or one per spot (several sections, each normalized to
        its own median library size); as in :func:`histo2st.pp.normalize`.
    log
        Whether the data were ``log1p``-transformed after scaling.
    n_splits
        Independent splits whose half-half correlations are averaged (the estimate's sampling noise falls with it).
    seed
        Seed of the splits.

    Returns
    -------
    numpy.ndarray
        ``(n_genes,)`` float64 ceilings in [0, 1]: ``sqrt(2r / (1 + r))`` of the mean split-half correlation ``r``;
        0 where ``r <= 0`` (no spot-to-spot signal above counting noise), NaN where a gene is constant in the halves.
        Read the mean over genes: per gene the estimate is noisy where the signal is weak, because the sampling
        error of ``r`` passes through the square root. On Poisson counts from the simulator of
        ``tests/metrics/test_metrics_ceiling.py``, 12 sections of 180 spots gave means within 0.031 of the true
        ceiling for true values of 0.36-0.94, with a standard deviation per gene of 0.16 at 0.36 and 0.05 at 0.61; a
        gene without signal came out at 0.20 on average.

    Raises
    ------
    ValueError
        If the counts are not a non-negative integer matrix, ``library_size`` is smaller than a spot's counts, or
        ``n_splits < 1``.
    """
    counts, library, target = _checked(counts, library_size, target_sum)
    if n_splits < 1:
        raise ValueError(f"`n_splits` must be at least 1, got {n_splits!r}.")
    rng = np.random.default_rng(seed)
    rest = library - counts.sum(axis=1)
    half_r = []
    for _ in range(n_splits):
        a = rng.binomial(counts, 0.5)
        library_a = a.sum(axis=1) + rng.binomial(rest, 0.5)
        half_b = _scaled(counts - a, library - library_a, target, log)
        half_r.append(pcc_per_gene(_scaled(a, library_a, target, log), half_b))
    with np.errstate(invalid="ignore"):
        r = np.clip(np.mean(half_r, axis=0), 0.0, None)
        return np.sqrt(2 * r / (1 + r))


def _scaled(counts: np.ndarray, library: np.ndarray, target: np.ndarray, log: bool) -> np.ndarray:
    """Counts scaled to ``target`` per spot (a spot left empty by the split stays 0), then ``log1p``."""
    factor = np.divide(target, library, out=np.zeros_like(target), where=library > 0)
    values = counts * factor[:, None]
    return np.log1p(values) if log else values


def _checked(counts, library_size, target_sum) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import scipy.sparse as sp

    counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    if counts.ndim != 2:
        raise ValueError(f"`counts` must be an (n_spots, n_genes) matrix, got shape {counts.shape}.")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise ValueError(
            "`counts` must hold raw counts (non-negative integers), such as `table.layers['counts']`; normalized or "
            "log-transformed values cannot be split."
        )
    counts = counts.astype(np.int64)
    library = counts.sum(axis=1) if library_size is None else np.round(np.asarray(library_size, dtype=np.float64))
    if library.shape != (counts.shape[0],):
        raise ValueError(f"`library_size` needs one value per spot ({counts.shape[0]}), got shape {library.shape}.")
    if np.any(library < counts.sum(axis=1)):
        raise ValueError(
            "`library_size` is smaller than the counts of the genes given for some spots; pass each spot's total over "
            "all genes (`obs['total_counts']` after `st.pp.normalize`)."
        )
    target = np.broadcast_to(np.asarray(target_sum, dtype=np.float64), library.shape).copy()
    return counts, library.astype(np.int64), target
