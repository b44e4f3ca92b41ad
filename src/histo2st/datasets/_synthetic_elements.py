"""SpatialData elements of the synthetic tissue beyond the H&E, spots and spot table (built by ``build_sample``)."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._constants import (
    ARRAY_COL,
    ARRAY_ROW,
    BINS_KEY,
    BINS_TABLE_KEY,
    CELLS_KEY,
    COUNTS_LAYER,
    EXPECTED_LAYER,
    INSTANCE_KEY,
    REGION_KEY,
    SPATIAL_KEY,
)
from .._core import microns_transformations
from ._synthetic_bins import BinGrid
from ._synthetic_cells import Cells
from ._synthetic_context import CONTEXT_FEATURES
from ._synthetic_expression import LabelMap

#: Channel chunks stay small: reading one gene then touches one chunk of genes, not all of them.
TRUTH_CHUNKS = (8, 1024, 1024)
CELL_ID_KEY = "cell_id"
CELL_TYPE_KEY = "cell_type"
CONTEXT_KEY = "context"


def labels_array(labels: np.ndarray) -> da.Array:
    """The cell label image as a dask array, shared by the labels element and the lazy truth."""
    return da.from_array(labels, chunks=TRUTH_CHUNKS[1:])


def truth_element(truth: LabelMap, labels: da.Array, genes: Sequence[str], mpp: float):
    """The dense truth as a lazy image element, genes as channels, painted from the cell labels on demand."""
    from spatialdata.models import Image2DModel

    return Image2DModel.parse(
        truth.to_dask(labels, chunk=TRUTH_CHUNKS[0]),
        dims=("c", "y", "x"),
        c_coords=list(genes),
        transformations=microns_transformations(mpp),
    )


def cells_elements(
    labels: da.Array,
    counts: np.ndarray,
    cells: Cells,
    type_names: list[str],
    expression: np.ndarray,
    genes: pd.DataFrame,
    mpp: float,
    *,
    context: np.ndarray,
):
    """Label image of cell bodies and its table: cell type, center and expression density of every cell.

    ``counts`` is the number of pixels of each label. The table's ``X`` is the cell's expression density (UMI per
    µm² of body at full capture); cells whose body was entirely covered by neighbors are left out of the table, as
    they are absent from the label image. ``obsm["context"]`` holds each cell's row of ``context``, its standardized
    context features (:data:`CONTEXT_FEATURES`).
    """
    from spatialdata.models import Labels2DModel, TableModel

    present = np.flatnonzero(counts[1:])
    ids = present + 1
    obs = pd.DataFrame(
        {
            REGION_KEY: pd.Categorical([CELLS_KEY] * len(ids)),
            CELL_ID_KEY: ids,
            CELL_TYPE_KEY: pd.Categorical.from_codes(cells.kind[present], categories=type_names),
        },
        index=pd.Index([f"cell_{i}" for i in ids]),
    )
    table = ad.AnnData(
        X=expression[ids],
        obs=obs,
        var=genes.copy(),
        obsm={
            SPATIAL_KEY: np.column_stack([cells.x[present], cells.y[present]]) / mpp,
            CONTEXT_KEY: pd.DataFrame(context[present], index=obs.index, columns=list(CONTEXT_FEATURES)),
        },
    )
    label_el = Labels2DModel.parse(labels, dims=("y", "x"), transformations=microns_transformations(mpp))
    return label_el, TableModel.parse(table, region=CELLS_KEY, region_key=REGION_KEY, instance_key=CELL_ID_KEY)


def bins_elements(grid: BinGrid, genes: pd.DataFrame, mpp: float):
    """Square bins as polygons (``BINS_KEY``) and their linked table (``BINS_TABLE_KEY``) for one bin size."""
    import geopandas as gpd
    import shapely
    from spatialdata.models import ShapesModel, TableModel

    key = BINS_KEY.format(grid.bin_um)
    origins = grid.origins
    n = len(origins)
    ids = np.arange(n)
    squares = gpd.GeoDataFrame(
        geometry=shapely.box(origins[:, 0], origins[:, 1], origins[:, 0] + grid.edge_px, origins[:, 1] + grid.edge_px),
        index=ids,
    )
    shapes = ShapesModel.parse(squares, transformations=microns_transformations(mpp))
    counts = sp.csr_matrix(grid.counts)
    rows_cols = grid.array_coords
    obs = pd.DataFrame(
        {
            REGION_KEY: pd.Categorical([key] * n),
            INSTANCE_KEY: ids,
            ARRAY_ROW: rows_cols[:, 0],
            ARRAY_COL: rows_cols[:, 1],
        },
        index=pd.Index([f"s_{grid.bin_um:03d}um_{r:05d}_{c:05d}" for r, c in rows_cols]),
    )
    table = ad.AnnData(
        X=counts.astype(np.float32),
        obs=obs,
        var=genes.copy(),
        obsm={SPATIAL_KEY: origins + grid.edge_px / 2},
        layers={COUNTS_LAYER: counts, EXPECTED_LAYER: grid.expected},
    )
    table = TableModel.parse(table, region=key, region_key=REGION_KEY, instance_key=INSTANCE_KEY)
    return key, shapes, BINS_TABLE_KEY.format(grid.bin_um), table
