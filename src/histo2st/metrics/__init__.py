"""Metrics (``st.metrics``): arrays in, numbers out; the building blocks of :func:`histo2st.tl.evaluate`.

Pure numpy, scipy, scikit-learn and scikit-image functions on ``(n_spots, n_genes)`` arrays or ``(n_genes, H, W)``
maps, with no SpatialData and no torch, so they can score any method's predictions.
"""

from ._calibration import (
    COVERAGE_LEVELS,
    interval_coverage,
    std_scale_per_gene,
    uncertainty_error_spearman,
    z_of,
)
from ._ceiling import noise_ceiling
from ._domains import kmeans_ari, kmeans_labels
from ._errors import mae, mse
from ._maps import ssim_per_gene
from ._pearson import PCC_SUMMARY, pcc_per_gene, pcc_summary, pearson_per_gene

__all__ = [
    "COVERAGE_LEVELS",
    "PCC_SUMMARY",
    "interval_coverage",
    "kmeans_ari",
    "kmeans_labels",
    "mae",
    "mse",
    "noise_ceiling",
    "pcc_per_gene",
    "pcc_summary",
    "pearson_per_gene",
    "ssim_per_gene",
    "std_scale_per_gene",
    "uncertainty_error_spearman",
    "z_of",
]
