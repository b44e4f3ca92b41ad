"""Mean squared and mean absolute error over all spots and genes."""

from __future__ import annotations

import numpy as np


def mse(pred, truth) -> float:
    """Mean squared error over all entries of two arrays of the same shape (NaN if any entry is NaN)."""
    diff = _diff(pred, truth)
    return float(np.mean(diff**2)) if diff.size else float("nan")


def mae(pred, truth) -> float:
    """Mean absolute error over all entries of two arrays of the same shape (NaN if any entry is NaN)."""
    diff = _diff(pred, truth)
    return float(np.mean(np.abs(diff))) if diff.size else float("nan")


def _diff(pred, truth) -> np.ndarray:
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape:
        raise ValueError(f"`pred` and `truth` must have the same shape, got {pred.shape} and {truth.shape}.")
    return pred - truth
