"""Whether a predicted standard deviation means what it says: interval coverage, rank agreement with the error.

A prediction ``mean ± z·std`` is read as a central interval of a Gaussian; ``z`` for a central ``level`` is
``Φ⁻¹((1 + level) / 2)`` (0.674 for 50 %, 1.282 for 80 %, 1.645 for 90 %). Calibrated, the interval holds the truth
that often. Entries where any of truth, mean or std is not finite are left out.
"""

from __future__ import annotations

import numpy as np

#: Central intervals whose coverage is reported by default.
COVERAGE_LEVELS = (0.5, 0.8, 0.9)


def z_of(level: float) -> float:
    """Half-width in standard deviations of the central Gaussian interval holding ``level`` of the mass."""
    from scipy.stats import norm

    if not 0 < level < 1:
        raise ValueError(f"An interval level is a fraction between 0 and 1, got {level!r}.")
    return float(norm.ppf((1 + level) / 2))


def interval_coverage(truth, mean, std, levels=COVERAGE_LEVELS) -> dict[float, float]:
    """Fraction of entries with ``|truth - mean| <= z(level) · std``, per level (NaN when no entry is finite)."""
    error, std = _error_and_std(truth, mean, std)
    if not error.size:
        return {float(level): float("nan") for level in levels}
    return {float(level): float(np.mean(error <= z_of(level) * std)) for level in levels}


def uncertainty_error_spearman(truth, mean, std) -> float:
    """Spearman correlation between the predicted std and the absolute error over all finite entries.

    Positive when larger uncertainties go with larger errors (1: the same order); NaN for fewer than 3 entries or a
    constant side.
    """
    from scipy.stats import spearmanr

    error, std = _error_and_std(truth, mean, std)
    if error.size < 3 or np.ptp(error) == 0 or np.ptp(std) == 0:
        return float("nan")
    return float(spearmanr(std, error).statistic)


def std_scale_per_gene(truth, mean, std, *, level: float = 0.8) -> np.ndarray:
    """Factor per gene (column) that makes the ``level`` interval of ``std · factor`` cover ``level`` of the spots.

    The factor is the ``level`` quantile of ``|truth - mean| / std`` over the gene's spots divided by ``z(level)``:
    exact coverage at ``level`` on these data, without assuming Gaussian errors, so other levels are only as right
    as the errors' shape is Gaussian. NaN for a gene with no finite spot or a zero std everywhere.
    """
    truth, mean, std = _arrays(truth, mean, std)
    if truth.ndim != 2:
        raise ValueError(f"`truth`, `mean` and `std` must be (spots, genes), got {truth.ndim} dimensions.")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(truth - mean) / std
    ratio[~np.isfinite(ratio)] = np.nan
    factors = np.full(truth.shape[1], np.nan)
    usable = np.isfinite(ratio).any(axis=0)
    factors[usable] = np.nanquantile(ratio[:, usable], level, axis=0) / z_of(level)
    return factors


def _arrays(truth, mean, std) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    truth, mean, std = (np.asarray(a, dtype=np.float64) for a in (truth, mean, std))
    if not truth.shape == mean.shape == std.shape:
        raise ValueError(f"`truth`, `mean` and `std` must have one shape, got {truth.shape}, {mean.shape}, {std.shape}")
    return truth, mean, std


def _error_and_std(truth, mean, std) -> tuple[np.ndarray, np.ndarray]:
    truth, mean, std = _arrays(truth, mean, std)
    finite = np.isfinite(truth) & np.isfinite(mean) & np.isfinite(std)
    return np.abs(truth - mean)[finite], std[finite]
