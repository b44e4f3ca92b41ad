"""Validation metrics computed inside training (the full evaluation API lives in ``histo2st.metrics``)."""

from __future__ import annotations

import numpy as np


def per_gene_pcc(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson correlation per gene (column) across spots; NaN where either side is constant."""
    p = pred - pred.mean(0)
    t = target - target.mean(0)
    denom = np.sqrt((p**2).sum(0) * (t**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (p * t).sum(0) / denom, np.nan)


def spot_metrics(preds: list[np.ndarray], targets: list[np.ndarray]) -> dict:
    """PCC@M (mean per-gene PCC within each section, averaged over sections) and pooled MSE."""
    pccs = [np.nanmean(per_gene_pcc(p, t)) for p, t in zip(preds, targets, strict=True) if len(p) > 1]
    mse = float(np.mean(np.concatenate([((p - t) ** 2).ravel() for p, t in zip(preds, targets, strict=True)])))
    return {"val_pcc": float(np.mean(pccs)) if pccs else float("nan"), "val_mse": mse}
