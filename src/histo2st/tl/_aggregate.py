"""``st.tl.aggregate``: a dense map (genes or any channels) aggregated over spots or bins into a linked table."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from .._constants import ATTRS_KEY, INSTANCE_KEY, PIXEL_CS, REGION_KEY, SPATIAL_KEY
from .._core._aggregate_arrays import TILE_BYTES, aggregate_array
from .._core._maps import valued_image
from .._core._tissue import sample_tissue_mask
from .._core._zarr import write_to_store
from .._logging import log_added

if TYPE_CHECKING:
    from spatialdata import SpatialData


def aggregate(
    sdata: SpatialData,
    image_key: str,
    *,
    shapes_key: str | None = None,
    spot_um: float | None = None,
    shape: Literal["square", "circle"] = "square",
    agg: Literal["mean", "sum"] = "mean",
    tissue_mask: np.ndarray | bool | None = None,
    tissue_labels: str | None = None,
    key_added: str | None = None,
    inplace: bool = True,
    overwrite: bool = False,
    tile_bytes: int = TILE_BYTES,
):
    """Aggregate an image (a predicted gene map, a truth map, any channels) over spots or bins.

    Either over existing circles (``shapes_key``) or over a new grid of ``spot_um`` bins covering the tissue: square
    bins of edge ``spot_um`` as in Visium HD, or circles of diameter ``spot_um`` on a square lattice of that pitch.
    The map is read tile by tile, so a lazy map larger than memory works; see :func:`aggregate_array` for the rules
    (pixel-center rule for circles, exact area weights for squares, clipping at the map's edge). NaN pixels (a map
    predicted only on tissue) have no value: they are skipped, and a spot that covers none with a value gets NaN. So
    have the pixels that a predicted map's tissue labels (``labels[f"{image_key}_tissue"]``) mark 0.

    Parameters
    ----------
    sdata
        A histo2st sample (:class:`spatialdata.SpatialData` with ``attrs["histo2st"]``).
    image_key
        The image to aggregate, ``(c, y, x)``. It may be coarser than the H&E (e.g. 4 µm per pixel) if its
        transformation to the ``"global"`` system (the H&E pixels) is a scale and translation.
    shapes_key
        Circles to aggregate over. ``None`` builds a grid of ``spot_um`` bins over the tissue.
    spot_um
        Bin edge (squares) or circle diameter in µm. With ``shapes_key`` it replaces the circles' radius.
    shape
        ``"square"`` or ``"circle"`` bins for a new grid.
    agg
        ``"mean"`` over the covered pixels (area) or ``"sum"`` (in map pixels, area-weighted for squares).
    tissue_mask
        Where the grid goes: ``None`` computes a mask from the H&E (Otsu on saturation) with the measured spots
        added, as ``st.tl.predict`` does, so its grids and this one have the same bins; ``False`` covers the whole
        map, or a bool array that covers the H&E extent at any resolution. Ignored with ``shapes_key``.
    tissue_labels
        Labels element on the image's pixel grid whose 0 pixels have no value; default ``f"{image_key}_tissue"``
        when the sample has it (``st.tl.predict`` writes it beside each map).
    key_added
        Name of the new table (its shapes are ``"{key_added}_shapes"``: spatialdata names are unique across element
        types); default ``"{image_key}_{shape}_{spot_um}um"`` or ``"{image_key}_{shapes_key}"``.
    inplace
        Add the elements to ``sdata``; otherwise return them.
    overwrite
        Replace existing elements named ``key_added``.
    tile_bytes
        Bytes of map read at a time for maps that are not dask arrays.

    Returns
    -------
    ``None`` if ``inplace``, else ``(shapes, table)``. In place it adds (and writes them to the sample's store
    when it is zarr-backed, as ``st.tl.predict`` does):

    ``sdata.tables[key_added]``
        AnnData, one row per spot: ``X`` the aggregated values (float32), ``var_names`` the image's channels,
        ``obs["region"]``/``obs["spot_id"]`` linking it to its shapes, ``obs["clipped"]`` (spot cut at the map's
        edge), ``obs["area_um2"]`` (covered area of pixels with a value, not NaN), ``obsm["spatial"]`` (centers in
        H&E pixels) and
        ``uns["histo2st"]`` the parameters.
    ``sdata.shapes[f"{key_added}_shapes"]``
        The circles or square polygons (H&E pixels), unless ``shapes_key`` is given without ``spot_um``, in which
        case the table annotates ``shapes_key``.
    """
    from .._core import get_scale

    start = time.perf_counter()
    scale = get_scale(sdata)
    _check(sdata, image_key, shape, spot_um)
    element = sdata.images[image_key]
    image = valued_image(sdata, image_key, tissue_labels=tissue_labels)
    map_scale, offset = _to_global(element, image_key)
    regions = _regions(sdata, scale, image.shape[1:], map_scale, offset, shapes_key=shapes_key, spot_um=spot_um,
                       shape=shape, tissue_mask=tissue_mask)  # fmt: skip
    local = (regions.xy - offset) / map_scale
    if regions.kind == "circle":
        result = aggregate_array(image.data, centers=local, radii=regions.size_px / 2 / map_scale, agg=agg,
                                 tile_bytes=tile_bytes)  # fmt: skip
    else:
        result = aggregate_array(image.data, origins=local - regions.size_px / 2 / map_scale,
                                 size=regions.size_px / map_scale, agg=agg, tile_bytes=tile_bytes)  # fmt: skip
    spot_label = f"{spot_um:g}um" if spot_um is not None else None
    key = key_added or (f"{image_key}_{shapes_key}" if shapes_key else f"{image_key}_{regions.kind}_{spot_label}")
    shapes_name = f"{key}_shapes"
    if inplace and not overwrite and (key in sdata.tables or shapes_name in sdata.shapes):
        raise ValueError(f"'{key}' already exists in this sample; pass `overwrite=True` or another `key_added`.")
    shapes = None if regions.region is not None else _shapes(regions, scale.microns_per_pixel)
    region = regions.region or shapes_name
    meta = {"image_key": image_key, "shapes_key": region, "agg": agg, "spot_um": spot_um}
    table = _table(result, regions, key, region, [str(c) for c in image.coords["c"].values], meta,
                   map_um=map_scale * scale.microns_per_pixel, microns_per_pixel=scale.microns_per_pixel)  # fmt: skip
    if not inplace:
        return shapes, table
    written = []
    if shapes is not None:
        if shapes_name in sdata.shapes:
            del sdata.shapes[shapes_name]
        sdata.shapes[shapes_name] = shapes
        written.append(f"shapes['{shapes_name}']")
    if key in sdata.tables:
        del sdata.tables[key]
    sdata.tables[key] = table
    written.append(f"tables['{key}']")
    write_to_store(sdata, [shapes_name, key] if shapes is not None else [key])
    log_added("sdata", written, start)
    return None


@dataclass(frozen=True)
class _Regions:
    """What to aggregate over: ``kind`` shapes centered at ``xy`` (H&E pixels) of ``size_px`` (diameter or edge).

    ``region`` is the shapes element they are (given circles), or ``None`` for a new grid whose shapes are written.
    """

    kind: str
    xy: np.ndarray
    size_px: np.ndarray | float
    ids: np.ndarray
    region: str | None


def _check(sdata, image_key: str, shape: str, spot_um) -> None:
    if image_key not in sdata.images:
        raise KeyError(f"No image '{image_key}' in this sample; images: {list(sdata.images)}.")
    if shape not in ("square", "circle"):
        raise ValueError(f"`shape` must be 'square' or 'circle', got {shape!r}.")
    if spot_um is not None and not spot_um > 0:
        raise ValueError(f"`spot_um` must be a positive size in µm, got {spot_um!r}.")


def _regions(sdata, scale, map_shape, map_scale: float, offset, *, shapes_key, spot_um, shape, tissue_mask) -> _Regions:
    """The given circles of ``shapes_key`` (resized to ``spot_um`` if given), or a grid of ``spot_um`` tissue bins."""
    if shapes_key is not None:
        kind, xy, size_px, ids = _given_circles(sdata, shapes_key, spot_um, scale.microns_per_pixel)
        regions = _Regions(kind, xy, size_px, ids, shapes_key if spot_um is None else None)
    else:
        if spot_um is None:
            raise ValueError("Pass `spot_um=` (bin size in µm) to build a grid, or `shapes_key=` to use spots.")
        height, width = map_shape
        extent = (offset[0], offset[1], offset[0] + width * map_scale, offset[1] + height * map_scale)
        size_px = spot_um / scale.microns_per_pixel
        xy = _grid(extent, size_px, _tissue(sdata, scale, tissue_mask))
        regions = _Regions(shape, xy, size_px, np.arange(len(xy)), None)
    if len(regions.xy) == 0:
        raise ValueError("No spots to aggregate over: the tissue mask is empty; pass `tissue_mask=False`.")
    return regions


def _table(result, regions: _Regions, key: str, region: str, channels: list[str], meta: dict, *, map_um: float,
           microns_per_pixel: float):  # fmt: skip
    """The AnnData of the aggregated values, annotating ``region``, with the aggregation recorded in its ``uns``."""
    import anndata as ad
    import pandas as pd
    from spatialdata.models import TableModel

    obs = pd.DataFrame(
        {
            REGION_KEY: pd.Categorical([region] * len(regions.ids)),
            INSTANCE_KEY: regions.ids,
            "clipped": result.clipped,
            "area_um2": result.area * map_um**2,
        },
        index=pd.Index([f"{key}_{i}" for i in regions.ids]),
    )
    adata = ad.AnnData(X=result.values.astype(np.float32), obs=obs, var=pd.DataFrame(index=pd.Index(channels)),
                       obsm={SPATIAL_KEY: np.asarray(regions.xy, dtype=np.float64)})  # fmt: skip
    spot_um = meta["spot_um"]
    adata.uns[ATTRS_KEY] = {
        **meta,
        "shape": regions.kind,
        "spot_um": float(spot_um) if spot_um is not None else float(np.median(regions.size_px)) * microns_per_pixel,
        "microns_per_pixel": microns_per_pixel,
        "map_microns_per_pixel": map_um,
        "n_clipped": int(result.clipped.sum()),
    }
    return TableModel.parse(adata, region=region, region_key=REGION_KEY, instance_key=INSTANCE_KEY)


def _to_global(element, name: str) -> tuple[float, np.ndarray]:
    """Isotropic scale and (x, y) offset from an element's own pixels to the ``"global"`` (H&E pixel) system."""
    from spatialdata.transformations import get_transformation

    systems = get_transformation(element, get_all=True)
    if PIXEL_CS not in systems:
        raise ValueError(
            f"Element '{name}' has no transformation to the '{PIXEL_CS}' (H&E pixel) system; set one, e.g. "
            f"`set_transformation(el, Scale([4, 4], axes=('y', 'x')), '{PIXEL_CS}')` for a 4x coarser map."
        )
    m = systems[PIXEL_CS].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    if abs(m[0, 1]) > 1e-9 or abs(m[1, 0]) > 1e-9 or not np.isclose(m[0, 0], m[1, 1]) or m[0, 0] <= 0:
        raise ValueError(
            f"Element '{name}' must map to '{PIXEL_CS}' by an equal x/y scale and a translation (no rotation or "
            f"shear); got the matrix {m.round(4).tolist()}. Resample it onto the H&E pixel grid first."
        )
    return float(m[0, 0]), np.array([m[0, 2], m[1, 2]])


