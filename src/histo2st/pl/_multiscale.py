"""``st.pl.multiscale``: one gene's predicted map (and the truth) aggregated into square bins of several sizes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._constants import MICRONS_CS, PRED_KEY, TRUTH_KEY
from .._core._aggregate_arrays import aggregate_array
from .._core._maps import full_resolution, valued_image
from .._docs import PLOT_DOC, doc_params
from ._figure import finish, panel_grid, value_range
from ._planes import affine, channel_names, sample_keys
from ._units import normalize_counts, normalize_params, prediction_params, truth_params, units_label

if TYPE_CHECKING:
    from spatialdata import SpatialData


@doc_params(plot_output=PLOT_DOC)
def multiscale(
    sdata: SpatialData,
    gene: str,
    *,
    pred_key: str = PRED_KEY,
    truth_key: str = TRUTH_KEY,
    bins_um: Sequence[float] = (2, 8, 16, 55),
    normalize_truth: bool = True,
    max_px: int = 1500,
    cmap="magma",
    vmin: float | None = None,
    vmax: float | None = None,
    panel_size: float = 3.5,
    ax=None,
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """Plot one gene's predicted map aggregated into square bins of each size, beside the truth binned the same way.

    The bins tile the field from its top-left corner (where the prediction and the truth overlap), as Visium HD bins
    do, and each bin is the area-weighted mean of the map over it (:func:`histo2st.tl.aggregate_array`), so bins
    smaller than a map pixel work; NaN pixels (off tissue) are left out of the mean. A second row shows the truth
    when the sample has one (synthetic tissue). All panels share one color scale.

    Parameters
    ----------
    sdata
        A histo2st sample with a dense prediction (:func:`histo2st.tl.predict`).
    gene
        The gene to show.
    pred_key
        Image element of the dense prediction (genes as channels).
    truth_key
        Image element of the dense truth; no truth row when the sample has none.
    bins_um
        Bin edges in µm, one panel each.
    normalize_truth
        The truth holds counts (synthetic tissue): library-size normalize each truth bin over all truth channels and
        ``log1p`` it like the measured table, so that it is on the predictions' scale. ``False`` shows the mean of the
        truth over each bin as it is.
    max_px
        Most bins per side aggregated and drawn; a finer grid keeps every k-th bin per side.
    cmap
        Colormap; NaN bins (off tissue for maps with NaN there) are transparent.
    vmin, vmax
        Color range shared by all panels; default the range of all bins.
    panel_size
        Side of one panel in inches.
    ax
        Axes to draw into, one per panel (sizes along a row, prediction then truth).
    {plot_output}

    Returns
    -------
    The figure with ``return_fig=True``; ``None`` when shown; otherwise an array of Axes, one row per source
    (prediction, truth) and one column per bin size.
    """
    import matplotlib
    from matplotlib.colors import Normalize

    bins_um = [float(b) for b in ([bins_um] if np.isscalar(bins_um) else bins_um)]
    if not bins_um or min(bins_um) <= 0:
        raise ValueError(f"`bins_um` must be positive bin sizes in µm, got {bins_um!r}.")
    if pred_key not in sdata.images:
        raise KeyError(
            f"No predicted map images['{pred_key}'] (images: {list(sdata.images)}). Run `st.tl.predict(sdata, model)` "
            "with `dense=True`, or pass `pred_key=`."
        )
    maps = [("predicted", pred_key)] + ([("truth", truth_key)] if truth_key in sdata.images else [])
    geometry = {}
    for _, key in maps:
        element = sdata.images[key]
        if gene not in channel_names(element):
            raise KeyError(f"Gene '{gene}' is not a channel of images['{key}'].")
        sx, sy, tx, ty = affine(element, MICRONS_CS, key)
        if not np.isclose(sx, sy):
            raise ValueError(f"images['{key}'] has unequal x and y pixel sizes ({sx}, {sy} µm); bins must be square.")
        h, w = full_resolution(element).shape[1:]
        geometry[key] = (sx, tx, ty, tx + w * sx, ty + h * sy)
    # the field both maps cover, in µm
    x0, y0 = max(g[1] for g in geometry.values()), max(g[2] for g in geometry.values())
    x1, y1 = min(g[3] for g in geometry.values()), min(g[4] for g in geometry.values())
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"images['{pred_key}'] and images['{truth_key}'] do not overlap in '{MICRONS_CS}'.")

    _, _, table_key = sample_keys(sdata)
    measured = normalize_params(sdata.tables.get(table_key))
    units = units_label(prediction_params(sdata, pred_key, table_key), default="predicted expression")
    panels = []
    for label, key in maps:
        element = valued_image(sdata, key)
        gene_index = channel_names(sdata.images[key]).index(gene)
        normalize = label == "truth" and normalize_truth
        um_per_px, tx, ty = geometry[key][:3]
        row = []
        for size in bins_um:
            origins, shape, extent = _bin_grid(x0, y0, x1, y1, size, max_px)
            local = (origins - [tx, ty]) / um_per_px
            if normalize:
                counts = aggregate_array(element.data, origins=local, size=size / um_per_px, agg="sum").values
                column = normalize_counts(counts.T, gene_index, truth_params(measured))
            else:
                # the kernels leave NaN pixels (off tissue) out of a bin's mean
                column = aggregate_array(
                    element.data[gene_index : gene_index + 1], origins=local, size=size / um_per_px
                ).values[:, 0]
            row.append((f"{gene}: {label}, {size:g} µm bins", column.reshape(shape).astype(np.float32), extent))
        panels.append(row)

    fig, axes = panel_grid(len(panels), len(bins_um), ax, (panel_size, panel_size))
    norm = Normalize(*value_range([p[1] for row in panels for p in row], vmin, vmax))
    colormap = matplotlib.colormaps.get_cmap(cmap).with_extremes(bad=(0, 0, 0, 0))
    for r, row in enumerate(panels):
        for c, (title, values, extent) in enumerate(row):
            a = axes[r, c]
            mappable = a.imshow(values, extent=extent, cmap=colormap, norm=norm, interpolation="nearest")
            a.set_title(title)
            a.set_xlabel("x (µm)" if r == len(panels) - 1 else "")
            a.set_ylabel("y (µm)" if c == 0 else "")
    fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.8, label=units)
    return finish(fig, axes, show=show, save=save, return_fig=return_fig)


def _bin_grid(x0: float, y0: float, x1: float, y1: float, size: float, max_px: int):
    """Top-left corners (µm) of the bins drawn, the raster shape and its extent; every k-th bin past ``max_px``."""
    n_cols, n_rows = math.ceil((x1 - x0) / size - 1e-9), math.ceil((y1 - y0) / size - 1e-9)
    step = max(1, math.ceil(max(n_rows, n_cols) / max_px))
    cols, rows = np.arange(0, n_cols, step), np.arange(0, n_rows, step)
    gx, gy = np.meshgrid(x0 + cols * size, y0 + rows * size)
    extent = (x0, x0 + len(cols) * step * size, y0 + len(rows) * step * size, y0)
    return np.column_stack([gx.ravel(), gy.ravel()]), (len(rows), len(cols)), extent
