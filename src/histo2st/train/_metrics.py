"""Validation metrics computed inside training, from :mod:`histo2st.metrics` (the full evaluation API)."""

from __future__ import annotations

import numpy as np

from ..metrics import mse, pcc_per_gene


def spot_metrics(preds: list[np.ndarray], targets: list[np.ndarray]) -> dict:
    """PCC@M (mean per-gene PCC within each section, averaged over sections) and pooled MSE."""
    pccs = [np.nanmean(pcc_per_gene(p, t)) for p, t in zip(preds, targets, strict=True) if len(p) > 1]
    pooled = [np.concatenate([np.ravel(x) for x in xs]) for xs in (preds, targets)]
    return {"val_pcc": float(np.mean(pccs)) if pccs else float("nan"), "val_mse": mse(*pooled)}