def _given_circles(sdata, shapes_key, spot_um, microns_per_pixel):
    if shapes_key not in sdata.shapes:
        raise KeyError(f"No shapes '{shapes_key}' in this sample; shapes: {list(sdata.shapes)}.")
    shapes = sdata.shapes[shapes_key]
    if "radius" not in shapes.columns:
        raise ValueError(f"Shapes '{shapes_key}' are not circles (no 'radius' column); only circles are supported.")
    map_scale, offset = _to_global(shapes, shapes_key)
    xy = np.column_stack([shapes.geometry.x, shapes.geometry.y]) * map_scale + offset
    diameter = spot_um / microns_per_pixel if spot_um is not None else 2 * shapes["radius"].to_numpy() * map_scale
    return "circle", xy, diameter, shapes.index.to_numpy()


def _tissue(sdata, scale, tissue_mask):
    he_key = scale.image_key
    if tissue_mask is False:
        return None
    if tissue_mask is None:
        if he_key not in sdata.images:
            raise ValueError(f"No H&E image '{he_key}' to find the tissue; pass `tissue_mask=` or `False`.")
        return sample_tissue_mask(sdata, he_key, scale.shapes_key)
    mask = np.asarray(tissue_mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"`tissue_mask` must be a 2-D bool array over the H&E, got shape {mask.shape}.")
    he = sdata.images[he_key]
    he = he["scale0"].ds["image"] if hasattr(he, "children") else he
    return mask, he.shape[1] / mask.shape[0]


