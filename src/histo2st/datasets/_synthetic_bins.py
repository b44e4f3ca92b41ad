"""Visium HD-style square bins over the synthetic tissue.

Counts are sampled once, at the finest bin size, and the coarser bins are sums of whole blocks of fine bins, as
Space Ranger builds 8 and 16 µm bins from 2 µm ones; so every coarse bin equals the sum of the fine bins inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._kernels import aggregate_squares
from ._synthetic_expression import LabelMap


@dataclass
class BinGrid:
    """One bin size: a row-major grid of squares starting at the image's top-left corner."""

    bin_um: int
    edge_px: float
    n_rows: int
    n_cols: int
    expected: np.ndarray  #: (n_rows * n_cols, genes) float32, capture efficiency x truth summed over the square
    counts: np.ndarray  #: (n_rows * n_cols, genes) int32

    @property
    def origins(self) -> np.ndarray:
        """Top-left corners ``(x0, y0)`` in pixels, row-major."""
        row, col = np.divmod(np.arange(self.n_rows * self.n_cols), self.n_cols)
        return np.column_stack([col * self.edge_px, row * self.edge_px])

    @property
    def array_coords(self) -> np.ndarray:
        """``(n, 2)`` (row, col) of each bin in its grid."""
        return np.column_stack(np.divmod(np.arange(self.n_rows * self.n_cols), self.n_cols))


def sample_bins(
    rng: np.random.Generator,
    truth: LabelMap,
    mpp: float,
    bins_um: tuple[int, ...],
    capture_efficiency: float,
) -> dict[int, BinGrid]:
    """Poisson counts at the finest bin size, summed into the coarser ones; keyed by bin size in µm."""
    finest = min(bins_um)
    edge = finest / mpp
    height, width = truth.labels.shape
    # the fine grid is cut to whole coarse bins of the largest size, so every fine bin is in every coarser bin
    block = max(bins_um) // finest
    n_rows = int(np.floor(height / edge + 1e-9)) // block * block
    n_cols = int(np.floor(width / edge + 1e-9)) // block * block
    fine = BinGrid(finest, edge, n_rows, n_cols, np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int32))
    origins = fine.origins
    values = truth.aggregate(lambda part: aggregate_squares(part, origins, edge, agg="sum")[0])
    fine.expected = (capture_efficiency * values).astype(np.float32)
    fine.counts = rng.poisson(fine.expected).astype(np.int32)
    grids = {finest: fine}
    for bin_um in sorted(set(bins_um) - {finest}):
        k = bin_um // finest
        grids[bin_um] = BinGrid(
            bin_um,
            bin_um / mpp,
            n_rows // k,
            n_cols // k,
            _block_sum(fine.expected, n_rows, n_cols, k),
            _block_sum(fine.counts, n_rows, n_cols, k),
        )
    return grids


def _block_sum(values: np.ndarray, n_rows: int, n_cols: int, k: int) -> np.ndarray:
    """Sum a row-major grid of per-bin values over ``k x k`` blocks."""
    genes = values.shape[1]
    grid = values.reshape(n_rows // k, k, n_cols // k, k, genes)
    total = grid.sum(axis=(1, 3), dtype=np.float64 if values.dtype.kind == "f" else np.int64)
    return total.astype(values.dtype).reshape(-1, genes)
