"""Agreement of dense maps (genes as channels): per-gene structural similarity (SSIM) with scikit-image."""

from __future__ import annotations

import numpy as np

#: Side of the SSIM window in map pixels (scikit-image's default); smaller maps use the largest odd side that fits.
SSIM_WINDOW = 7


def ssim_per_gene(pred, truth, *, win_size: int = SSIM_WINDOW) -> np.ndarray:
    """Structural similarity of each gene's predicted map with its true map.

    Uses :func:`skimage.metrics.structural_similarity` on each ``(H, W)`` channel with an explicit ``data_range``:
    the range (max - min) of that gene's true map, so a prediction is judged on the truth's scale.

    Parameters
    ----------
    pred, truth
        ``(n_genes, H, W)`` maps of the same shape, e.g. both aggregated into the same µm bins. NaN marks pixels
        without a value (e.g. off tissue).
    win_size
        Odd side of the sliding window; reduced to the largest odd side that fits a smaller map.

    Returns
    -------
    ``(n_genes,)`` float64 mean SSIM over the valid pixels (those finite in both maps), away from the map's border
    by half a window as scikit-image does. Without NaN this is exactly scikit-image's mean SSIM. Missing pixels are
    filled with the gene's mean value of each map before filtering, so windows that touch them are approximate. NaN
    for a gene whose true map is constant (SSIM needs a data range) and for maps smaller than 3 x 3.
    """
    from skimage.metrics import structural_similarity

    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(
            f"`pred` and `truth` must be (n_genes, H, W) maps of the same shape, got {pred.shape} and {truth.shape}."
        )
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"`win_size` must be an odd int >= 3, got {win_size!r}.")
    side = min(pred.shape[1:])
    win = min(win_size, side if side % 2 else side - 1)
    out = np.full(pred.shape[0], np.nan)
    if win < 3:
        return out
    pad = (win - 1) // 2
    inner = (slice(pad, pred.shape[1] - pad), slice(pad, pred.shape[2] - pad))
    for g in range(pred.shape[0]):
        valid = np.isfinite(pred[g]) & np.isfinite(truth[g])
        if not valid[inner].any():
            continue
        t_valid = truth[g][valid]
        data_range = float(t_valid.max() - t_valid.min())
        if data_range == 0:
            continue
        t = np.where(valid, truth[g], t_valid.mean())
        p = np.where(valid, pred[g], pred[g][valid].mean())
        _, ssim_map = structural_similarity(t, p, win_size=win, data_range=data_range, full=True)
        out[g] = float(ssim_map[inner][valid[inner]].mean())
    return out