def _grid(extent, size_px, mask) -> np.ndarray:
    """Centers ``(x, y)`` in H&E pixels of a grid of ``size_px`` bins over ``extent``, kept where on tissue."""
    x0, y0, x1, y1 = extent
    xs = np.arange(x0 + size_px / 2, x1, size_px)
    ys = np.arange(y0 + size_px / 2, y1, size_px)
    gx, gy = np.meshgrid(xs, ys)
    xy = np.column_stack([gx.ravel(), gy.ravel()])
    if mask is None:
        return xy
    mask, factor = mask
    i = np.clip((xy[:, 1] / factor).astype(int), 0, mask.shape[0] - 1)
    j = np.clip((xy[:, 0] / factor).astype(int), 0, mask.shape[1] - 1)
    return xy[mask[i, j]]


def _shapes(regions: _Regions, microns_per_pixel: float):
    """The shapes element of a new grid: circles, or squares as polygons."""
    from spatialdata.models import ShapesModel

    from .._core import microns_transformations

    transformations = microns_transformations(microns_per_pixel)
    xy, ids = regions.xy, regions.ids
    if regions.kind == "circle":
        return ShapesModel.parse(xy, geometry=0, radius=np.broadcast_to(regions.size_px / 2, len(xy)).copy(), index=ids,
                                 transformations=transformations)  # fmt: skip
    import geopandas as gpd
    import shapely

    half = np.broadcast_to(regions.size_px / 2, len(xy))
    boxes = shapely.box(xy[:, 0] - half, xy[:, 1] - half, xy[:, 0] + half, xy[:, 1] + half)
    return ShapesModel.parse(gpd.GeoDataFrame(geometry=boxes, index=ids), transformations=transformations)
