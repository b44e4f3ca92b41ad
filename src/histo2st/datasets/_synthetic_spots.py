"""Visium-like measured spots over the synthetic tissue: hexagonal layout and Poisson counts from the truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._kernels import aggregate_circles
from ._synthetic_expression import LabelMap

#: A spot is kept (like Space Ranger's ``in_tissue``) when at least this fraction of its area lies over tissue.
MIN_TISSUE_FRACTION = 0.5


@dataclass
class SpotMeasurement:
    """Spots over tissue with their expected and sampled counts."""

    xy: np.ndarray  #: (n, 2) centers (x, y) in pixels
    array_coords: np.ndarray  #: (n, 2) Visium (array_row, array_col)
    expected: np.ndarray  #: (n, genes) float64, capture efficiency x truth summed over the circle
    counts: np.ndarray  #: (n, genes) int64, Poisson(expected)
    cell_type_fraction: np.ndarray  #: (n, types) fraction of the spot's pixels in bodies of each cell type


def hex_spot_grid(shape: tuple[int, int], mpp: float, pitch_um: float, diameter_um: float):
    """Visium layout: rows ``pitch * sqrt(3) / 2`` apart, odd rows shifted by half a pitch, centered in the image.

    ``array_col`` follows Visium (even columns on even rows, odd on odd rows), so neighbors in a row are two
    columns apart. Only whole circles inside the image are kept. Returns centers ``(n, 2)`` in pixels and
    ``(n, 2)`` (array_row, array_col).
    """
    h, w = shape
    radius = diameter_um / 2 / mpp
    half_pitch = pitch_um / 2 / mpp
    row_step = pitch_um * np.sqrt(3) / 2 / mpp
    n_rows = int(np.floor((h - 2 * radius) / row_step)) + 1
    n_cols = int(np.floor((w - 2 * radius) / half_pitch)) + 1
    if n_rows < 1 or n_cols < 1:
        return np.zeros((0, 2)), np.zeros((0, 2), dtype=np.int64)
    y0 = (h - (n_rows - 1) * row_step) / 2
    x0 = (w - (n_cols - 1) * half_pitch) / 2
    row, col = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    on_lattice = (row % 2) == (col % 2)
    row, col = row[on_lattice], col[on_lattice]
    xy = np.column_stack([x0 + col * half_pitch, y0 + row * row_step])
    return xy, np.column_stack([row, col]).astype(np.int64)


def measure_spots(
    rng: np.random.Generator,
    truth: LabelMap,
    tissue: np.ndarray,
    cell_types: LabelMap,
    xy: np.ndarray,
    array_coords: np.ndarray,
    radius_px: float,
    capture_efficiency: float,
) -> SpotMeasurement:
    """Keep spots over tissue and draw their counts: ``Poisson(capture_efficiency * sum of truth over the circle)``."""
    radii = np.full(len(xy), radius_px)
    on_tissue, _ = aggregate_circles(tissue[None].astype(np.float32), xy, radii, agg="mean")
    keep = on_tissue[:, 0] >= MIN_TISSUE_FRACTION
    xy, array_coords, radii = xy[keep], array_coords[keep], radii[keep]
    expected = capture_efficiency * truth.aggregate(lambda part: aggregate_circles(part, xy, radii, agg="sum")[0])
    fraction = cell_types.aggregate(lambda part: aggregate_circles(part, xy, radii, agg="mean")[0])
    return SpotMeasurement(
        xy=xy,
        array_coords=array_coords,
        expected=expected,
        counts=rng.poisson(expected),
        cell_type_fraction=fraction,
    )
