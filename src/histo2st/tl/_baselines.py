"""The baselines :func:`histo2st.tl.evaluate` scores beside a model, on the same spots.

Two bars a model must clear to have learnt something from the image: the training mean (each gene's mean over the
model's training spots at every spot, from the prediction table's ``var["training_mean"]``), which says whether the
model beats knowing nothing; and the color/texture ridge (:class:`~histo2st.model.ColorTextureRidge`, fitted on
sections the caller names), which says whether it beats colour. A constant has no correlation, so the training mean
is scored by MSE and the ridge by MSE and PCC as well.
"""

from __future__ import annotations

import numpy as np

from .._constants import TRAINING_MEAN
from ..metrics import PCC_SUMMARY, mse, pcc_summary, pearson_per_gene

#: Label of the ridge baseline in the summary's columns.
RIDGE = "ridge"
#: Columns of the training-mean baseline, when every prediction table has ``var["training_mean"]``.
MEAN_COLUMNS = ("MSE training mean", "R2 training mean")
#: Columns of the ridge baseline, when it is fitted.
RIDGE_COLUMNS = (f"MSE {RIDGE}", *(f"{k} {RIDGE}" for k in PCC_SUMMARY), f"PCC@M / {RIDGE}")


def training_means(pairs: dict, genes: list[str]) -> dict[str, np.ndarray] | None:
    """``{section: (genes,) training mean}`` from each prediction table, or ``None`` if any table lacks one."""
    means = {}
    for name, (pred, _) in pairs.items():
        if TRAINING_MEAN not in pred.var:
            return None
        means[name] = pred.var.loc[genes, TRAINING_MEAN].to_numpy(dtype=np.float64)
    return means


def fit_ridge(reference, genes: list[str]):
    """The color/texture ridge fitted on the measured spots of ``reference`` (one or several normalized sections).

    Its patch is the median spot diameter of those sections, so each spot is described by the tissue it measured.
    """
    from .._core import as_samples, get_scale
    from ..model import ColorTextureRidge

    samples = as_samples(reference)
    for name, sample in samples.items():
        table = sample.tables[get_scale(sample).table_key]
        missing = [g for g in genes if g not in table.var_names]
        if missing:
            raise KeyError(
                f"The baseline's section '{name}' lacks {len(missing)} of the evaluated genes, e.g. {missing[:5]}. "
                "Pass the sections the model was trained on (normalized the same way), or `genes=` they all have."
            )
    diameter = float(np.median([get_scale(s).spot_diameter_um for s in samples.values()]))
    return ColorTextureRidge(genes, patch_um=diameter).fit(samples)


def baseline_metrics(pred: np.ndarray, truth: np.ndarray, pcc: np.ndarray, *, mean=None, ridge=None) -> dict:
    """The summary's baseline columns for one scope (section or pooled).

    Parameters
    ----------
    pred, truth
        ``(spots, genes)`` predicted and measured values.
    pcc
        The model's per-gene correlations on those spots (for its ratio to the ridge's).
    mean
        ``(spots, genes)`` training means broadcast to the spots, or ``None``.
    ridge
        ``(spots, genes)`` ridge predictions, or ``None``.
    """
    out = {}
    if mean is not None:
        trivial = mse(mean, truth)
        out[MEAN_COLUMNS[0]] = trivial
        out[MEAN_COLUMNS[1]] = 1 - mse(pred, truth) / trivial if trivial > 0 else np.nan
    if ridge is not None:
        summary = pcc_summary(pearson_per_gene(ridge, truth)[0])
        ratio = pcc_summary(pcc)["PCC@M"] / summary["PCC@M"] if summary["PCC@M"] > 0 else np.nan
        values = (mse(ridge, truth), *summary.values(), ratio)
        out.update(zip(RIDGE_COLUMNS, values, strict=True))
    return out
