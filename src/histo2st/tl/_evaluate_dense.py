"""``st.tl.evaluate_dense``: a dense predicted map against a dense truth, both binned onto the same µm grid."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._constants import ATTRS_KEY, MICRONS_CS, PRED_KEY, TABLE_KEY, TRUTH_KEY, VISIUM_HD_BINS_UM
from .._core import as_gene_list
from .._core._aggregate_arrays import aggregate_array
from .._core._maps import valued_image
from .._logging import log_added
from ..metrics import PCC_SUMMARY, mae, mse, pcc_per_gene, pcc_summary, ssim_per_gene

if TYPE_CHECKING:
    from spatialdata import SpatialData

#: Columns of the summary that :func:`evaluate_dense` returns, in order.
DENSE_COLUMNS = ("bin_um", "n_bins", "n_genes", *PCC_SUMMARY, "SSIM", "MSE", "MAE")
#: Normalization of the binned truth when the measured table records none (that of :func:`histo2st.pp.normalize`).
DEFAULT_NORMALIZE = {"target_sum": 1e4, "log": True}


def evaluate_dense(
    sdata: SpatialData,
    *,
    pred_key: str = PRED_KEY,
    truth_key: str = TRUTH_KEY,
    bins_um: Sequence[float] = VISIUM_HD_BINS_UM,
    genes=None,
    normalize_truth: bool = True,
    key_added: str = "evaluation_dense",
) -> pd.DataFrame:
    """Compare a dense predicted gene map with the dense truth (synthetic tissue) in square bins of several sizes.

    Both maps are brought onto the same grid in µm: square bins of ``bin_um`` tiling the extent the two maps share in
    the ``"microns"`` coordinate system, each map averaged into them with its own µm per pixel (exact area weights,
    :func:`histo2st.tl.aggregate_array`). So a prediction at 4 µm per pixel is compared fairly with a truth at 1 µm per
    pixel. In every bin size, per gene: the Pearson correlation over the bins and the structural similarity (SSIM,
    scikit-image, ``data_range`` the truth's range) of the two binned images; summarized over genes as PCC@M/S/F and
    the mean SSIM, with the MSE and MAE over bins x genes. Bins that cover a pixel without a value (NaN, e.g.
    THItoGene's map off tissue) in either map are left out.

    Parameters
    ----------
    sdata
        A sample with both maps as image elements ``(c, y, x)`` whose channels are gene names, each with a scale (and
        translation) to the ``"microns"`` coordinate system, as :func:`histo2st.tl.predict` and
        :func:`histo2st.datasets.synthetic_tissue` write them.
    pred_key
        The predicted map.
    truth_key
        The true map.
    bins_um
        Bin edges in µm.
    genes
        Genes to compare (a string is one gene); default every predicted gene that the truth has, in the prediction's
        order.
    normalize_truth
        The synthetic truth holds expected UMI per pixel, the prediction is on the scale of its training targets. With
        ``True`` the binned truth is normalized like the measured spots: each bin to ``target_sum`` counts over all the
        truth's genes, then ``log1p``, with the parameters :func:`histo2st.pp.normalize` recorded in the measured table
        (``1e4`` and ``log1p`` when none are recorded). ``False`` compares the two maps as they are.
    key_added
        Key of the results in ``sdata.attrs["histo2st"]``.

    Returns
    -------
    pandas.DataFrame
        One row per bin size; columns ``"bin_um"``, ``"n_bins"`` (bins compared), ``"n_genes"``, ``"PCC@M"``,
        ``"PCC@S"``, ``"PCC@F"``, ``"SSIM"`` (mean over genes), ``"MSE"`` and ``"MAE"``. Adds:
    ``sdata.attrs["histo2st"][key_added]``
        ``"params"`` (keys, ``bins_um``, ``genes``, ``normalize_truth`` and the normalization used), ``"summary"`` (the
        rows, as a list of dicts) and per bin size (key ``str(bin_um)``) the per-gene ``"pcc"`` and ``"ssim"``
        lists; NaN is stored as ``None`` so the attributes stay valid JSON.

    Raises
    ------
    KeyError
        If a map is missing or a requested gene is not in both maps.
    ValueError
        If a map has no scale to ``"microns"``, the maps do not overlap, or a bin is larger than their overlap.
    """
    start = time.perf_counter()
    pred, pred_um = _map(sdata, pred_key)
    truth, truth_um = _map(sdata, truth_key)
    genes = _genes(pred, truth, genes, pred_key, truth_key)
    bins_um = [float(b) for b in np.atleast_1d(bins_um)]
    if not bins_um or any(not b > 0 for b in bins_um):
        raise ValueError(f"`bins_um` must be positive bin edges in µm, got {bins_um!r}.")
    extent = _overlap(pred, pred_um, truth, truth_um, pred_key, truth_key)
    norm = _truth_normalization(sdata) if normalize_truth else None

    pred_idx = _channel_index(pred, genes)
    truth_idx = _channel_index(truth, genes)
    rows, per_bin = [], {}
    for bin_um in bins_um:
        shape, origins = _bin_grid(extent, bin_um, pred_key, truth_key)
        p = _binned(pred.data, pred_idx, pred_um, origins, bin_um)
        if norm is None:
            t = _binned(truth.data, truth_idx, truth_um, origins, bin_um)
        else:
            t = _normalized(_binned(truth.data, None, truth_um, origins, bin_um), norm)[:, truth_idx]
        valid = np.isfinite(p).all(1) & np.isfinite(t).all(1)
        pcc = pcc_per_gene(p[valid], t[valid]) if valid.sum() >= 2 else np.full(len(genes), np.nan)
        maps_p, maps_t = (np.where(valid[:, None], x, np.nan).T.reshape(len(genes), *shape) for x in (p, t))
        ssim = ssim_per_gene(maps_p, maps_t)
        rows.append(
            {
                "bin_um": bin_um,
                "n_bins": int(valid.sum()),
                "n_genes": len(genes),
                **pcc_summary(pcc),
                "SSIM": float(np.nanmean(ssim)) if np.isfinite(ssim).any() else np.nan,
                "MSE": mse(p[valid], t[valid]),
                "MAE": mae(p[valid], t[valid]),
            }
        )
        per_bin[f"{bin_um:g}"] = {"pcc": _json_list(pcc), "ssim": _json_list(ssim)}
    summary = pd.DataFrame(rows, columns=list(DENSE_COLUMNS))

    attrs = dict(sdata.attrs.get(ATTRS_KEY) or {})
    attrs[key_added] = {
        "params": {
            "pred_key": pred_key,
            "truth_key": truth_key,
            "bins_um": bins_um,
            "genes": list(genes),
            "normalize_truth": normalize_truth,
            "normalization": norm,
            "pred_microns_per_pixel": pred_um[0],
            "truth_microns_per_pixel": truth_um[0],
        },
        "summary": [{k: _json_value(v) for k, v in row.items()} for row in rows],
        **per_bin,
    }
    sdata.attrs[ATTRS_KEY] = attrs
    log_added(f"sdata.attrs['{ATTRS_KEY}']", [key_added], start)
    return summary


def _map(sdata, key: str):
    """The full-resolution ``(c, y, x)`` DataArray of an image element and its ``(µm per pixel, x0 µm, y0 µm)``."""
    from spatialdata.transformations import get_transformation

    if key not in sdata.images:
        raise KeyError(f"No image '{key}' in this sample; images: {list(sdata.images)}.")
    element = sdata.images[key]
    systems = get_transformation(element, get_all=True)
    if MICRONS_CS not in systems:
        raise ValueError(
            f"Image '{key}' has no transformation to the '{MICRONS_CS}' coordinate system, so its pixel size is "
            f"unknown. Add one, e.g. `set_transformation(sdata['{key}'], Scale([mpp, mpp], axes=('y', 'x')), "
            f"'{MICRONS_CS}')` with its µm per pixel."
        )
    m = systems[MICRONS_CS].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    if abs(m[0, 1]) > 1e-9 or abs(m[1, 0]) > 1e-9 or not np.isclose(m[0, 0], m[1, 1]) or m[0, 0] <= 0:
        raise ValueError(
            f"Image '{key}' must map to '{MICRONS_CS}' by an equal x/y scale and a translation (no rotation or "
            f"shear); got the matrix {m.round(4).tolist()}."
        )
    return valued_image(sdata, key), (float(m[0, 0]), float(m[0, 2]), float(m[1, 2]))


def _genes(pred, truth, genes, pred_key: str, truth_key: str) -> list[str]:
    pred_genes = pd.Index([str(c) for c in pred.coords["c"].values])
    truth_genes = pd.Index([str(c) for c in truth.coords["c"].values])
    if genes is None:
        common = pred_genes[pred_genes.isin(truth_genes)]
        if len(common) == 0:
            raise ValueError(f"Images '{pred_key}' and '{truth_key}' share no channel (gene); pass `genes=`.")
        return common.tolist()
    genes = [str(g) for g in as_gene_list(genes)]
    if not genes or len(set(genes)) < len(genes):
        raise ValueError("`genes` must be a non-empty list of distinct gene names.")
    for names, key in ((pred_genes, pred_key), (truth_genes, truth_key)):
        missing = pd.Index(genes).difference(names)
        if len(missing):
            raise KeyError(
                f"{len(missing)} requested genes are not channels of image '{key}': {missing[:10].tolist()}."
            )
    return genes


def _channel_index(image, genes: list[str]) -> np.ndarray:
    return pd.Index([str(c) for c in image.coords["c"].values]).get_indexer(genes)


def _overlap(pred, pred_um, truth, truth_um, pred_key: str, truth_key: str) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` in µm covered by both maps."""
    boxes = []
    for image, (mpp, x0, y0) in ((pred, pred_um), (truth, truth_um)):
        height, width = image.shape[1:]
        boxes.append((x0, y0, x0 + width * mpp, y0 + height * mpp))
    x0, y0 = max(b[0] for b in boxes), max(b[1] for b in boxes)
    x1, y1 = min(b[2] for b in boxes), min(b[3] for b in boxes)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(
            f"Images '{pred_key}' and '{truth_key}' do not overlap in '{MICRONS_CS}' (extents {boxes[0]} and "
            f"{boxes[1]} µm); check their transformations."
        )
    return x0, y0, x1, y1


def _bin_grid(extent, bin_um: float, pred_key: str, truth_key: str) -> tuple[tuple[int, int], np.ndarray]:
    """Grid shape ``(rows, cols)`` and bin origins ``(x, y)`` in µm, row-major, tiling the overlap from its corner."""
    x0, y0, x1, y1 = extent
    # a bin that ends within rounding error of the edge still counts as inside
    n_cols, n_rows = (int(np.floor(span / bin_um + 1e-9)) for span in (x1 - x0, y1 - y0))
    if n_cols == 0 or n_rows == 0:
        raise ValueError(
            f"A {bin_um:g} µm bin is larger than the {x1 - x0:g} x {y1 - y0:g} µm that images '{pred_key}' and "
            f"'{truth_key}' share; use smaller `bins_um`."
        )
    gx, gy = np.meshgrid(x0 + bin_um * np.arange(n_cols), y0 + bin_um * np.arange(n_rows))
    return (n_rows, n_cols), np.column_stack([gx.ravel(), gy.ravel()])


def _binned(data, channels, map_um, origins: np.ndarray, bin_um: float) -> np.ndarray:
    """``(n_bins, n_channels)`` means of a map's channels over square bins given in µm; NaN where a bin has a NaN."""
    mpp, x0, y0 = map_um
    if channels is not None:
        data = data[np.asarray(channels)]
    local = (origins - [x0, y0]) / mpp
    size = bin_um / mpp
    values = aggregate_array(data, origins=local, size=size, agg="mean").values
    if not np.issubdtype(data.dtype, np.floating):
        return values
    # the kernels average a bin over its valued pixels; here a bin that touches a NaN pixel in any channel is dropped
    # instead, so both maps are compared on whole bins only
    missing = np.isnan(data).any(axis=0, keepdims=True).astype(np.float32)
    values[aggregate_array(missing, origins=local, size=size).values[:, 0] > 0] = np.nan
    return values


def _truth_normalization(sdata) -> dict:
    """The ``target_sum`` and ``log`` that :func:`histo2st.pp.normalize` recorded in the measured table, if any."""
    table_key = (sdata.attrs.get(ATTRS_KEY) or {}).get("table_key", TABLE_KEY)
    if table_key in sdata.tables:
        recorded = sdata.tables[table_key].uns.get(ATTRS_KEY, {}).get("normalize")
        if recorded is not None:
            return {"target_sum": recorded["target_sum"], "log": bool(recorded["log"])}
    return dict(DEFAULT_NORMALIZE)


def _normalized(values: np.ndarray, norm: dict) -> np.ndarray:
    """Bins (rows) scaled to ``target_sum`` over all channels (``None``: the median over bins), then ``log1p``."""
    library = values.sum(1, keepdims=True)
    target = norm["target_sum"]
    if target is None:
        positive = library[library > 0]
        target = float(np.median(positive)) if positive.size else 1.0
    out = np.divide(values * target, library, out=np.zeros_like(values), where=library > 0)
    return np.log1p(out) if norm["log"] else out


def _json_value(value):
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value.item() if isinstance(value, np.generic) else value


def _json_list(values: np.ndarray) -> list:
    return [_json_value(v) for v in np.asarray(values, dtype=np.float64)]
