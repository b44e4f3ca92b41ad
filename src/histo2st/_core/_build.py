"""Assembling one sample into the histo2st SpatialData conventions."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._constants import (
    ARRAY_COL,
    ARRAY_ROW,
    ATTRS_KEY,
    COUNTS_LAYER,
    IMAGE_CHANNELS,
    INSTANCE_KEY,
    REGION_KEY,
    SPATIAL_KEY,
)
from ._image import IMAGE_CHUNKS, as_rgb_uint8
from ._scale import SpatialScale, microns_transformations


def check_counts(counts, genes: Sequence[str]) -> sp.csr_matrix:
    """Validate a spots x genes count matrix and gene names; return it as CSR."""
    matrix = sp.csr_matrix(counts) if not sp.issparse(counts) else counts.tocsr()
    if matrix.shape[1] != len(genes):
        raise ValueError(f"`counts` has {matrix.shape[1]} columns but {len(genes)} gene names were given.")
    data = matrix.data
    if data.size and not np.all(np.isfinite(data)):
        raise ValueError(
            f"`counts` contains {int((~np.isfinite(data)).sum())} NaN or infinite values; counts must be finite. "
            "Replace them (e.g. with 0) or drop the affected spots before loading."
        )
    if data.size and data.min() < 0:
        raise ValueError(
            f"`counts` contains {int((data < 0).sum())} negative values; raw counts must be >= 0. "
            "Pass raw UMI counts, not normalized or scaled values."
        )
    dup = pd.Index(genes)[pd.Index(genes).duplicated()].unique()
    if len(dup):
        raise ValueError(
            f"{len(dup)} duplicate gene names, e.g. {list(dup[:5])}. Make them unique first "
            "(`anndata.utils.make_index_unique(pd.Index(genes))`) or sum the duplicated columns."
        )
    return matrix


def build_sample(
    image,
    spot_xy: np.ndarray,
    counts,
    genes: Sequence[str],
    *,
    scale: SpatialScale,
    spot_names: Sequence[str] | None = None,
    array_coords: np.ndarray | None = None,
    gene_ids: Sequence[str] | None = None,
    scale_factors: Sequence[int] | None = None,
    extra_attrs: dict | None = None,
):
    """Build a SpatialData sample in the histo2st conventions.

    Parameters
    ----------
    image
        H&E image; any layout accepted by :func:`~histo2st._core._image.as_rgb_uint8`.
    spot_xy
        ``(n, 2)`` spot centers ``(x, y)`` in full-resolution image pixels.
    counts
        ``(n, genes)`` raw counts, dense or sparse.
    genes
        Gene names (unique).
    scale
        Physical scale and element names of the sample.
    spot_names
        Spot barcodes, used as ``obs_names``; default ``"spot_{i}"``.
    array_coords
        ``(n, 2)`` array (row, col) coordinates of the spots, if the platform has them.
    gene_ids
        Optional gene identifiers stored in ``var["gene_ids"]``.
    scale_factors
        Build a multiscale H&E image with these downscale factors.
    extra_attrs
        Extra entries for ``sdata.attrs["histo2st"]``.

    Returns
    -------
    SpatialData with the image ``scale.image_key``, circles ``scale.shapes_key`` and table ``scale.table_key``.
    """
    import spatialdata as sd
    from spatialdata.models import Image2DModel, ShapesModel, TableModel

    matrix = check_counts(counts, genes)
    spot_xy = np.asarray(spot_xy, dtype=np.float64)
    if spot_xy.ndim != 2 or spot_xy.shape[1] != 2 or len(spot_xy) != matrix.shape[0]:
        raise ValueError(f"`spot_xy` must have shape ({matrix.shape[0]}, 2) (x, y per spot), got {spot_xy.shape}.")
    img = as_rgb_uint8(image)
    _check_inside(spot_xy, height=img.shape[1], width=img.shape[2])

    n = matrix.shape[0]
    names = pd.Index([f"spot_{i}" for i in range(n)] if spot_names is None else list(map(str, spot_names)))
    if names.has_duplicates:
        raise ValueError(f"Spot names must be unique; duplicates: {list(names[names.duplicated()][:5])}.")
    transformations = microns_transformations(scale.microns_per_pixel)
    image_el = Image2DModel.parse(
        img,
        dims=("c", "y", "x"),
        c_coords=list(IMAGE_CHANNELS),
        scale_factors=list(scale_factors) if scale_factors else None,
        chunks=IMAGE_CHUNKS,
        transformations=transformations,
    )
    ids = np.arange(n)
    shapes = ShapesModel.parse(
        spot_xy, geometry=0, radius=np.full(n, scale.spot_radius_px), index=ids, transformations=transformations
    )
    obs = pd.DataFrame(
        {REGION_KEY: pd.Categorical([scale.shapes_key] * n), INSTANCE_KEY: ids},
        index=names,
    )
    if array_coords is not None:
        array_coords = np.asarray(array_coords)
        obs[ARRAY_ROW] = array_coords[:, 0]
        obs[ARRAY_COL] = array_coords[:, 1]
    var = pd.DataFrame(index=pd.Index(list(map(str, genes)), name=None))
    if gene_ids is not None:
        var["gene_ids"] = list(gene_ids)
    adata = ad.AnnData(
        X=matrix.astype(np.float32),
        obs=obs,
        var=var,
        obsm={SPATIAL_KEY: spot_xy},
        layers={COUNTS_LAYER: matrix.copy()},
    )
    table = TableModel.parse(adata, region=scale.shapes_key, region_key=REGION_KEY, instance_key=INSTANCE_KEY)
    sdata = sd.SpatialData(
        images={scale.image_key: image_el},
        shapes={scale.shapes_key: shapes},
        tables={scale.table_key: table},
    )
    sdata.attrs[ATTRS_KEY] = {**scale.to_dict(), **(extra_attrs or {})}
    return sdata


def _check_inside(spot_xy: np.ndarray, *, height: int, width: int) -> None:
    outside = (spot_xy[:, 0] < 0) | (spot_xy[:, 1] < 0) | (spot_xy[:, 0] >= width) | (spot_xy[:, 1] >= height)
    if outside.any():
        idx = np.flatnonzero(outside)
        raise ValueError(
            f"{outside.sum()} spot centers lie outside the {width} x {height} px image (e.g. spots {idx[:5].tolist()} "
            f"at {spot_xy[idx[:3]].round(1).tolist()}). Spot coordinates must be (x, y) in the image's full-resolution "
            "pixels; check for swapped axes or coordinates given for a downscaled image."
        )
