"""Per-gene Pearson correlation across spots, its p-values, and the PixNet paper's PCC@M/S/F summary."""

from __future__ import annotations

import warnings

import numpy as np

#: Summary names of the per-gene PCCs (PixNet paper): mean, median and first quartile over genes.
PCC_SUMMARY = ("PCC@M", "PCC@S", "PCC@F")


def pearson_per_gene(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of each gene (column) across spots (rows), with its two-sided p-value.

    Parameters
    ----------
    pred, truth
        ``(n_spots, n_genes)`` arrays of the same shape; computed in float64.

    Returns
    -------
    ``(r, pvalue)``, two ``(n_genes,)`` float64 arrays, from :func:`scipy.stats.pearsonr` along the spots (the exact
    test of ``r = 0`` under bivariate normality). Both are NaN for a gene that is constant in ``pred`` or in
    ``truth`` (the correlation is undefined there).
    """
    from scipy import stats

    pred, truth = _pair(pred, truth)
    if pred.shape[0] < 2:
        raise ValueError(f"A correlation across spots needs at least 2 spots, got {pred.shape[0]}.")
    if pred.shape[1] == 0:
        return np.zeros(0), np.zeros(0)
    with warnings.catch_warnings():
        # constant genes give NaN, as documented; near-constant ones are still computed exactly in float64
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", stats.NearConstantInputWarning)
        result = stats.pearsonr(pred, truth, axis=0)
    return np.asarray(result.statistic, dtype=np.float64), np.asarray(result.pvalue, dtype=np.float64)


def pcc_per_gene(pred, truth) -> np.ndarray:
    """Pearson correlation of each gene (column) across spots (rows); NaN where either side is constant.

    The same ``r`` as :func:`pearson_per_gene` without the p-values, for loops that need only the correlation
    (validation during training).
    """
    return pearson_per_gene(pred, truth)[0]


def pcc_summary(pcc) -> dict[str, float]:
    """PCC@M, PCC@S and PCC@F: the mean, median and first quartile of per-gene correlations, NaN genes left out.

    Parameters
    ----------
    pcc
        Per-gene correlations, e.g. from :func:`pearson_per_gene`.

    Returns
    -------
    ``{"PCC@M": mean, "PCC@S": median, "PCC@F": first quartile}``; all NaN when no gene has a correlation.
    """
    pcc = np.asarray(pcc, dtype=np.float64).ravel()
    pcc = pcc[np.isfinite(pcc)]
    if pcc.size == 0:
        return dict.fromkeys(PCC_SUMMARY, float("nan"))
    values = (float(pcc.mean()), float(np.median(pcc)), float(np.quantile(pcc, 0.25)))
    return dict(zip(PCC_SUMMARY, values, strict=True))


def _pair(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise ValueError(
            f"`pred` and `truth` must be (n_spots, n_genes) arrays of the same shape, got {pred.shape} and "
            f"{truth.shape}."
        )
    return pred, truth
