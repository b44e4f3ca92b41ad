"""Training losses on spot-level predictions: Pearson correlation loss and PixNet's MSE + lambda * (1 - PCC) (Eq. 6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pearson_per_gene(pred: torch.Tensor, target: torch.Tensor, *, dim: int = 0, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation between ``pred`` and ``target`` along ``dim`` (the spots), one value per gene.

    ``eps`` is added to each sum of squares before the square root, so a constant gene (zero variance in ``pred`` or
    ``target``) gives a correlation of 0 and finite gradients instead of NaN. With a single spot every gene is
    constant and every correlation is 0.

    Parameters
    ----------
    pred, target
        Tensors of the same shape, e.g. ``(n_spots, n_genes)``.
    dim
        Axis of the spots.
    eps
        Added to the sums of squared deviations.

    Returns
    -------
    Correlations with ``dim`` removed.
    """
    if pred.shape != target.shape:
        raise ValueError(f"`pred` {tuple(pred.shape)} and `target` {tuple(target.shape)} must have the same shape.")
    pred_c = pred - pred.mean(dim=dim, keepdim=True)
    target_c = target - target.mean(dim=dim, keepdim=True)
    cov = (pred_c * target_c).sum(dim=dim)
    norm = torch.sqrt((pred_c**2).sum(dim=dim) + eps) * torch.sqrt((target_c**2).sum(dim=dim) + eps)
    return cov / norm


def pcc_loss(pred: torch.Tensor, target: torch.Tensor, dim: int = 0, *, eps: float = 1e-8) -> torch.Tensor:
    """``1 - mean`` per-gene Pearson correlation across spots: 0 for a perfect prediction, 2 for an anti-correlated one.

    Constant genes count as correlation 0 (see :func:`pearson_per_gene`); they shift the loss but give no gradient.

    Parameters
    ----------
    pred, target
        ``(n_spots, n_genes)`` (or any shape with the spots along ``dim``).
    dim
        Axis of the spots.
    eps
        Numerical guard of the correlation.

    Returns
    -------
    Scalar tensor.
    """
    return 1.0 - pearson_per_gene(pred, target, dim=dim, eps=eps).mean()


def pixnet_loss(
    pred_spots: torch.Tensor, target_spots: torch.Tensor, lam: float = 0.5, *, eps: float = 1e-8
) -> dict[str, torch.Tensor]:
    """PixNet's sparse supervision loss (Eq. 6): ``MSE + lam * (1 - PCC)`` at the measured spots of a batch.

    Parameters
    ----------
    pred_spots
        ``(n_spots, n_genes)`` predictions aggregated over the measured spots.
    target_spots
        ``(n_spots, n_genes)`` measured (normalized) expression.
    lam
        Weight of the correlation term; 0.5 in the paper.
    eps
        Numerical guard of the correlation.

    Returns
    -------
    Dict of scalar tensors: ``"loss"`` (the total, to back-propagate), ``"mse"`` (mean squared error over spots and
    genes), ``"pcc_loss"`` (``1 - pcc``) and ``"pcc"`` (mean per-gene Pearson correlation across the spots).
    """
    if pred_spots.ndim != 2:
        raise ValueError(f"Expected (n_spots, n_genes) predictions, got shape {tuple(pred_spots.shape)}.")
    pcc = pearson_per_gene(pred_spots, target_spots, dim=0, eps=eps).mean()
    mse = F.mse_loss(pred_spots, target_spots)
    return {"loss": mse + lam * (1.0 - pcc), "mse": mse, "pcc_loss": 1.0 - pcc, "pcc": pcc}
