"""Checking that a SpatialData follows the histo2st conventions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._constants import COUNTS_LAYER, INSTANCE_KEY, MICRONS_CS, PIXEL_CS, REGION_KEY, SPATIAL_KEY
from ._scale import SpatialScale, get_scale

if TYPE_CHECKING:
    from spatialdata import SpatialData


class ConventionError(ValueError):
    """A SpatialData breaks the histo2st data conventions (see the docs page "Data conventions")."""


def validate(sdata: SpatialData, *, require_counts: bool = True) -> SpatialScale:
    """Check that ``sdata`` follows the histo2st data conventions and return its scale.

    Checks: metadata in ``sdata.attrs["histo2st"]``; an H&E image (c=3, uint8) in the pixel and ``"microns"``
    coordinate systems; circles with a radius; a table annotating those circles through ``region``/``instance_key``
    with one row per circle, unique gene names, raw counts in ``layers["counts"]`` and ``obsm["spatial"]``.
    With ``require_counts=False`` a slide without measured spots (neither the shapes nor the table, e.g. from
    :func:`histo2st.io.read_wsi`) is valid: only the metadata and the image are checked.

    Parameters
    ----------
    sdata
        The sample to check.
    require_counts
        Require measured spots with ``layers["counts"]`` in their table; ``False`` (prediction) also accepts a
        slide without spots.

    Returns
    -------
    The sample's :class:`~histo2st.io.SpatialScale`.

    Raises
    ------
    ConventionError
        Naming the first broken rule and how to fix it.
    """
    from spatialdata.transformations import get_transformation

    try:
        scale = get_scale(sdata)
    except ValueError as err:
        raise ConventionError(str(err)) from None

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConventionError(f"Sample '{scale.sample}': {msg}")

    need(scale.image_key in sdata.images, f"no image element '{scale.image_key}' (elements: {list(sdata.images)}).")
    image = sdata.images[scale.image_key]
    level = image["scale0"].ds["image"] if hasattr(image, "children") else image
    need(level.dims == ("c", "y", "x"), f"image '{scale.image_key}' must have dims (c, y, x), got {level.dims}.")
    need(level.shape[0] == 3, f"image '{scale.image_key}' must have 3 channels (RGB), got {level.shape[0]}.")
    need(
        level.dtype == np.uint8,
        f"image '{scale.image_key}' must be uint8 (0-255), got {level.dtype}; convert it, or build the sample with "
        "`st.io.from_arrays`, which converts uint16 and float images.",
    )
    systems = get_transformation(image, get_all=True)
    for cs in (PIXEL_CS, MICRONS_CS):
        need(cs in systems, f"image '{scale.image_key}' lacks the '{cs}' coordinate system; call `set_scale(sdata)`.")

    if not require_counts and scale.shapes_key not in sdata.shapes and scale.table_key not in sdata.tables:
        return scale
    need(scale.shapes_key in sdata.shapes, f"no shapes element '{scale.shapes_key}' (elements: {list(sdata.shapes)}).")
    shapes = sdata.shapes[scale.shapes_key]
    need("radius" in shapes.columns, f"shapes '{scale.shapes_key}' must be circles with a 'radius' column.")

    need(scale.table_key in sdata.tables, f"no table '{scale.table_key}' (tables: {list(sdata.tables)}).")
    table = sdata.tables[scale.table_key]
    attrs = table.uns.get("spatialdata_attrs", {})
    need(
        attrs.get("region_key") == REGION_KEY and attrs.get("instance_key") == INSTANCE_KEY,
        f"table '{scale.table_key}' must be parsed with region_key='{REGION_KEY}', instance_key='{INSTANCE_KEY}'.",
    )
    regions = np.atleast_1d(attrs.get("region"))
    need(scale.shapes_key in regions, f"table '{scale.table_key}' does not annotate '{scale.shapes_key}'.")
    ids = table.obs[INSTANCE_KEY].to_numpy()
    need(
        np.isin(ids, shapes.index.to_numpy()).all(),
        f"{int((~np.isin(ids, shapes.index.to_numpy())).sum())} table rows have no matching circle in "
        f"'{scale.shapes_key}'; subset the shapes and table together.",
    )
    need(table.var_names.is_unique, "gene names must be unique; call `table.var_names_make_unique()`.")
    need(SPATIAL_KEY in table.obsm, f"table '{scale.table_key}' lacks obsm['{SPATIAL_KEY}'] (x, y in image pixels).")
    if require_counts:
        need(COUNTS_LAYER in table.layers, f"table '{scale.table_key}' lacks raw counts in layers['{COUNTS_LAYER}'].")
    return scale
