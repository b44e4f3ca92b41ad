"""``st.pl.spatial_gene``: predicted, true and measured expression of genes over the H&E, read lazily."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._constants import ATTRS_KEY, MICRONS_CS, PIXEL_CS, PRED_KEY, SPATIAL_KEY, TRUTH_KEY
from .._core._maps import tissue_key
from .._docs import PLOT_DOC, doc_params
from .._logging import logger
from ._figure import finish, panel_grid, value_range
from ._planes import affine, channel_names, on_plane, read_plane, sample_keys
from ._units import normalize_counts, normalize_params, prediction_params, truth_params, units_label

if TYPE_CHECKING:
    from spatialdata import SpatialData

#: Panel kinds, and what each value of ``source`` draws.
PANELS = ("pred", "truth", "spots")
SOURCES = {"pred": ("pred",), "truth": ("truth",), "both": ("pred", "spots"), "spots": ("spots",)}


@dataclass(frozen=True)
class _Layer:
    """What one panel draws over the H&E: a raster (``extent``) or circles (``xy`` and ``radii``)."""

    title: str
    units: str
    values: np.ndarray
    extent: tuple[float, float, float, float] | None = None
    xy: np.ndarray | None = None
    radii: np.ndarray | None = None

    def limits(self) -> tuple[float, float, float, float] | None:
        """``(left, right, bottom, top)`` around the values drawn (finite pixels, or every circle); ``None`` if none."""
        if self.extent is None:
            if not len(self.xy):
                return None
            lo, hi = (self.xy - self.radii[:, None]).min(0), (self.xy + self.radii[:, None]).max(0)
            return lo[0], hi[0], hi[1], lo[1]
        rows, cols = np.nonzero(np.isfinite(self.values))
        if not len(rows):
            return None
        left, right, bottom, top = self.extent
        n_y, n_x = self.values.shape
        dx, dy = (right - left) / n_x, (bottom - top) / n_y
        return left + cols.min() * dx, left + (cols.max() + 1) * dx, top + (rows.max() + 1) * dy, top + rows.min() * dy


@doc_params(plot_output=PLOT_DOC)
def spatial_gene(
    sdata: SpatialData,
    genes: str | Sequence[str],
    *,
    source: str | Sequence[str] = "auto",
    pred_key: str = PRED_KEY,
    truth_key: str = TRUTH_KEY,
    spot_um: float | None = None,
    normalize_truth: bool = True,
    coordinate_system: str = MICRONS_CS,
    max_px: int = 1500,
    cmap="magma",
    alpha: float = 0.75,
    vmin: float | None = None,
    vmax: float | None = None,
    panel_size: float = 4.0,
    ax=None,
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """Plot genes over the H&E: the dense predicted map, the truth and the measured spots, in a grid.

    Rows are genes, columns are sources; by default the prediction and, where the sample has them, the measured
    spots beside it. Every image is read lazily at no more than ``max_px`` pixels per side (the finest pyramid level
    that fits, else every k-th pixel), so a whole slide backed by a zarr store plots in seconds and the
    full-resolution map is never computed. The predicted map is aligned to the H&E by the scale transformations of
    both elements, so a map coarser than the H&E lands in place. NaN (off tissue) is transparent, and the view is
    cropped to what is drawn (the tissue). Panels of a row that show the same units share one color scale.

    Parameters
    ----------
    sdata
        A histo2st sample with a prediction (:func:`histo2st.tl.predict`), zarr-backed or in memory.
    genes
        One gene or several (one row each).
    source
        ``"auto"`` (``"both"`` when the sample has measured spots, else ``"pred"``), ``"pred"`` (the predicted map),
        ``"truth"`` (the dense truth image ``truth_key`` of synthetic tissue, or the
        measured spots when there is none), ``"both"`` (prediction and measured spots side by side), ``"spots"``, or
        a sequence of the panel kinds ``"pred"``, ``"truth"`` and ``"spots"``.
    pred_key
        Image element of the dense prediction (genes as channels), as written by :func:`histo2st.tl.predict`.
    truth_key
        Image element of the dense truth (genes as channels).
    spot_um
        Show the predictions aggregated in bins of this size, the table ``f"{pred_key}_square_{spot_um}um"`` (or
        ``_circle_``) written by ``st.tl.predict(..., spot_um=)`` or :func:`histo2st.tl.aggregate`, and the truth
        from ``f"{truth_key}_square_{spot_um}um"`` when that exists. Without such a table the dense map is shown,
        with a warning. Circular bins are drawn as the squares of their lattice.
    normalize_truth
        The truth holds counts (synthetic tissue: expected UMI per pixel); library-size normalize every plotted pixel
        or bin over all truth channels and ``log1p`` it like the measured table (:func:`histo2st.pp.normalize`), so
        that it is on the predictions' scale. Pass ``False`` when the truth is already on that scale.
    coordinate_system
        Coordinate system of the axes: ``"microns"`` (default) or ``"global"`` (H&E pixels).
    max_px
        Most pixels per side computed for any image, and most bins per side drawn.
    cmap
        Colormap of the expression.
    alpha
        Opacity of the expression over the H&E.
    vmin, vmax
        Color range; default the range of the values of each row.
    panel_size
        Side of one panel in inches.
    ax
        Axes to draw into: one per panel (a single Axes for one gene and one source).
    {plot_output}

    Returns
    -------
    The figure with ``return_fig=True``; ``None`` when shown; otherwise the Axes (one panel) or an array of Axes with
    one row per gene and one column per source.
    """
    import matplotlib
    from matplotlib.collections import EllipseCollection
    from matplotlib.colors import Normalize

    genes = [genes] if isinstance(genes, str) else list(genes)
    if not genes:
        raise ValueError("`genes` is empty; pass a gene name or a list of them.")
    kinds = _panel_kinds(_auto_source(sdata) if source == "auto" else source)
    if spot_um is not None and not spot_um > 0:
        raise ValueError(f"`spot_um` must be a positive bin size in µm, got {spot_um!r}.")
    image_key = sample_keys(sdata)[0]
    he = None
    if image_key in sdata.images:
        he = read_plane(sdata.images[image_key], name=image_key, max_px=max_px, coordinate_system=coordinate_system)
    reader = _Reader(sdata, pred_key, truth_key, spot_um, normalize_truth, coordinate_system, max_px)
    rows = [[reader.layer(gene, kind) for kind in kinds] for gene in genes]
    view = _union([layer.limits() for row in rows for layer in row]) or (he.extent if he is not None else None)

    fig, axes = panel_grid(len(genes), len(kinds), ax, (panel_size * 1.25, panel_size))
    colormap = matplotlib.colormaps.get_cmap(cmap).with_extremes(bad=(0, 0, 0, 0))
    unit = "µm" if coordinate_system == MICRONS_CS else "px"
    for r, row in enumerate(rows):
        norms = {units: Normalize(*value_range([lay.values for lay in row if lay.units == units], vmin, vmax))
                 for units in {lay.units for lay in row}}  # fmt: skip
        for c, layer in enumerate(row):
            a = axes[r, c]
            if he is not None:
                a.imshow(np.moveaxis(he.values, 0, -1), extent=he.extent)
            norm = norms[layer.units]
            if layer.extent is not None:
                mappable = a.imshow(layer.values, extent=layer.extent, cmap=colormap, norm=norm, alpha=alpha,
                                    interpolation="nearest")  # fmt: skip
            else:
                mappable = EllipseCollection(2 * layer.radii, 2 * layer.radii, np.zeros(len(layer.radii)),
                                             units="xy", offsets=layer.xy, offset_transform=a.transData,
                                             array=layer.values, cmap=colormap, norm=norm, alpha=alpha)  # fmt: skip
                a.add_collection(mappable)
            left, right, bottom, top = view or (0, 1, 1, 0)
            a.set_xlim(left, right)
            a.set_ylim(bottom, top)
            a.set_aspect("equal")
            a.set_title(layer.title)
            fig.colorbar(mappable, ax=a, shrink=0.8, label=layer.units)
            if c == 0:
                a.set_ylabel(f"y ({unit})")
            if r == len(rows) - 1:
                a.set_xlabel(f"x ({unit})")
    return finish(fig, axes, show=show, save=save, return_fig=return_fig)


def _auto_source(sdata) -> str:
    """``"both"`` when the sample has measured spots (their table and shapes), else ``"pred"``."""
    _, shapes_key, table_key = sample_keys(sdata)
    return "both" if table_key in sdata.tables and shapes_key in sdata.shapes else "pred"


def _union(limits: list) -> tuple[float, float, float, float] | None:
    """The smallest ``(left, right, bottom, top)`` holding every one of ``limits`` (``None`` entries skipped)."""
    limits = [lim for lim in limits if lim is not None]
    if not limits:
        return None
    left, right, bottom, top = np.asarray(limits, dtype=np.float64).T
    return left.min(), right.max(), bottom.max(), top.min()


def _panel_kinds(source) -> tuple[str, ...]:
    if isinstance(source, str):
        if source not in SOURCES:
            raise ValueError(f"`source` must be one of {sorted(SOURCES)} or a sequence of {PANELS}, got {source!r}.")
        return SOURCES[source]
    kinds = tuple(source)
    bad = [k for k in kinds if k not in PANELS]
    if bad or not kinds:
        raise ValueError(f"Panel kinds in `source` must be among {PANELS}, got {list(kinds)}.")
    return kinds


@dataclass(frozen=True)
class _Reader:
    """Builds the layer of each panel kind for one sample and one set of options."""

    sdata: object
    pred_key: str
    truth_key: str
    spot_um: float | None
    normalize_truth: bool
    coordinate_system: str
    max_px: int

    @property
    def keys(self) -> tuple[str, str, str]:
        return sample_keys(self.sdata)

    @property
    def measured_params(self) -> dict | None:
        return normalize_params(self.sdata.tables.get(self.keys[2]))

    @property
    def pred_units(self) -> str:
        return units_label(prediction_params(self.sdata, self.pred_key, self.keys[2]), default="predicted expression")

    def layer(self, gene: str, kind: str) -> _Layer:
        if kind == "pred":
            return self.pred(gene)
        if kind == "truth":
            return self.truth(gene)
        return self.spots(gene)

    def pred(self, gene: str) -> _Layer:
        sdata, key = self.sdata, self.pred_key
        table = _bins_table(sdata, key, self.spot_um)
        if table is not None:
            title = f"{gene}: predicted, {self.spot_um:g} µm bins"
            return self.bins(table, _table_column(table, gene, key), title, self.pred_units)
        if self.spot_um is not None:
            logger.warning(
                f"No table '{key}_square_{self.spot_um:g}um' (or '_circle_'): showing the dense map. Aggregate it "
                f"with `st.tl.aggregate(sdata, '{key}', spot_um={self.spot_um:g})` to plot {self.spot_um:g} µm bins."
            )
        if key not in sdata.images:
            raise KeyError(
                f"No predicted map images['{key}'] in this sample (images: {list(sdata.images)}). Run "
                "`st.tl.predict(sdata, model)` (with `dense=True`), or pass `pred_key=` the name it was written under."
            )
        element = sdata.images[key]
        _check_channel(element, gene, key)
        plane = read_plane(element, name=key, channels=gene, max_px=self.max_px,
                           coordinate_system=self.coordinate_system)  # fmt: skip
        values = plane.values.astype(np.float32)
        if tissue_key(key) in sdata.labels:  # a stored map is 0 off tissue: draw nothing there
            values[on_plane(sdata.labels[tissue_key(key)], values.shape) == 0] = np.nan
        return _Layer(f"{gene}: predicted", self.pred_units, values, extent=plane.extent)

    def truth(self, gene: str) -> _Layer:
        sdata, key = self.sdata, self.truth_key
        params = truth_params(self.measured_params)
        units = units_label(params, default="truth") if self.normalize_truth else self.pred_units
        table = _bins_table(sdata, key, self.spot_um)
        if table is not None:
            values = _table_column(table, gene, key)
            if self.normalize_truth:
                x = table.X.toarray() if hasattr(table.X, "toarray") else np.asarray(table.X)
                values = normalize_counts(x.T, list(table.var_names).index(gene), params)
            return self.bins(table, values, f"{gene}: truth, {self.spot_um:g} µm bins", units)
        if key not in sdata.images:
            logger.info(f"No truth image '{key}' in this sample; showing the measured spots instead.")
            return self.spots(gene)
        element = sdata.images[key]
        _check_channel(element, gene, key)
        plane = read_plane(element, name=key, channels=None if self.normalize_truth else gene, max_px=self.max_px,
                           coordinate_system=self.coordinate_system)  # fmt: skip
        values = plane.values
        if self.normalize_truth:
            values = normalize_counts(values, channel_names(element).index(gene), params)
        return _Layer(f"{gene}: truth", units, values.astype(np.float32), extent=plane.extent)

    def spots(self, gene: str) -> _Layer:
        sdata, (_, shapes_key, table_key) = self.sdata, self.keys
        if table_key not in sdata.tables or shapes_key not in sdata.shapes:
            raise KeyError(
                f"Measured spots need the table '{table_key}' and the shapes '{shapes_key}'; this sample has tables "
                f"{list(sdata.tables)} and shapes {list(sdata.shapes)}."
            )
        table, shapes = sdata.tables[table_key], sdata.shapes[shapes_key]
        if "radius" not in shapes.columns:
            raise ValueError(f"Shapes '{shapes_key}' are not circles (no 'radius' column); only circles can be drawn.")
        attrs = table.uns.get("spatialdata_attrs", {})
        region_key, instance_key = attrs.get("region_key"), attrs.get("instance_key")
        rows = np.ones(table.n_obs, dtype=bool)
        if region_key in table.obs:
            rows = (table.obs[region_key] == shapes_key).to_numpy()
        values = _table_column(table, gene, table_key)[rows]
        ids = table.obs[instance_key].to_numpy()[rows] if instance_key in table.obs else table.obs_names[rows]
        spots = shapes.loc[ids]
        sx, sy, tx, ty = affine(shapes, self.coordinate_system, shapes_key)
        xy = np.column_stack([spots.geometry.x.to_numpy() * sx + tx, spots.geometry.y.to_numpy() * sy + ty])
        radii = spots["radius"].to_numpy(dtype=np.float64) * abs(sx)
        units = units_label(self.measured_params, default="X")
        return _Layer(f"{gene}: measured spots", units, values, xy=xy, radii=radii)

    def bins(self, table, values: np.ndarray, title: str, units: str) -> _Layer:
        """Bins on a regular lattice drawn as a raster: every k-th bin per side when there are more than ``max_px``."""
        meta = table.uns.get(ATTRS_KEY, {})
        size = meta["spot_um"] / meta["microns_per_pixel"]
        xy = np.asarray(table.obsm[SPATIAL_KEY], dtype=np.float64)
        origin = xy.min(0) - size / 2
        col_row = np.rint((xy - origin) / size - 0.5).astype(np.int64)
        n_cols, n_rows = col_row.max(0) + 1
        step = max(1, math.ceil(max(n_rows, n_cols) / self.max_px))
        keep = (col_row % step == 0).all(1)
        grid = np.full((math.ceil(n_rows / step), math.ceil(n_cols / step)), np.nan, dtype=np.float32)
        grid[col_row[keep, 1] // step, col_row[keep, 0] // step] = values[keep]
        sx, sy, tx, ty = self.global_to()
        x0, y0 = origin
        x1, y1 = x0 + grid.shape[1] * step * size, y0 + grid.shape[0] * step * size
        return _Layer(title, units, grid, extent=(x0 * sx + tx, x1 * sx + tx, y1 * sy + ty, y0 * sy + ty))

    def global_to(self) -> tuple[float, float, float, float]:
        """Scale and translation from H&E pixels (``"global"``, where tables keep centers) to the plot's system."""
        image_key = self.keys[0]
        if image_key not in self.sdata.images:
            return 1.0, 1.0, 0.0, 0.0
        he = self.sdata.images[image_key]
        gx, gy, gtx, gty = affine(he, PIXEL_CS, image_key)
        sx, sy, tx, ty = affine(he, self.coordinate_system, image_key)
        return sx / gx, sy / gy, tx - gtx * sx / gx, ty - gty * sy / gy


def _check_channel(element, gene: str, key: str) -> None:
    names = channel_names(element)
    if gene not in names:
        raise KeyError(f"Gene '{gene}' is not a channel of images['{key}'], which has {len(names)}: {names[:10]} ...")


def _table_column(table, gene: str, key: str) -> np.ndarray:
    if gene not in table.var_names:
        raise KeyError(f"Gene '{gene}' is not in the table of '{key}' ({table.n_vars} genes).")
    x = table[:, gene].X
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64).ravel()


def _bins_table(sdata, key: str, spot_um: float | None):
    if spot_um is None:
        return None
    for shape in ("square", "circle"):
        name = f"{key}_{shape}_{spot_um:g}um"
        if name in sdata.tables:
            return sdata.tables[name]
    return None
