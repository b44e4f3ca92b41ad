"""Spot values of an ensemble whose members differ in how they give them: each member's own values, averaged.

A map member's (PixNet) value at a spot is its map's aggregate; a point member's (THItoGene, ridge) is its prediction
from a patch at the center. The mean map's aggregate mixes both as maps; the point members' share of it
(:meth:`histo2st.model.Ensemble.point_share`), aggregated over the same spots and subtracted, leaves the map members'
part, so their maps are not predicted a second time.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from .._constants import ATTRS_KEY, SPATIAL_KEY
from .._core._maps import tissue_key


def has_point_and_map_members(model) -> bool:
    """Whether ``model`` is an ensemble of members predicting at points and members predicting by their maps."""
    point_members = getattr(model, "point_members", [])
    return 0 < len(point_members) < len(getattr(model, "members", []))


def share_aggregates(sdata, share: da.Array, tables: list, key_added: str, transformations: dict) -> dict:
    """The aggregate of the point members' share map over each table's spots, ``{table key: (n, genes) array}``.

    It covers the same pixels of every spot as the mean map's aggregate: both are 0 off the tissue mask and, on it,
    NaN only where a point member's map is (a map member, PixNet, predicts every tile over the mask), so the stored
    map need not be read again to align them.
    """
    from spatialdata.models import Image2DModel

    from ._aggregate import aggregate

    share_key = f"{key_added}_point_share"
    sdata.images[share_key] = Image2DModel.parse(share, dims=("c", "y", "x"), transformations=transformations)
    try:
        labels = tissue_key(key_added) if tissue_key(key_added) in sdata.labels else None
        return {
            key: np.asarray(
                aggregate(sdata, share_key, key_added=key, inplace=False, tissue_labels=labels, **kwargs)[1].X,
                dtype=np.float64,
            )
            for key, kwargs in tables
        }
    finally:
        del sdata.images[share_key]


def mixed_at_centers(table, model, share: np.ndarray, he, microns_per_pixel: float, device, gene_idx: list[int],
                     tta: int) -> bool:  # fmt: skip
    """Replace the table's values by the mean of each member's own value and ``layers["std"]`` by their spread.

    ``share`` is :func:`share_aggregates`' array of this table. Several map members are known here only through
    their mean, so each counts at that mean in the spread (which then leaves out their spread among themselves).
    Returns ``False``, leaving the map's aggregates, when a point member declines the points.
    """
    points = model.member_points(he, microns_per_pixel, table.obsm[SPATIAL_KEY], device=device, tta=tta)
    table.uns[ATTRS_KEY]["values"] = "map aggregate" if points is None else "mean of the members' own values"
    if points is None:
        return False
    n_members = len(model.members)
    n_map = n_members - len(model.point_members)
    map_mean = (np.asarray(table.X, dtype=np.float64) - share) * (n_members / n_map)
    values = np.stack([map_mean if p is None else p[:, gene_idx] for p in points])
    table.X = values.mean(0).astype(np.float32)
    table.layers["std"] = (values.std(0) * model.std_scale[gene_idx]).astype(np.float32)
    return True
